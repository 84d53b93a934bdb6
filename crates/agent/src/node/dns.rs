//! Pod DNS, hostname and `/etc/hosts` as the kubelet forms them (its `network/dns` configurer
//! and managed hosts file), pure but for reading the node's resolv.conf:
//!
//! - `dnsPolicy` ClusterFirst (the default) → the cluster DNS (`--cluster-dns`) as nameserver,
//!   searches `<ns>.svc.<domain> svc.<domain> <domain>` then the node's, `options ndots:5`;
//!   without a cluster DNS it falls back to Default (said once in the log, and a
//!   `MissingClusterDNS` event per pod). ClusterFirst on a hostNetwork pod is Default;
//!   ClusterFirstWithHostNet is ClusterFirst even there.
//! - Default → the node's resolv.conf (`--resolv-conf`; empty: `nameserver 127.0.0.1`,
//!   `search .`, which disables lookups).
//! - None → only `spec.dnsConfig`.
//! - `spec.dnsConfig` is merged in: nameservers and searches appended without duplicates,
//!   options replacing those of the same name; then at most 3 nameservers and 32 searches
//!   of at most 2048 characters in all (no search longer than 253), with a `DNSConfigForming`
//!   warning when something was dropped.
//! - The hostname is `spec.hostname` or the pod's name (cut to 63 characters), its domain
//!   `<subdomain>.<ns>.svc.<domain>` with `spec.subdomain`; `/etc/hosts` is the kubelet's
//!   managed file with the pod's IP, FQDN and `spec.hostAliases` (a hostNetwork pod's: the
//!   node's /etc/hosts and its hostAliases).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};

use crate::runtime::cri::v1 as cri;

/// The most nameservers a resolv.conf uses (Kubernetes' `MaxDNSNameservers`).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains (Kubernetes' `MaxDNSSearchPathsExpanded`).
pub const MAX_SEARCHES: usize = 32;
/// The longest search line, spaces included (`MaxDNSSearchListCharsExpanded`).
pub const MAX_SEARCH_CHARS: usize = 2048;
/// The longest single search domain (a DNS-1123 subdomain).
const MAX_SEARCH_LEN: usize = 253;

/// The node's DNS settings (kubelet flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// The cluster DNS servers (`--cluster-dns`); empty: ClusterFirst falls back to Default.
    pub cluster_dns: Vec<String>,
    /// The cluster's domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// The node's resolver config (`--resolv-conf`); None: no node resolver (`""`).
    pub resolv_conf: Option<PathBuf>,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
        }
    }
}

/// A resolver configuration: nameservers, search domains, options (`name` or `name:value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line's domains.
    pub searches: Vec<String>,
    /// The `options` line's options.
    pub options: Vec<String>,
}

/// Reads a resolv.conf as the kubelet does: `nameserver` lines add servers, the last
/// `search` line gives the searches (trailing dots dropped, a lone `.` skipped), `options`
/// lines add options; comments (`#`, `;`) are ignored.
pub fn parse_resolv_conf(text: &str) -> Resolver {
    let mut out = Resolver::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => out.servers.extend(fields.next().map(str::to_string)),
            Some("search") => {
                out.searches =
                    fields.filter(|s| *s != ".").map(|s| s.strip_suffix('.').unwrap_or(s).to_string()).collect()
            }
            Some("options") => out.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    out
}

/// Where a pod's resolver comes from, once the policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cluster DNS.
    Cluster,
    /// The node's resolv.conf.
    Node,
    /// Only the pod's dnsConfig.
    PodOnly,
}

/// The source of `pod`'s resolver before the cluster-DNS fallback.
pub fn source(pod: &Pod) -> Source {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    match spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst") {
        "ClusterFirstWithHostNet" => Source::Cluster,
        "None" => Source::PodOnly,
        "Default" => Source::Node,
        _ if host_network => Source::Node,
        _ => Source::Cluster,
    }
}

/// A pod's resolver and what the kubelet would warn about while forming it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Formed {
    /// The CRI DNS config.
    pub config: cri::DnsConfig,
    /// ClusterFirst was asked but no cluster DNS is configured: the node's resolver is used.
    pub fell_back: bool,
    /// `DNSConfigForming` warnings (limits exceeded).
    pub warnings: Vec<String>,
}

/// The searches of a ClusterFirst pod in `namespace`: the cluster's, then the node's.
fn cluster_searches(namespace: &str, domain: &str, node: &[String]) -> Vec<String> {
    if domain.is_empty() {
        return node.to_vec();
    }
    let mut out = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
    out.extend(node.iter().cloned());
    out
}

/// Appends `more` to `list`, skipping what is already there.
fn append_new(list: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for item in more {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Options merged as the kubelet merges them: a pod option replaces the one of the same name.
fn merge_options(existing: &[String], pod: &[PodDNSConfigOption]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for option in existing {
        let (name, value) = option.split_once(':').unwrap_or((option, ""));
        set(name, value);
    }
    for option in pod {
        set(option.name.as_deref().unwrap_or_default(), option.value.as_deref().unwrap_or_default());
    }
    merged.into_iter().map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") }).collect()
}

/// Cuts the searches to the limits; the warning says what is left when something was cut.
fn fit_searches(mut searches: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut cut = searches.len() > MAX_SEARCHES;
    searches.truncate(MAX_SEARCHES);
    let before = searches.len();
    searches.retain(|s| s.len() <= MAX_SEARCH_LEN);
    cut |= searches.len() != before;
    while searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
        cut = true;
    }
    let warning = cut.then(|| {
        format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            searches.join(" ")
        )
    });
    (searches, warning)
}

/// Forms `pod`'s resolver from the node's `settings` and its resolv.conf `node` (None when
/// `--resolv-conf` is empty).
pub fn form(pod: &Pod, settings: &DnsSettings, node: Option<&Resolver>) -> Formed {
    let mut formed = Formed::default();
    let mut source = source(pod);
    if source == Source::Cluster && settings.cluster_dns.is_empty() {
        source = Source::Node;
        formed.fell_back = true;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let no_resolver = Resolver { servers: vec!["127.0.0.1".into()], searches: vec![".".into()], options: Vec::new() };
    let node = node.unwrap_or(&no_resolver);
    let mut resolver = match source {
        Source::PodOnly => Resolver::default(),
        Source::Node => node.clone(),
        Source::Cluster => Resolver {
            servers: settings.cluster_dns.clone(),
            searches: cluster_searches(namespace, &settings.cluster_domain, &node.searches),
            options: vec!["ndots:5".into()],
        },
    };
    if let Some(pod_config) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        append_new(&mut resolver.servers, pod_config.nameservers.iter().flatten().cloned());
        append_new(&mut resolver.searches, pod_config.searches.iter().flatten().cloned());
        resolver.options = merge_options(&resolver.options, pod_config.options.as_deref().unwrap_or_default());
    }
    if resolver.servers.len() > MAX_NAMESERVERS {
        resolver.servers.truncate(MAX_NAMESERVERS);
        formed.warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            resolver.servers.join(" ")
        ));
    }
    let (searches, warning) = fit_searches(resolver.searches);
    formed.warnings.extend(warning);
    formed.config = cri::DnsConfig { servers: resolver.servers, searches, options: resolver.options };
    formed
}

/// Reads the node's resolver (None when `path` is None); an unreadable file gives an empty
/// one and the error.
pub fn read_node_resolver(path: Option<&Path>) -> (Option<Resolver>, Option<std::io::Error>) {
    match path {
        None => (None, None),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => (Some(parse_resolv_conf(&text)), None),
            Err(e) => (Some(Resolver::default()), Some(e)),
        },
    }
}

/// The pod's hostname (`spec.hostname` or its name, at most 63 characters without a
/// trailing `-` or `.`) and its domain (`<subdomain>.<ns>.svc.<cluster domain>` with
/// `spec.subdomain`, else empty), as the kubelet's `GeneratePodHostNameAndDomain`.
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, String) {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let wanted = spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()).unwrap_or(name);
    let mut hostname: String = wanted.chars().take(63).collect();
    if wanted.len() > 63 {
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let domain = match spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()) {
        Some(sub) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            format!("{sub}.{namespace}.svc.{cluster_domain}")
        }
        None => String::new(),
    };
    (hostname, domain)
}

/// The kubelet's managed `/etc/hosts` of a pod with address `ip`.
pub fn hosts_file(pod: &Pod, ip: &str, cluster_domain: &str) -> String {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if domain.is_empty() {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    } else {
        out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
    }
    out.push_str(&host_aliases(pod));
    out
}

/// The `spec.hostAliases` section of a pod's hosts file (empty without aliases).
fn host_aliases(pod: &Pod) -> String {
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_deref()).unwrap_or_default();
    let mut out = String::new();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

/// The hosts file of a hostNetwork pod: the node's (`node_hosts`, its /etc/hosts) and the
/// pod's hostAliases, as the kubelet's `nodeHostsFileContent`.
pub fn node_hosts_file(pod: &Pod, node_hosts: &str) -> String {
    format!("{node_hosts}{}", host_aliases(pod))
}

/// Writes the pod's managed `/etc/hosts` under `data_dir/pods/<uid>` and returns its mount,
/// for a pod with an IP ([`hosts_file`]; a hostNetwork pod's is the node's /etc/hosts with
/// its hostAliases, [`node_hosts_file`]).
pub fn hosts_mount(data_dir: &Path, pod: &Pod, ip: Option<&str>, cluster_domain: &str) -> Option<cri::Mount> {
    let ip = ip.filter(|ip| !ip.is_empty())?;
    let dir = data_dir.join("pods").join(pod.metadata.uid.as_deref()?);
    let path = dir.join("etc-hosts");
    let content = if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        node_hosts_file(pod, &std::fs::read_to_string("/etc/hosts").unwrap_or_default())
    } else {
        hosts_file(pod, ip, cluster_domain)
    };
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&path, content).ok()?;
    }
    Some(cri::Mount {
        container_path: "/etc/hosts".into(),
        host_path: path.display().to_string(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([]);
        serde_json::from_value(json!({ "metadata": { "name": "web", "namespace": "shop", "uid": "u1" }, "spec": spec }))
            .unwrap()
    }

    fn settings(cluster_dns: &[&str]) -> DnsSettings {
        DnsSettings { cluster_dns: cluster_dns.iter().map(|s| s.to_string()).collect(), ..DnsSettings::default() }
    }

    fn node() -> Resolver {
        parse_resolv_conf(
            "# the host\nnameserver 192.0.2.53\nsearch old.example\nsearch corp.example. .\noptions edns0 ndots:2 ; x\n",
        )
    }

    fn config(servers: &[&str], searches: &[&str], options: &[&str]) -> cri::DnsConfig {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        cri::DnsConfig { servers: v(servers), searches: v(searches), options: v(options) }
    }

    #[test]
    fn resolv_conf_is_read_as_the_kubelet_reads_it() {
        assert_eq!(
            node(),
            Resolver {
                servers: vec!["192.0.2.53".into()],
                searches: vec!["corp.example".into()],
                options: vec!["edns0".into(), "ndots:2".into()],
            }
        );
    }

    #[test]
    fn policies_pick_the_resolver() {
        let cases = [
            (json!({}), Source::Cluster),
            (json!({ "dnsPolicy": "ClusterFirst", "hostNetwork": true }), Source::Node),
            (json!({ "dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true }), Source::Cluster),
            (json!({ "dnsPolicy": "Default" }), Source::Node),
            (json!({ "dnsPolicy": "None" }), Source::PodOnly),
        ];
        for (spec, want) in cases {
            assert_eq!(source(&pod(spec.clone())), want, "{spec}");
        }
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_the_node_searches() {
        let f = form(&pod(json!({})), &settings(&["10.96.0.10"]), Some(&node()));
        let want = config(
            &["10.96.0.10"],
            &["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"],
            &["ndots:5"],
        );
        assert_eq!(f, Formed { config: want, fell_back: false, warnings: vec![] });
    }

    #[test]
    fn cluster_first_without_a_cluster_dns_falls_back_to_the_node() {
        let f = form(&pod(json!({})), &settings(&[]), Some(&node()));
        assert!(f.fell_back);
        assert_eq!(f.config, config(&["192.0.2.53"], &["corp.example"], &["edns0", "ndots:2"]));
        // No node resolver at all (--resolv-conf ""): lookups are disabled.
        let f = form(&pod(json!({ "dnsPolicy": "Default" })), &settings(&["10.96.0.10"]), None);
        assert_eq!(f.config, config(&["127.0.0.1"], &["."], &[]));
        assert!(!f.fell_back);
    }

    #[test]
    fn none_takes_only_the_pod_config_and_dns_config_merges() {
        let spec = json!({ "dnsPolicy": "None", "dnsConfig": { "nameservers": ["1.2.3.4"], "searches": ["a.example"],
            "options": [{ "name": "ndots", "value": "2" }, { "name": "edns0" }] } });
        let f = form(&pod(spec), &settings(&["10.96.0.10"]), Some(&node()));
        assert_eq!(f.config, config(&["1.2.3.4"], &["a.example"], &["ndots:2", "edns0"]));
        // Merged into ClusterFirst: duplicates skipped, an option of the same name replaced.
        let spec = json!({ "dnsConfig": { "nameservers": ["10.96.0.10", "1.2.3.4"], "searches": ["svc.cluster.local", "b.example"],
            "options": [{ "name": "ndots", "value": "1" }, { "name": "single-request" }] } });
        let f = form(&pod(spec), &settings(&["10.96.0.10"]), Some(&node()));
        assert_eq!(
            f.config,
            config(
                &["10.96.0.10", "1.2.3.4"],
                &["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "b.example"],
                &["ndots:1", "single-request"],
            )
        );
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn limits_trim_nameservers_and_searches_with_a_warning() {
        let spec = json!({ "dnsConfig": { "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"] } });
        let f = form(&pod(spec), &settings(&["10.96.0.10"]), Some(&node()));
        assert_eq!(f.config.servers, ["10.96.0.10", "1.1.1.1", "8.8.8.8"]);
        assert_eq!(
            f.warnings,
            [
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 1.1.1.1 8.8.8.8"
            ]
        );
        // 40 searches: the first 32 are kept.
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let f = form(
            &pod(json!({ "dnsPolicy": "None", "dnsConfig": { "nameservers": ["1.1.1.1"], "searches": many } })),
            &settings(&[]),
            None,
        );
        assert_eq!(f.config.searches.len(), MAX_SEARCHES);
        assert!(f.warnings[0].starts_with("Search Line limits were exceeded"), "{:?}", f.warnings);
        // 2048 characters at most: long ones are dropped from the end.
        let long: Vec<String> = (0..12).map(|i| format!("{i:02}{}", "x".repeat(200))).collect();
        let (kept, warning) = fit_searches(long);
        assert_eq!(kept.len(), 10);
        assert!(kept.join(" ").len() <= MAX_SEARCH_CHARS);
        assert!(warning.unwrap().ends_with(&kept.join(" ")));
        let (kept, warning) = fit_searches(vec!["ok.example".into(), "y".repeat(254)]);
        assert_eq!((kept, warning.is_some()), (vec!["ok.example".to_string()], true));
    }

    #[test]
    fn hostname_subdomain_and_hosts_file() {
        let p = pod(
            json!({ "hostname": "db-0", "subdomain": "db", "hostAliases": [{ "ip": "10.1.2.3", "hostnames": ["foo", "bar"] }] }),
        );
        assert_eq!(hostname_and_domain(&p, "cluster.local"), ("db-0".into(), "db.shop.svc.cluster.local".into()));
        let hosts = hosts_file(&p, "10.88.40.5", "cluster.local");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.contains("\n10.88.40.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"), "{hosts}");
        assert!(hosts.ends_with("\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"), "{hosts}");
        let plain = pod(json!({}));
        assert_eq!(hostname_and_domain(&plain, "cluster.local"), ("web".into(), String::new()));
        assert!(hosts_file(&plain, "10.0.0.9", "cluster.local").ends_with("fe00::2\tip6-allrouters\n10.0.0.9\tweb\n"));
        // A hostNetwork pod: the node's file and its aliases.
        let host = pod(json!({ "hostNetwork": true, "hostAliases": [{ "ip": "10.1.2.3", "hostnames": ["foo"] }] }));
        assert_eq!(
            node_hosts_file(&host, "127.0.0.1\tlocalhost\n"),
            "127.0.0.1\tlocalhost\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\n"
        );
        assert_eq!(node_hosts_file(&plain, "127.0.0.1\tlocalhost\n"), "127.0.0.1\tlocalhost\n");
        // Cut to 63 characters, without a trailing '-'.
        let long = pod(json!({ "hostname": format!("{}-tail", "a".repeat(62)) }));
        assert_eq!(hostname_and_domain(&long, "cluster.local").0, "a".repeat(62));
    }
}
