//! Routes between nodes (the host-gw model): for every other Node with a `spec.podCIDR` and
//! an InternalIP, a route `podCIDR via InternalIP` in this node's network namespace, so pods
//! on different nodes reach each other without NAT or tunnels.
//!
//! Rules that keep traffic on the nodes' own links: a route is added only when its gateway
//! is directly reachable on a local link (not through another router, not this node's own
//! address), and never over a route this agent did not add (a bridge's connected route, a
//! route of another program). Routes carry the protocol [`PROTO`] and are removed when their
//! Node goes, changes address or range, and when the agent stops. The route's preferred
//! source is this node's pod gateway address once its bridge has it, so that replies from
//! remote pods to this host come back over the pod network.
//!
//! The routes installed are recorded in a file under the agent's data dir after each change;
//! an agent starting on that data dir takes the recorded routes back, so that the first sync
//! removes those a crashed agent left to Nodes that are gone (and only those: other agents
//! sharing the network namespace keep theirs).
//!
//! [`desired`] and [`Keeper::sync`] are pure over the [`RouteTable`] seam; [`IpRoute`] is
//! the real table (the `ip` command), [`run`] the Node watch.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::process::Command;

use crate::runtime::cni::Cidr;

/// The route protocol number that marks the routes berth adds (`ip route show proto 213`).
pub const PROTO: &str = "213";

/// How often the routes are checked again even when no Node changed (a bridge that got its
/// address, a route someone deleted).
const RESYNC: Duration = Duration::from_secs(10);

/// The routes this node wants: each other Node's pod CIDR via its InternalIP. Nodes being
/// deleted, without a (valid IPv4) pod CIDR or InternalIP, and ranges overlapping
/// `own_cidr` or an earlier node's range (by name) are left out.
pub fn desired<'a>(
    own_name: &str,
    own_cidr: Option<Cidr>,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> BTreeMap<Cidr, Ipv4Addr> {
    let mut by_name: Vec<&Node> = nodes.into_iter().collect();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut routes = BTreeMap::new();
    for node in by_name {
        if node.metadata.name.as_deref() == Some(own_name) || node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| Cidr::parse(c).ok())
        else {
            continue;
        };
        let Some(ip) = internal_ip(node) else { continue };
        if own_cidr.is_some_and(|own| own.overlaps(&cidr)) || routes.keys().any(|c: &Cidr| c.overlaps(&cidr)) {
            continue;
        }
        routes.insert(cidr, ip);
    }
    routes
}

/// The Node's first IPv4 InternalIP.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// How a gateway is reached from this namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Directly on a local link: a host-gw route may use it.
    OnLink,
    /// Only through a router: a route through it could send pod traffic off the machine.
    Routed,
    /// It is one of this namespace's own addresses (another node sharing this namespace).
    Local,
    /// No route at all.
    Unreachable,
}

/// The routing table the [`Keeper`] edits: the seam between the sync logic and the kernel.
pub trait RouteTable {
    /// How `gateway` is reached.
    fn reach(&self, gateway: Ipv4Addr) -> impl Future<Output = Reach> + Send;
    /// Whether a route to exactly `dst` exists that berth did not add.
    fn foreign_route(&self, dst: Cidr) -> impl Future<Output = bool> + Send;
    /// Adds or replaces the route `dst via gateway` (with preferred source `src`).
    fn replace(
        &self,
        dst: Cidr,
        gateway: Ipv4Addr,
        src: Option<Ipv4Addr>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Deletes the route `dst via gateway`; a missing one is not an error.
    fn delete(&self, dst: Cidr, gateway: Ipv4Addr) -> impl Future<Output = Result<(), String>> + Send;
}

/// A route the keeper installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Installed {
    gateway: Ipv4Addr,
    /// Whether it carries the preferred source.
    with_src: bool,
}

/// Keeps the table's berth routes equal to the wanted ones.
pub struct Keeper<T> {
    table: T,
    src: Option<Ipv4Addr>,
    installed: BTreeMap<Cidr, Installed>,
    /// Routes refused (and logged) already, so the log says it once.
    refused: BTreeSet<(Cidr, Ipv4Addr)>,
}

impl<T: RouteTable> Keeper<T> {
    /// A keeper over `table`; routes get the preferred source `src` (this node's pod gateway
    /// address) when the kernel accepts it.
    pub fn new(table: T, src: Option<Ipv4Addr>) -> Keeper<T> {
        Keeper { table, src, installed: BTreeMap::new(), refused: BTreeSet::new() }
    }

    /// Takes routes an earlier agent installed (`dst → gateway`) as its own: the next sync
    /// removes those not wanted and refreshes the others.
    pub fn adopt(&mut self, routes: &BTreeMap<Cidr, Ipv4Addr>) {
        for (dst, gateway) in routes {
            self.installed.entry(*dst).or_insert(Installed { gateway: *gateway, with_src: false });
        }
    }

    /// The routes installed now, as `dst → gateway`.
    pub fn installed(&self) -> BTreeMap<Cidr, Ipv4Addr> {
        self.installed.iter().map(|(c, i)| (*c, i.gateway)).collect()
    }

    /// Brings the table to `wanted`: removes berth's routes no longer wanted (or through
    /// another gateway), adds the missing ones whose gateway is on a local link and whose
    /// destination has no route of someone else.
    pub async fn sync(&mut self, wanted: &BTreeMap<Cidr, Ipv4Addr>) {
        let stale: Vec<(Cidr, Ipv4Addr)> = self
            .installed
            .iter()
            .filter(|(dst, i)| wanted.get(dst) != Some(&i.gateway))
            .map(|(dst, i)| (*dst, i.gateway))
            .collect();
        for (dst, gateway) in stale {
            match self.table.delete(dst, gateway).await {
                Ok(()) => tracing::info!(%dst, %gateway, "host-gw: route removed"),
                Err(e) => tracing::warn!(%dst, %gateway, error = %e, "host-gw: removing the route failed"),
            }
            self.installed.remove(&dst);
        }
        self.refused.retain(|(dst, gateway)| wanted.get(dst) == Some(gateway));
        for (&dst, &gateway) in wanted {
            let current = self.installed.get(&dst).copied();
            if current.is_some_and(|i| i.with_src || self.src.is_none()) {
                continue;
            }
            if current.is_none() {
                let reach = self.table.reach(gateway).await;
                if reach != Reach::OnLink {
                    if self.refused.insert((dst, gateway)) {
                        tracing::info!(%dst, %gateway, ?reach, "host-gw: no route, the gateway is not on a local link");
                    }
                    continue;
                }
                if self.table.foreign_route(dst).await {
                    if self.refused.insert((dst, gateway)) {
                        tracing::warn!(%dst, %gateway, "host-gw: no route, another route to the range exists");
                    }
                    continue;
                }
            }
            let with_src = match self.src {
                Some(src) => self.table.replace(dst, gateway, Some(src)).await.is_ok(),
                None => false,
            };
            if with_src {
                self.installed.insert(dst, Installed { gateway, with_src });
            } else if current.is_none() {
                // Without the source (the bridge has no address before its first pod).
                match self.table.replace(dst, gateway, None).await {
                    Ok(()) => {
                        self.installed.insert(dst, Installed { gateway, with_src: false });
                    }
                    Err(e) => {
                        tracing::warn!(%dst, %gateway, error = %e, "host-gw: adding the route failed");
                        continue;
                    }
                }
            } else {
                continue;
            }
            if current.is_none() {
                tracing::info!(%dst, %gateway, "host-gw: route added");
            }
        }
    }

    /// Removes every route the keeper installed.
    pub async fn clear(&mut self) {
        self.sync(&BTreeMap::new()).await;
    }
}

/// The kernel's main routing table of this network namespace, through `ip -4 route`.
#[derive(Debug, Clone, Copy, Default)]
pub struct IpRoute;

/// Runs `ip ARGS`: its stdout, or its stderr as the error.
async fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().await.map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// How `ip route get` output says a gateway is reached.
pub fn parse_reach(route_get: &str) -> Reach {
    let first = route_get.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        Reach::Unreachable
    } else if first.starts_with("local ") {
        Reach::Local
    } else if first.split_whitespace().any(|w| w == "via") {
        Reach::Routed
    } else if first.starts_with("unreachable") || first.starts_with("prohibit") || first.starts_with("blackhole") {
        Reach::Unreachable
    } else {
        Reach::OnLink
    }
}

/// Whether `ip route show exact DST` output holds a route berth did not add.
pub fn has_foreign_route(route_show: &str) -> bool {
    route_show.lines().filter(|l| !l.trim().is_empty()).any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        !words.windows(2).any(|w| w[0] == "proto" && w[1] == PROTO)
    })
}

impl RouteTable for IpRoute {
    async fn reach(&self, gateway: Ipv4Addr) -> Reach {
        match ip(&["-4", "route", "get", &gateway.to_string()]).await {
            Ok(out) => parse_reach(&out),
            Err(_) => Reach::Unreachable,
        }
    }

    async fn foreign_route(&self, dst: Cidr) -> bool {
        match ip(&["-4", "route", "show", "exact", &dst.to_string(), "table", "main"]).await {
            Ok(out) => has_foreign_route(&out),
            // When the table cannot be read, assume the worst.
            Err(_) => true,
        }
    }

    async fn replace(&self, dst: Cidr, gateway: Ipv4Addr, src: Option<Ipv4Addr>) -> Result<(), String> {
        let (dst, gateway) = (dst.to_string(), gateway.to_string());
        let mut args = vec!["-4", "route", "replace", &dst, "via", &gateway, "proto", PROTO];
        let src = src.map(|s| s.to_string());
        if let Some(src) = &src {
            args.extend(["src", src]);
        }
        ip(&args).await.map(drop)
    }

    async fn delete(&self, dst: Cidr, gateway: Ipv4Addr) -> Result<(), String> {
        let (dst, gateway) = (dst.to_string(), gateway.to_string());
        match ip(&["-4", "route", "del", &dst, "via", &gateway, "proto", PROTO]).await {
            Err(e) if e.contains("No such process") => Ok(()),
            r => r.map(drop),
        }
    }
}

/// The routes recorded in `text` (lines `DST GATEWAY`; bad lines skipped).
pub fn parse_record(text: &str) -> BTreeMap<Cidr, Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let (dst, gateway) = l.trim().split_once(' ')?;
            Some((Cidr::parse(dst).ok()?, gateway.trim().parse().ok()?))
        })
        .collect()
}

/// The record of `routes` (see [`parse_record`]).
pub fn render_record(routes: &BTreeMap<Cidr, Ipv4Addr>) -> String {
    routes.iter().map(|(dst, gateway)| format!("{dst} {gateway}\n")).collect()
}

/// Writes the record of `routes` to `path` (through a temporary file, so a crash leaves the
/// old record or the new one).
fn write_record(path: &Path, routes: &BTreeMap<Cidr, Ipv4Addr>) {
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, render_record(routes)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "host-gw: recording the routes");
    }
}

/// Turns on IPv4 forwarding in this namespace if it is off (the routes are useless without
/// it), and says so in the log.
async fn ensure_forwarding() {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    match tokio::fs::read_to_string(PATH).await {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => match tokio::fs::write(PATH, "1\n").await {
            Ok(()) => tracing::info!("host-gw: net.ipv4.ip_forward was 0: set it to 1 for routes between nodes"),
            Err(e) => tracing::warn!(error = %e, "host-gw: net.ipv4.ip_forward is 0 and cannot be set"),
        },
        Err(e) => tracing::warn!(error = %e, "host-gw: cannot read net.ipv4.ip_forward"),
    }
}

/// Watches the Nodes and keeps the routes to the others' pod CIDRs until `stop` fires (or
/// its sender goes), then removes them. `record` is the file of the routes installed.
pub(crate) async fn run(
    client: kube::Client,
    own_name: String,
    own_cidr: Cidr,
    record: PathBuf,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut keeper = Keeper::new(IpRoute, Some(own_cidr.gateway()));
    let left = parse_record(&std::fs::read_to_string(&record).unwrap_or_default());
    if !left.is_empty() {
        tracing::info!(routes = left.len(), "host-gw: routes an earlier agent recorded are checked at the first sync");
        keeper.adopt(&left);
    }
    let mut recorded = left;
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut relist: Option<BTreeMap<String, Node>> = None;
    let mut synced = false;
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = events.next() => match event {
                Some(Ok(watcher::Event::Init)) => relist = Some(BTreeMap::new()),
                Some(Ok(watcher::Event::InitApply(node))) => {
                    if let Some(r) = relist.as_mut() {
                        r.insert(node.metadata.name.clone().unwrap_or_default(), node);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    nodes = relist.take().unwrap_or_default();
                    synced = true;
                }
                Some(Ok(watcher::Event::Apply(node))) => {
                    nodes.insert(node.metadata.name.clone().unwrap_or_default(), node);
                }
                Some(Ok(watcher::Event::Delete(node))) => {
                    nodes.remove(node.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "host-gw: node watch");
                    continue;
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        if !synced || relist.is_some() {
            continue;
        }
        let wanted = desired(&own_name, Some(own_cidr), nodes.values());
        let had = keeper.installed().len();
        keeper.sync(&wanted).await;
        if had == 0 && !keeper.installed().is_empty() {
            ensure_forwarding().await;
        }
        if keeper.installed() != recorded {
            recorded = keeper.installed();
            write_record(&record, &recorded);
        }
    }
    keeper.clear().await;
    write_record(&record, &keeper.installed());
}

#[cfg(test)]
mod tests;
