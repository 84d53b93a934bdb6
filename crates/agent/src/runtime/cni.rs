//! The node's CNI network: a bridge with host-local addresses from the node's pod CIDR, the
//! loopback plugin and portmap for hostPorts (Debian's plugins in /usr/lib/cni). `ipMasq`
//! is off and pods get no default route: only a route to the cluster's pod network through
//! their node (whose host-gw routes, [`crate::node::routes`], lead to the other nodes), so
//! pod traffic stays on this machine (or on the nodes' own links).

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::{Value, json};

use super::{Error, Result, io_err};

/// The name of the network (and of its conflist file).
pub const NETWORK: &str = "berth-pods";

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (8 ≤ n ≤ 30); host bits are cleared.
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = || Error::Cidr(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { network: Ipv4Addr::from(u32::from(ip) & mask), prefix })
    }

    /// The bridge's (gateway's) address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The conflist for a bridge named `bridge` over `cidr`, with host-local's state in `data_dir`;
/// pods get a route to each of `pod_networks` (the cluster CIDR) through the bridge, and no
/// default route.
pub fn render_conflist(bridge: &str, cidr: Cidr, data_dir: &Path, pod_networks: &[Cidr]) -> Value {
    let gateway = cidr.gateway().to_string();
    let routes: Vec<Value> = pod_networks
        .iter()
        .filter(|n| !cidr_covers(&cidr, n))
        .map(|n| json!({ "dst": n.to_string(), "gw": gateway }))
        .collect();
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": data_dir.display().to_string(),
                    "ranges": [[{ "subnet": cidr.to_string(), "gateway": gateway }]],
                    "routes": routes,
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    })
}

/// Whether `outer` holds all of `inner` (a route to it would only repeat the bridge's own).
fn cidr_covers(outer: &Cidr, inner: &Cidr) -> bool {
    outer.prefix <= inner.prefix && outer.contains(inner.network)
}

/// Writes the conflist into `conf_dir` (containerd picks it up even after it started; its
/// CRI plugin adds the loopback plugin itself).
pub fn write_config(conf_dir: &Path, bridge: &str, cidr: Cidr, data_dir: &Path, pod_networks: &[Cidr]) -> Result<()> {
    std::fs::create_dir_all(conf_dir).map_err(io_err("creating", conf_dir))?;
    let path = conf_dir.join(format!("10-{NETWORK}.conflist"));
    let body = serde_json::to_vec_pretty(&render_conflist(bridge, cidr, data_dir, pod_networks)).expect("json");
    // Written aside and renamed, so containerd never reads half a file.
    let tmp = conf_dir.join(format!(".10-{NETWORK}.tmp"));
    std::fs::write(&tmp, body).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
    Ok(())
}

/// Deletes the bridge device (`ip link del`); a missing one is not an error.
pub async fn delete_bridge(bridge: &str) {
    let _ = tokio::process::Command::new("ip")
        .args(["link", "del", bridge])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_bad_ones_fail() {
        let c = Cidr::parse("10.88.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.88.3.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 88, 3, 1));
        assert!(c.contains(Ipv4Addr::new(10, 88, 3, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 88, 4, 1)));
        for bad in ["10.0.0.0", "10.0.0.0/31", "10.0.0.0/4", "x/24", "10.0.0.0/x", "fd00::/64"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflist_has_no_masquerade_and_uses_the_cidr() {
        let c = render_conflist("cni-t1", Cidr::parse("10.88.1.0/24").unwrap(), Path::new("/d/cni"), &[]);
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "cni-t1");
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.88.1.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/d/cni");
        assert_eq!(c["plugins"][1]["type"], "portmap");
        assert_eq!(bridge["ipam"]["routes"], json!([]), "no routes off the machine");
        assert!(bridge.get("isDefaultGateway").is_none(), "no default route");
    }

    #[test]
    fn pods_get_a_route_to_the_cluster_network_only() {
        let own = Cidr::parse("10.42.3.0/24").unwrap();
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        let c = render_conflist("b", own, Path::new("/d"), &[cluster]);
        assert_eq!(c["plugins"][0]["ipam"]["routes"], json!([{ "dst": "10.42.0.0/16", "gw": "10.42.3.1" }]));
        // A cluster network inside the node's own range adds nothing: the bridge covers it.
        let c = render_conflist("b", own, Path::new("/d"), &[Cidr::parse("10.42.3.0/25").unwrap(), own]);
        assert_eq!(c["plugins"][0]["ipam"]["routes"], json!([]));
        assert!(own.overlaps(&cluster) && cluster.overlaps(&own));
        assert!(!own.overlaps(&Cidr::parse("10.43.0.0/16").unwrap()));
    }
}
