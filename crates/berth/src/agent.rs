//! `berth agent`: the node agent. By default a real node running pods on containerd
//! (`berth_agent::node`); `--hollow` plays many fake nodes in this process
//! (`berth_agent::hollow`). Both build their client with [`client`]: from a kubeconfig, the
//! node token, or a join token exchanged for a node client certificate ([`join`]).

mod join;
pub(crate) mod rotation;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_agent::hollow::{HollowConfig, HollowNodes, config};
use berth_agent::node::{Agent, AgentConfig};
use clap::Args;

/// Flags of `berth agent`.
#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// Play hollow nodes: register nodes and pod lifecycles without running containers.
    #[arg(long)]
    hollow: bool,
    /// How many hollow nodes this process plays.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Kubeconfig of the cluster to join.
    #[arg(long, conflicts_with_all = ["server", "token"])]
    kubeconfig: Option<PathBuf>,
    /// URL of the API server (with --token, or alone once joined: the node certificate in
    /// DATA_DIR/pki is used).
    #[arg(long)]
    server: Option<String>,
    /// Join token `K10<CA hash>::<id>.<secret>` (`berth token create --print-join-command`;
    /// also `<id>.<secret>` once DATA_DIR/pki holds the CA), or the node token
    /// `K10<CA hash>::server:<secret>` (the server's DATA_DIR/token).
    #[arg(long, requires = "server")]
    token: Option<String>,
    /// The cluster's pod network (the server's --cluster-cidr): the real node's pods get a
    /// route to it, and the node routes the other nodes' ranges to them (host-gw).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Data dir of the real node: containerd, CNI state, pod logs.
    #[arg(long, default_value = "/var/lib/berth/agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    /// Hollow node names are <prefix><index>.
    #[arg(long, default_value = "hollow-node-")]
    node_name_prefix: String,
    /// Node capacity (= allocatable) over cpu=32,memory=256Gi,pods=110,ephemeral-storage=1Ti.
    #[arg(long, default_value = "")]
    capacity: String,
    /// Time from a pod bound to a node to its Running status.
    #[arg(long, default_value = "200ms")]
    pod_start_delay: String,
    /// How long pods with restartPolicy Never/OnFailure (or owned by a Job) run before Succeeded.
    #[arg(long, default_value = "1s")]
    pod_run_duration: String,
    /// Longest wait on a deleted pod's grace period (hollow containers stop at once).
    #[arg(long, default_value = "10s")]
    max_termination_grace: String,
}

/// Flags of a real node, shared by `berth agent` and the node `berth server` runs
/// (labels and taints apply to hollow nodes too).
#[derive(Args, Debug, Clone)]
pub(crate) struct NodeArgs {
    /// The node's name (real node; default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's IPv4 address (default: the source address of the default route).
    #[arg(long)]
    pub(crate) node_ip: Option<std::net::Ipv4Addr>,
    /// Use the containerd at this socket instead of starting one.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// The pods capacity of the real node.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// The node's pod CIDR (default: the Node's spec.podCIDR, else a /24 in 10.42.0.0/16).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The CNI bridge device's name.
    #[arg(long, default_value = "berth0")]
    bridge_name: String,
    /// On exit, leave the pods running; the next agent on this data dir adopts them.
    #[arg(long)]
    keep_pods: bool,
    /// Port of the real node's HTTPS endpoint for logs/exec/attach/port-forward (0 picks a free
    /// one) [default: 10250, or a free port when 10250 is taken].
    #[arg(long)]
    kubelet_port: Option<u16>,
    /// Hard eviction thresholds, SIGNAL<QUANTITY or SIGNAL<PERCENT% separated by commas (the
    /// kubelet's syntax; signals memory.available, nodefs.available, nodefs.inodesFree,
    /// imagefs.available, imagefs.inodesFree, pid.available); given, it replaces all the defaults
    /// [default: memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%].
    #[arg(long, env = "BERTH_EVICTION_HARD")]
    eviction_hard: Option<String>,
    /// Resources reserved for the system, taken off the Node's allocatable (the kubelet's
    /// syntax: cpu=100m,memory=256Mi,ephemeral-storage=1Gi,pid=1000).
    #[arg(long, default_value = "")]
    system_reserved: String,
    /// Resources reserved for Kubernetes' daemons, taken off the Node's allocatable (same syntax).
    #[arg(long, default_value = "")]
    kube_reserved: String,
    /// A directory of static pod manifests (YAML or JSON Pods) run on this node, each shown by
    /// a mirror pod in the API server; re-read every 20 s.
    #[arg(long)]
    pod_manifests: Option<PathBuf>,
    /// How long stopping the real node gives its pods (the kubelet's graceful node shutdown:
    /// the Node turns NotReady, regular pods stop first, critical pods last, each within its
    /// terminationGracePeriodSeconds and its phase's share; their status is written Failed).
    /// 0 removes the pods at once. Not with --keep-pods, which leaves them running.
    #[arg(long, default_value = "30s")]
    shutdown_grace_period: String,
    /// The part of --shutdown-grace-period kept for critical pods (priority of
    /// system-cluster-critical and above), which stop last.
    #[arg(long, default_value = "10s")]
    shutdown_grace_period_critical_pods: String,
    /// The cluster DNS server addresses, IP[,IP] (the kubelet's --cluster-dns): the nameservers
    /// of pods with dnsPolicy ClusterFirst, which use the node's resolv.conf without it.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain: pods search <namespace>.svc.DOMAIN, svc.DOMAIN and DOMAIN.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The node's resolver config, which pods with dnsPolicy Default use ("" for none: their
    /// lookups are then disabled).
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: String,
    /// Extra node labels: k=v,...
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Node taints: k=v:Effect,... (NoSchedule, PreferNoSchedule, NoExecute).
    #[arg(long, default_value = "")]
    node_taints: String,
}

/// Runs the agent until SIGTERM or SIGINT.
pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if !args.hollow {
        return run_node(args).await;
    }
    let config = hollow_config(&args)?;
    let client = client(&args, || {
        if config.nodes != 1 {
            bail!("joining with a join token gives one node identity: use --nodes 1 (or the node token)");
        }
        Ok(format!("{}0", config.node_name_prefix))
    })
    .await?;
    let nodes = config.nodes;
    let handle = HollowNodes::start(client, config).await.context("starting hollow nodes")?;
    tracing::info!(nodes, first = handle.node_names().next(), "hollow nodes running");
    until_stopped().await?;
    handle.stop().await;
    Ok(())
}

/// The real node: containerd, CNI, pods.
async fn run_node(args: AgentArgs) -> anyhow::Result<()> {
    if std::env::var_os(EAGER_COMMIT).is_none() {
        // The kubeconfig is read (YAML) before running again and handed over as JSON: the
        // YAML parser's code then never runs in the long-lived process, whose idle memory
        // is mostly the executable's pages it ran (~1.3 MiB for that parser).
        let handover = args.kubeconfig.as_deref().and_then(kubeconfig_json);
        let e = rerun(handover);
        tracing::warn!(error = %e, "could not run again with {EAGER_COMMIT}=0: continuing");
    }
    let mut config = node_config(&args.node, args.data_dir.clone())?;
    berth_agent::runtime::cni::Cidr::parse(&args.cluster_cidr).context("--cluster-cidr")?;
    config.cluster_cidr = Some(args.cluster_cidr.clone());
    let client = match node_token_exchange(&args) {
        // A real node trades the shared node token for its own certificate.
        Some(join) => {
            join::client(args.server.as_deref().unwrap_or_default(), Some(&join), &config.node_name, &args.data_dir)
                .await
                .context("exchanging the node token for a node certificate")?
        }
        None => client(&args, || Ok(config.node_name.clone())).await?,
    };
    let handle = Agent::start(client, config).await.context("starting the node agent")?;
    tracing::info!(node = handle.node_name(), kubelet_port = handle.kubelet_port(), "node agent running");
    until_stopped().await?;
    handle.stop().await;
    Ok(())
}

/// How long an idle thread of the node agent's blocking pool lives (tokio's default: 10 s).
/// The agent's file work comes in short bursts (start-up, stats of volumes and writable
/// layers); threads kept between them would hold their stacks and allocator heaps.
pub(crate) const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// mimalloc's option that commits its arena at once; with transparent huge pages in
/// `madvise` mode that arena is backed by 2 MiB pages, ~9 MiB of an idle node agent's RSS.
pub(crate) const EAGER_COMMIT: &str = "MIMALLOC_ARENA_EAGER_COMMIT";

/// Replaces this process (same PID, same arguments) with one whose allocator commits
/// memory as it is used: mimalloc reads its options from the environment only when the
/// process starts. Containerd and the pods do not inherit the setting's effect (it only
/// concerns mimalloc). Returns only on failure.
pub(crate) fn rerun_with_lazy_commit() -> std::io::Error {
    rerun(None)
}

/// Runs again as [`rerun_with_lazy_commit`]; `kubeconfig` (JSON), when given, goes to the
/// new process through a pipe on its stdin ([`handed_over_kubeconfig`] reads it).
fn rerun(kubeconfig: Option<Vec<u8>>) -> std::io::Error {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // The pipe holds it all before anyone reads (HANDOVER_MAX is below its 64 KiB).
    if let Some(json) = kubeconfig
        && let Ok((reader, mut writer)) = std::io::pipe()
        && writer.write_all(&json).is_ok()
    {
        drop(writer);
        command.stdin(reader).env(KUBECONFIG_ON_STDIN, "1");
    }
    command.args(args).env(EAGER_COMMIT, "0").exec()
}

/// Set for a re-run node agent whose stdin carries its kubeconfig as JSON.
const KUBECONFIG_ON_STDIN: &str = "BERTH_AGENT_KUBECONFIG_ON_STDIN";

/// The largest kubeconfig handed over (a pipe holds 64 KiB before its writer waits).
const HANDOVER_MAX: usize = 60 * 1024;

/// The kubeconfig at `path` as JSON, to hand over; None when it cannot be read (the re-run
/// process reads it and says why) or is too large for the pipe.
fn kubeconfig_json(path: &Path) -> Option<Vec<u8>> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).ok()?;
    serde_json::to_vec(&kubeconfig).ok().filter(|json| json.len() <= HANDOVER_MAX)
}

/// The kubeconfig the process that ran this one handed over on stdin, if it did.
fn handed_over_kubeconfig() -> Option<kube::config::Kubeconfig> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    std::env::var_os(KUBECONFIG_ON_STDIN)?;
    std::env::var_os(EAGER_COMMIT)?;
    // Only a pipe (an inherited variable with a terminal on stdin would wait forever).
    let stdin = std::fs::metadata("/proc/self/fd/0").ok()?;
    if !stdin.file_type().is_fifo() {
        return None;
    }
    let mut json = Vec::new();
    std::io::stdin().lock().take(HANDOVER_MAX as u64 + 1).read_to_end(&mut json).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Waits for SIGTERM or SIGINT.
async fn until_stopped() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    Ok(())
}

/// The node's name: `--node-name`, else the host name.
pub(crate) fn node_name(args: &NodeArgs) -> anyhow::Result<String> {
    match &args.node_name {
        Some(n) => Ok(n.clone()),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .context("reading the host name (give --node-name)"),
    }
}

/// The real node's configuration from its flags, with its data in `data_dir`.
pub(crate) fn node_config(args: &NodeArgs, data_dir: PathBuf) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::new(&node_name(args)?, data_dir);
    config.node_ip = args.node_ip;
    config.labels = config::parse_labels(&args.node_labels).context("--node-labels")?;
    config.taints = config::parse_taints(&args.node_taints).context("--node-taints")?;
    config.containerd_socket = args.containerd_socket.clone();
    config.max_pods = args.max_pods;
    if let Some(cidr) = &args.pod_cidr {
        berth_agent::runtime::cni::Cidr::parse(cidr).context("--pod-cidr")?;
    }
    config.pod_cidr = args.pod_cidr.clone();
    config.bridge = args.bridge_name.clone();
    config.keep_pods = args.keep_pods;
    config.kubelet_port = args.kubelet_port;
    config.pod_manifests = args.pod_manifests.clone();
    config.system_reserved =
        berth_agent::node::register::parse_reserved(&args.system_reserved).context("--system-reserved")?;
    config.kube_reserved =
        berth_agent::node::register::parse_reserved(&args.kube_reserved).context("--kube-reserved")?;
    config.shutdown_grace_period =
        config::parse_duration(&args.shutdown_grace_period).context("--shutdown-grace-period")?;
    config.shutdown_grace_period_critical_pods = config::parse_duration(&args.shutdown_grace_period_critical_pods)
        .context("--shutdown-grace-period-critical-pods")?;
    berth_agent::node::shutdown::phases(config.shutdown_grace_period, config.shutdown_grace_period_critical_pods)?;
    config.dns = berth_agent::node::dns::DnsSettings {
        cluster_dns: args.cluster_dns.iter().map(ToString::to_string).collect(),
        cluster_domain: args.cluster_domain.trim_end_matches('.').to_string(),
        resolv_conf: (!args.resolv_conf.is_empty()).then(|| PathBuf::from(&args.resolv_conf)),
    };
    if let Some(thresholds) = &args.eviction_hard {
        config.eviction_hard = berth_agent::node::eviction::parse_thresholds(thresholds).context("--eviction-hard")?;
    }
    Ok(config)
}

fn hollow_config(args: &AgentArgs) -> anyhow::Result<HollowConfig> {
    let config = HollowConfig {
        nodes: args.nodes,
        node_name_prefix: args.node_name_prefix.clone(),
        labels: config::parse_labels(&args.node.node_labels).context("--node-labels")?,
        taints: config::parse_taints(&args.node.node_taints).context("--node-taints")?,
        capacity: config::parse_capacity(&args.capacity).context("--capacity")?,
        pod_start_delay: config::parse_duration(&args.pod_start_delay).context("--pod-start-delay")?,
        pod_run_duration: config::parse_duration(&args.pod_run_duration).context("--pod-run-duration")?,
        max_termination_grace: config::parse_duration(&args.max_termination_grace)
            .context("--max-termination-grace")?,
        ..HollowConfig::default()
    };
    config.validate()?;
    Ok(config)
}

/// A client from the kubeconfig, from --server and the node token (sent as a bearer token),
/// or from --server and the node certificate (obtained with a join token, then stored): the
/// one way both agent modes reach the API server. `node_name` names the node a certificate
/// is for.
async fn client(args: &AgentArgs, node_name: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<kube::Client> {
    let config = match (&args.kubeconfig, &args.server, &args.token) {
        (Some(path), _, _) => {
            let kubeconfig = match handed_over_kubeconfig() {
                Some(kubeconfig) => kubeconfig,
                None => kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?,
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        (None, Some(server), token) => match token.as_deref().map(|t| (t, join::JoinToken::parse(t))) {
            Some((token, None)) => token_config(server, token).await?,
            Some((_, Some(join))) => return join::client(server, Some(&join), &node_name()?, &args.data_dir).await,
            None => return join::client(server, None, &node_name()?, &args.data_dir).await,
        },
        _ => bail!("give --kubeconfig PATH, or --server URL with --token TOKEN"),
    };
    kube::Client::try_from(config).context("building the API client")
}

/// With `--server` and the shared node token `K10<CA hash>::server:<secret>`, the
/// credentials a real node joins with as if it were a join token: the CA is checked against
/// the hash, then a node client CSR is sent as `system:node-agent` (auto-approved through the
/// `nodeclient` binding, as for bootstrap tokens) and the node uses its own certificate from
/// then on, so the Node authorizer limits it to its own objects. Hollow processes keep the
/// node token's identity, since they act for many nodes at once; it holds only what hollow
/// nodes do (`berth:hollow-node`: no secrets, configmaps or volumes).
fn node_token_exchange(args: &AgentArgs) -> Option<join::JoinToken> {
    let token = args.token.as_deref().filter(|_| args.server.is_some() && !args.hollow)?;
    if join::JoinToken::parse(token).is_some() {
        return None;
    }
    let node_token = berth_pki::token::NodeToken::parse(token).ok()?;
    Some(join::JoinToken { ca_hash: Some(node_token.ca_hash), token: node_token.secret })
}

/// A client configuration from a k3s-style node token: fetches the server CA from
/// `/cacerts` without verification, checks it against the token's hash, then trusts only
/// that CA and authenticates with the token's secret.
async fn token_config(server: &str, token: &str) -> anyhow::Result<kube::Config> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let url: hyper::Uri = server.parse().with_context(|| format!("--server {server:?} is not a URL"))?;
    let token = berth_pki::token::NodeToken::parse(token).context("--token")?;
    if url.scheme_str() != Some("https") {
        bail!("--server {server:?} must be an https:// URL");
    }
    let mut insecure = kube::Config::new(url.clone());
    insecure.accept_invalid_certs = true;
    let request = hyper::Request::get("/cacerts").body(Vec::new()).context("building the /cacerts request")?;
    let ca_pem = kube::Client::try_from(insecure)
        .context("building the bootstrap client")?
        .request_text(request)
        .await
        .with_context(|| format!("fetching {server}/cacerts"))?;
    token.verify_ca(&ca_pem).with_context(|| format!("refusing {server}"))?;
    let roots = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .context("the server CA is not PEM")?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token.secret }))
        .context("building the client credentials")?;
    Ok(config)
}
