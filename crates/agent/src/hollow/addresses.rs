//! Addresses of hollow nodes and their pods: node `i` is `10.128.0.0 + i + 1` (InternalIP);
//! its pods get addresses from the node's `spec.podCIDR` when one is set (IPv4), else from
//! `10.<i / 256>.<i % 256>.0/24`. Addresses are unique within one agent process.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The InternalIP of node `index`.
pub(crate) fn node_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + index as u32 + 1)
}

/// The pod addresses of one node and which of them are in use.
#[derive(Debug)]
pub(crate) struct PodRange {
    base: u32,
    size: u32,
    used: HashSet<u32>,
    next: u32,
}

impl PodRange {
    /// The per-node range of node `index`, used until the node has a podCIDR.
    pub(crate) fn for_node(index: usize) -> PodRange {
        let i = (index % super::config::MAX_NODES) as u32;
        PodRange { base: u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8), size: 256, used: HashSet::new(), next: 0 }
    }

    /// Switches to `cidr` (e.g. `10.244.3.0/24`); pods keep the addresses they have. Returns
    /// false (and changes nothing) for an IPv6 or unusable CIDR.
    pub(crate) fn set_cidr(&mut self, cidr: &str) -> bool {
        let Some((ip, bits)) = cidr.split_once('/') else { return false };
        let (Ok(ip), Ok(bits)) = (ip.parse::<Ipv4Addr>(), bits.parse::<u32>()) else { return false };
        if !(8..=29).contains(&bits) {
            return false;
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        if base == self.base && size == self.size {
            return true;
        }
        self.base = base;
        self.size = size;
        self.next = 0;
        true
    }

    /// A free address (skipping the network, the gateway `.1` and broadcast addresses), or
    /// None when all are taken.
    pub(crate) fn allocate(&mut self) -> Option<Ipv4Addr> {
        let usable = self.size - 3;
        for _ in 0..usable {
            let offset = 2 + self.next % usable;
            self.next = (self.next + 1) % usable;
            let ip = self.base + offset;
            if self.used.insert(ip) {
                return Some(Ipv4Addr::from(ip));
            }
        }
        None
    }

    /// Marks an address in use (a pod found running after a restart).
    pub(crate) fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(u32::from(ip));
    }

    /// Frees an address.
    pub(crate) fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }

    /// True when `ip` lies in the current range.
    #[cfg(test)]
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.base..self.base + self.size).contains(&u32::from(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_default_pod_ranges() {
        assert_eq!(node_ip(0), Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(node_ip(300), Ipv4Addr::new(10, 128, 1, 45));
        let mut r = PodRange::for_node(258);
        assert_eq!(r.allocate(), Some(Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(r.allocate(), Some(Ipv4Addr::new(10, 1, 2, 3)));
    }

    #[test]
    fn allocation_reuses_released_and_runs_out() {
        let mut r = PodRange::for_node(0);
        assert!(r.set_cidr("192.168.7.9/29"));
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| r.allocate()).collect();
        assert_eq!(
            got,
            ["192.168.7.10", "192.168.7.11", "192.168.7.12", "192.168.7.13", "192.168.7.14"]
                .map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        r.release("192.168.7.12".parse().unwrap());
        assert_eq!(r.allocate(), Some("192.168.7.12".parse().unwrap()));
        assert_eq!(r.allocate(), None);
        // The address is masked to its network: 192.168.7.8/29.
        assert!(r.contains("192.168.7.8".parse().unwrap()) && !r.contains("192.168.7.16".parse().unwrap()));
    }

    #[test]
    fn bad_cidrs_are_ignored() {
        let mut r = PodRange::for_node(1);
        for bad in ["fd00::/64", "10.0.0.0", "10.0.0.0/31", "x/24", "10.0.0.0/abc"] {
            assert!(!r.set_cidr(bad), "{bad}");
        }
        assert_eq!(r.allocate(), Some(Ipv4Addr::new(10, 0, 1, 2)));
    }
}
