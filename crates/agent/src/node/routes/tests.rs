//! The route keeper over a fake table: which routes are wanted, added, refused and removed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use serde_json::json;

use super::*;

fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
    let addresses: Vec<_> = ip.into_iter().map(|ip| json!({ "type": "InternalIP", "address": ip })).collect();
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "podCIDR": cidr },
        "status": { "addresses": addresses },
    }))
    .unwrap()
}

fn cidr(s: &str) -> Cidr {
    Cidr::parse(s).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn wanted_routes_are_the_other_nodes_ranges_via_their_internal_ips() {
    let mut deleting = node("gone", Some("10.42.9.0/24"), Some("10.0.0.9"));
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let nodes = [
        node("me", Some("10.42.0.0/24"), Some("10.0.0.1")),
        node("b", Some("10.42.1.0/24"), Some("10.0.0.2")),
        node("a", Some("10.42.2.0/24"), Some("10.0.0.3")),
        node("no-cidr", None, Some("10.0.0.4")),
        node("no-ip", Some("10.42.4.0/24"), None),
        node("bad-cidr", Some("not a cidr"), Some("10.0.0.5")),
        node("v6", Some("fd00::/64"), Some("10.0.0.6")),
        node("same-as-mine", Some("10.42.0.0/25"), Some("10.0.0.7")),
        node("same-as-a", Some("10.42.2.0/24"), Some("10.0.0.8")),
        node("bad-ip", Some("10.42.5.0/24"), Some("not an ip")),
        deleting,
    ];
    let wanted = desired("me", Some(cidr("10.42.0.0/24")), &nodes);
    let expect: BTreeMap<Cidr, Ipv4Addr> =
        [(cidr("10.42.1.0/24"), ip("10.0.0.2")), (cidr("10.42.2.0/24"), ip("10.0.0.3"))].into();
    assert_eq!(wanted, expect);
    assert!(desired("me", None, &[]).is_empty());
}

#[test]
fn route_get_and_route_show_outputs_are_read() {
    let cases = [
        ("10.213.5.2 dev bt1 src 10.213.5.1 uid 0 \n    cache \n", Reach::OnLink),
        ("local 10.0.0.1 dev lo src 10.0.0.1 uid 0 \n    cache <local> \n", Reach::Local),
        ("8.8.8.8 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0 \n    cache \n", Reach::Routed),
        ("unreachable 10.9.9.9 uid 0\n", Reach::Unreachable),
        ("", Reach::Unreachable),
    ];
    for (out, reach) in cases {
        assert_eq!(parse_reach(out), reach, "{out:?}");
    }
    assert!(!has_foreign_route(""));
    assert!(!has_foreign_route("10.42.1.0/24 via 10.213.5.2 dev bt1 proto 213 src 10.42.0.1 \n"));
    assert!(has_foreign_route("10.42.1.0/24 dev cni0 proto kernel scope link src 10.42.1.1 \n"));
    assert!(has_foreign_route("10.42.1.0/24 via 10.0.0.9 dev eth0 proto static\n"));
}

/// A table in memory: which gateways are on link, which routes exist (and whose).
#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    reach: BTreeMap<Ipv4Addr, Reach>,
    /// dst → (gateway, src, ours)
    routes: BTreeMap<Cidr, (Ipv4Addr, Option<Ipv4Addr>, bool)>,
    /// Whether a preferred source is accepted (the bridge has its address).
    src_ok: bool,
}

impl RouteTable for Fake {
    async fn reach(&self, gateway: Ipv4Addr) -> Reach {
        self.state.lock().unwrap().reach.get(&gateway).copied().unwrap_or(Reach::Unreachable)
    }
    async fn foreign_route(&self, dst: Cidr) -> bool {
        self.state.lock().unwrap().routes.get(&dst).is_some_and(|r| !r.2)
    }
    async fn replace(&self, dst: Cidr, gateway: Ipv4Addr, src: Option<Ipv4Addr>) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if src.is_some() && !s.src_ok {
            return Err("Invalid prefsrc address".into());
        }
        s.routes.insert(dst, (gateway, src, true));
        Ok(())
    }
    async fn delete(&self, dst: Cidr, gateway: Ipv4Addr) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if s.routes.get(&dst).is_some_and(|r| r.0 == gateway && r.2) {
            s.routes.remove(&dst);
        }
        Ok(())
    }
}

impl Fake {
    fn routes(&self) -> BTreeMap<Cidr, (Ipv4Addr, Option<Ipv4Addr>, bool)> {
        self.state.lock().unwrap().routes.clone()
    }
}

#[tokio::test]
async fn the_keeper_adds_on_link_routes_only_and_removes_what_goes() {
    let fake = Fake::default();
    {
        let mut s = fake.state.lock().unwrap();
        s.reach.insert(ip("10.213.5.2"), Reach::OnLink);
        s.reach.insert(ip("10.213.5.3"), Reach::OnLink);
        s.reach.insert(ip("203.0.113.7"), Reach::Routed);
        s.reach.insert(ip("192.0.2.2"), Reach::Local);
        // Somebody's bridge owns 10.42.7.0/24 here.
        s.routes.insert(cidr("10.42.7.0/24"), (ip("0.0.0.0"), None, false));
    }
    let src = ip("10.42.0.1");
    let mut keeper = Keeper::new(fake.clone(), Some(src));
    let wanted: BTreeMap<Cidr, Ipv4Addr> = [
        (cidr("10.42.1.0/24"), ip("10.213.5.2")),
        (cidr("10.42.2.0/24"), ip("203.0.113.7")),
        (cidr("10.42.3.0/24"), ip("192.0.2.2")),
        (cidr("10.42.4.0/24"), ip("10.213.9.9")),
        (cidr("10.42.7.0/24"), ip("10.213.5.3")),
    ]
    .into();
    keeper.sync(&wanted).await;
    // Before the bridge has its address: the route goes in without the source.
    assert_eq!(keeper.installed(), [(cidr("10.42.1.0/24"), ip("10.213.5.2"))].into());
    assert_eq!(fake.routes()[&cidr("10.42.1.0/24")], (ip("10.213.5.2"), None, true));
    assert_eq!(fake.routes()[&cidr("10.42.7.0/24")], (ip("0.0.0.0"), None, false), "someone else's route stays");

    // Once the source is accepted, the next sync adds it.
    fake.state.lock().unwrap().src_ok = true;
    keeper.sync(&wanted).await;
    assert_eq!(fake.routes()[&cidr("10.42.1.0/24")], (ip("10.213.5.2"), Some(src), true));

    // The node moves to another gateway, then goes.
    let moved: BTreeMap<Cidr, Ipv4Addr> = [(cidr("10.42.1.0/24"), ip("10.213.5.3"))].into();
    keeper.sync(&moved).await;
    assert_eq!(fake.routes()[&cidr("10.42.1.0/24")], (ip("10.213.5.3"), Some(src), true));
    keeper.sync(&BTreeMap::new()).await;
    assert!(keeper.installed().is_empty());
    assert_eq!(fake.routes().len(), 1, "only the foreign route is left: {:?}", fake.routes());

    keeper.sync(&moved).await;
    keeper.clear().await;
    assert_eq!(fake.routes().len(), 1);
}

#[tokio::test]
async fn without_a_source_routes_go_in_plain() {
    let fake = Fake::default();
    fake.state.lock().unwrap().reach.insert(ip("10.1.1.2"), Reach::OnLink);
    let mut keeper = Keeper::new(fake.clone(), None);
    let wanted: BTreeMap<Cidr, Ipv4Addr> = [(cidr("10.42.1.0/24"), ip("10.1.1.2"))].into();
    keeper.sync(&wanted).await;
    keeper.sync(&wanted).await;
    assert_eq!(fake.routes()[&cidr("10.42.1.0/24")], (ip("10.1.1.2"), None, true));
}

#[tokio::test]
async fn routes_an_earlier_agent_recorded_are_removed_unless_still_wanted() {
    let fake = Fake::default();
    {
        let mut s = fake.state.lock().unwrap();
        s.reach.insert(ip("10.1.1.2"), Reach::OnLink);
        // A crashed agent's routes: one to a Node still there, one to a Node gone.
        s.routes.insert(cidr("10.42.1.0/24"), (ip("10.1.1.2"), None, true));
        s.routes.insert(cidr("10.42.9.0/24"), (ip("10.1.1.9"), None, true));
        // Another agent's route in the same namespace, not in the record.
        s.routes.insert(cidr("10.42.5.0/24"), (ip("10.1.1.5"), None, true));
    }
    let record =
        render_record(&[(cidr("10.42.1.0/24"), ip("10.1.1.2")), (cidr("10.42.9.0/24"), ip("10.1.1.9"))].into());
    assert_eq!(record, "10.42.1.0/24 10.1.1.2\n10.42.9.0/24 10.1.1.9\n");
    let left = parse_record(&format!("{record}garbage\n10.42.3.0/24 not-an-ip\n\n"));
    assert_eq!(left.len(), 2, "{left:?}");
    let mut keeper = Keeper::new(fake.clone(), None);
    keeper.adopt(&left);
    let wanted: BTreeMap<Cidr, Ipv4Addr> = [(cidr("10.42.1.0/24"), ip("10.1.1.2"))].into();
    keeper.sync(&wanted).await;
    assert_eq!(keeper.installed(), wanted);
    let routes = fake.routes();
    assert!(!routes.contains_key(&cidr("10.42.9.0/24")), "the gone Node's route is removed: {routes:?}");
    assert!(routes.contains_key(&cidr("10.42.1.0/24")) && routes.contains_key(&cidr("10.42.5.0/24")), "{routes:?}");
}
