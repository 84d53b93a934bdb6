//! `berth server`: opens the datastore (the embedded store in the data dir, or etcd),
//! starts the API server, writes a kubeconfig, and stops cleanly on SIGTERM/SIGINT.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::rotation::{NodeCredentials, RotatingClient};

use anyhow::Context;
use berth_apiserver::{Config, Server};
use clap::Args;

use crate::datastore::{self, Compaction, DatastoreArgs};

/// Flags of `berth server`.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// Directory for the store and generated files
    /// [default: /var/lib/berth/server as root, else ~/.local/share/berth/server].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Run the control plane only, without a node agent on this host.
    #[arg(long)]
    disable_agent: bool,
    /// Bearer tokens of users the cluster does not manage, in Kubernetes' CSV format:
    /// `token,user,uid[,"group1,group2"]` per line (read at start).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The node this server runs (unless --disable-agent); its data is in DATA_DIR/agent.
    #[command(flatten)]
    node: crate::agent::NodeArgs,
    /// Revisions of history kept by the store and the watch cache; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    compaction_retention: i64,
    /// Seconds between automatic compactions of the store.
    #[arg(long, default_value_t = 300)]
    compaction_interval: u64,
    /// Where the built-in `local-path` StorageClass provisions volumes on each node (as
    /// k3s's flag); default DATA_DIR/storage. The class is created (default unless another
    /// class is) when this server runs a node, or when this flag is given.
    #[arg(long)]
    default_local_storage_path: Option<PathBuf>,
    /// Run no controllers at all (an API-server-only control plane, as k3s's flag of the same name).
    #[arg(long)]
    disable_controller_manager: bool,
    /// Controllers not to run, comma-separated (names as in `berth_controllers::NAMES`).
    #[arg(long, value_delimiter = ',')]
    disable_controllers: Vec<String>,
    #[command(flatten)]
    datastore: DatastoreArgs,
    #[command(flatten)]
    encryption: crate::secrets_encryption::EncryptionArgs,
    #[command(flatten)]
    audit: crate::audit::AuditArgs,
    /// Do not run the scheduler.
    #[arg(long)]
    disable_scheduler: bool,
    /// KubeSchedulerConfiguration file (profiles, plugin weights).
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    /// The range of pod addresses; each node gets a /24 of it (node IPAM).
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: berth_controllers::nodeipam::Cidr,
    /// How long a node may go without renewing its Lease before it is marked Unknown (e.g. 40s).
    #[arg(long, default_value = "40s")]
    node_monitor_grace_period: jiff::SignedDuration,
    /// Nodes per second tainted NoExecute (their pods evicted) in a healthy zone.
    #[arg(long, default_value_t = 0.1, value_parser = rate)]
    node_eviction_rate: f64,
    /// Nodes per second in a partially disrupted zone larger than --large-cluster-size-threshold.
    #[arg(long, default_value_t = 0.01, value_parser = rate)]
    secondary_node_eviction_rate: f64,
    /// Share of a zone's nodes (more than two) not Ready that makes it partially disrupted.
    #[arg(long, default_value_t = 0.55, value_parser = share)]
    unhealthy_zone_threshold: f64,
    /// Partially disrupted zones of at most this many nodes stop evicting.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    /// The longest a certificate signed through a CertificateSigningRequest lasts (agents
    /// renew theirs after 80 % of it), e.g. 720h.
    #[arg(long, default_value = "8760h")]
    cluster_signing_duration: jiff::SignedDuration,
    /// Terminated pods beyond this many are deleted, oldest first.
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Take snapshots of the datastore on this cron schedule (five fields, or six with
    /// seconds first), e.g. "0 */6 * * *" [default: no scheduled snapshots].
    #[arg(long)]
    snapshot_cron: Option<String>,
    /// Scheduled snapshots kept (the oldest beyond this are deleted).
    #[arg(long, default_value_t = 5)]
    snapshot_retention: usize,
    /// Where scheduled snapshots go [default: DATA_DIR/snapshots].
    #[arg(long)]
    snapshot_dir: Option<PathBuf>,
    /// The CA node agents' serving certificates are verified against when the API server
    /// proxies logs/exec/attach/port-forward to them (PEM) [default: the cluster CA, which
    /// signs their kubelet-serving CSRs].
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Extra names or addresses for the serving certificate (repeatable, comma-separated).
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Secret agents join with (a bare secret or a K10 token); default: the one in DATA_DIR/token, else a new one.
    /// On etcd it also shares the cluster's CAs, keys and Secrets encryption key between the servers given it.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Issuer (`iss`) of ServiceAccount tokens.
    #[arg(long, default_value = berth_apiserver::serviceaccount_token::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// Audiences the API accepts in ServiceAccount tokens, comma-separated [default: the issuer].
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// How requests are authorized: a list of Node, RBAC and AlwaysAllow, asked in order.
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: berth_apiserver::authz::Modes,
}

/// A rate flag: a finite number, 0 or more.
fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("must be a number of nodes per second, 0 or more".into()),
    }
}

/// A share flag: a number in (0, 1].
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err("must be a share in (0, 1]".into()),
    }
}

pub(crate) fn default_data_dir() -> PathBuf {
    let is_root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if is_root {
        PathBuf::from("/var/lib/berth/server")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/berth/server")
    }
}

fn warn_of_expiring_cas(cas: &[(String, berth_pki::OffsetDateTime)]) {
    for (name, not_after) in cas {
        tracing::warn!(certificate = %name, %not_after, "CA certificate expires within 90 days: clients must be given a new CA");
    }
}

/// How often the running server looks for certificates near their end: hourly, or more
/// often when leaf certificates are short-lived (a tenth of their renewal window).
fn renewal_check() -> Duration {
    let before = Duration::try_from(berth_pki::leaf_lifetime().1).unwrap_or(Duration::from_secs(3600));
    (before / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// The clients this server holds by the name of the leaf certificate each presents, and
/// the kubeconfig files that hold the admin's: what a renewal must update.
struct Renewed {
    clients: Vec<(String, RotatingClient)>,
    kubeconfig_url: String,
    ca_pem: String,
    kubeconfigs: Vec<PathBuf>,
}

/// How often the running server looks at its clients' certificate files for a change made
/// beside it (`berth certificate rotate` on its data dir).
const ROTATION_CHECK: Duration = Duration::from_secs(2);

/// While the server runs, renews leaf certificates near their end (as
/// [`berth_pki::Pki::renew_expiring`] says) with a warning for each, and puts the new ones
/// to use without a restart: the TLS listener serves the new serving certificate, the
/// components' clients present their new certificates on new connections (the ones made
/// with the old closed), and the kubeconfig files get the new admin certificate. Warns of
/// CAs near their end. Certificates rotated on disk by `berth certificate rotate` are put
/// to use the same way within [`ROTATION_CHECK`].
async fn renew_certificates(dir: PathBuf, renewed: Renewed, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = renewal_check();
    let pki = berth_pki::Pki::load_or_create(&dir);
    let pki = match pki {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "certificates will not be renewed");
            return;
        }
    };
    let mut in_use = renewed.presented(&pki);
    let mut next_renewal = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROTATION_CHECK.min(every)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        renewed.follow_files(&pki, &mut in_use);
        if tokio::time::Instant::now() < next_renewal {
            continue;
        }
        next_renewal = tokio::time::Instant::now() + every;
        let dir = dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            let pki = berth_pki::Pki::load_or_create(&dir)?;
            pki.renew_expiring().map(|ends| (pki, ends))
        })
        .await;
        match result {
            Ok(Ok((pki, (leaves, cas)))) => {
                for (name, not_after) in &leaves {
                    tracing::warn!(certificate = %name, %not_after, "certificate near its end: renewed");
                    match renewed.put_to_use(&pki, name) {
                        Ok(cert_pem) => {
                            in_use.insert(name.clone(), cert_pem);
                        }
                        Err(e) => {
                            tracing::warn!(certificate = %name, error = %format!("{e:#}"), "using a renewed certificate")
                        }
                    }
                }
                warn_of_expiring_cas(&cas);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing certificates"),
            Err(e) => tracing::warn!(error = %e, "renewing certificates"),
        }
    }
}

impl Renewed {
    /// The leaves whose renewal this server puts to use: its clients' and the admin's.
    fn names(&self) -> std::collections::BTreeSet<String> {
        let admin = berth_pki::LeafSpec::client("admin", "", &[]).name;
        self.clients.iter().map(|(n, _)| n.clone()).chain(std::iter::once(admin)).collect()
    }

    /// The certificate (PEM) in each of those files now: what the server started with.
    fn presented(&self, pki: &berth_pki::Pki) -> std::collections::BTreeMap<String, String> {
        let read = |name: &String| std::fs::read_to_string(pki.leaf_files(name).0).ok().map(|pem| (name.clone(), pem));
        self.names().iter().filter_map(read).collect()
    }

    /// Puts to use the certificates whose files changed since `in_use` was read (rotated
    /// beside the running server). A pair that does not load yet (rotation writes the key,
    /// then the certificate) is tried again at the next look.
    fn follow_files(&self, pki: &berth_pki::Pki, in_use: &mut std::collections::BTreeMap<String, String>) {
        for name in self.names() {
            let Ok(on_disk) = std::fs::read_to_string(pki.leaf_files(&name).0) else { continue };
            if in_use.get(&name) == Some(&on_disk) {
                continue;
            }
            match self.put_to_use(pki, &name) {
                Ok(cert_pem) => {
                    tracing::info!(certificate = %name, "certificate rotated on disk: in use");
                    in_use.insert(name, cert_pem);
                }
                Err(e) => tracing::warn!(certificate = %name, error = %format!("{e:#}"), "using a rotated certificate"),
            }
        }
    }

    /// Makes the clients presenting the leaf `name` present its renewed certificate (and
    /// rewrites the kubeconfig files for the admin's); the certificate put to use.
    fn put_to_use(&self, pki: &berth_pki::Pki, name: &str) -> anyhow::Result<String> {
        let (cert, key) = pki.leaf_files(name);
        let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| p.display().to_string());
        let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
        for (_, client) in self.clients.iter().filter(|(n, _)| n == name) {
            let closed = client.switch(&cert_pem, &key_pem)?;
            tracing::info!(certificate = %name, closed, "client now presents the renewed certificate");
        }
        if name == berth_pki::LeafSpec::client("admin", "", &[]).name {
            let text = kubeconfig(&self.kubeconfig_url, &self.ca_pem, &cert_pem, &key_pem);
            for path in &self.kubeconfigs {
                write_private(path, &text)?;
                tracing::info!(kubeconfig = %path.display(), "kubeconfig now holds the renewed admin certificate");
            }
        }
        Ok(cert_pem)
    }
}

/// A kubeconfig for `server`, trusting `ca_pem`, as the holder of the client certificate
/// `cert_pem` and its key `key_pem`.
pub(crate) fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: berth\n  context:\n    cluster: berth\n    user: admin\n    namespace: default\ncurrent-context: berth\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// The serving certificate's names: loopback, the bind address, the node's address
/// (`--node-ip`, else the source address of the default route, as the node registers it;
/// what clients on other hosts dial when the server binds every address), the in-cluster
/// names of the `kubernetes` Service and its address, and `--tls-san` values.
fn serving_sans(bind: IpAddr, node_ip: Option<std::net::Ipv4Addr>, extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    if !bind.is_unspecified() {
        sans.push(bind.to_string());
    }
    let node_ip = node_ip.unwrap_or_else(berth_agent::node::register::default_node_ip);
    if !node_ip.is_loopback() && !node_ip.is_unspecified() {
        sans.push(node_ip.to_string());
    }
    for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"] {
        sans.push(name.into());
    }
    sans.push("10.43.0.1".into());
    for san in extra.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        sans.push(san.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// What TLS and authentication need from the data dir's PKI.
struct Security {
    tls: berth_apiserver::TlsConfig,
    token: berth_pki::token::NodeToken,
    admin: berth_pki::CertKey,
    controller_manager: berth_pki::CertKey,
    scheduler: berth_pki::CertKey,
    kubelet_client: berth_pki::CertKey,
    service_account_key_pem: String,
}

/// Loads or creates the PKI under DATA_DIR/tls and the node token in DATA_DIR/token.
fn security(data_dir: &Path, args: &ServerArgs) -> anyhow::Result<Security> {
    use berth_pki::{CaKind, LeafSpec, Pki};
    let pki = Pki::load_or_create(&data_dir.join("tls")).context("the cluster PKI")?;
    // Leaves within 90 days of their end are issued anew, each with a warning; CAs that
    // near theirs are warned of (not replaced: that takes every client's trust with it).
    let (leaves, cas) = pki.renew_expiring()?;
    for (name, not_after) in &leaves {
        tracing::warn!(certificate = %name, %not_after, "certificate near its end: renewed");
    }
    warn_of_expiring_cas(&cas);
    let sans = serving_sans(args.bind_address, args.node.node_ip, &args.tls_san);
    let serving = pki.leaf(&LeafSpec::serving(&sans))?;
    let server_ca_pem = pki.ca_pem(CaKind::Server)?;
    let client = |name: &str, cn: &str, orgs: &[&str]| pki.leaf(&LeafSpec::client(name, cn, orgs));
    let admin = client("admin", "system:admin", &["system:masters"])?;
    let controller_manager = client("controller", "system:kube-controller-manager", &[])?;
    let scheduler = client("scheduler", "system:kube-scheduler", &[])?;
    // Presented to node agents for pods' log/exec/attach/portforward.
    let kubelet_client = client("kubelet-client", "system:kube-apiserver", &[])?;
    let token =
        berth_pki::token::NodeToken::load_or_create(&data_dir.join("token"), &server_ca_pem, args.token.as_deref())
            .context("the node token")?;
    let tls = berth_apiserver::TlsConfig {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        client_ca_pem: pki.ca_pem(CaKind::Client)?,
        server_ca_pem,
        cert_files: Some(pki.leaf_files(&LeafSpec::serving(&[]).name)),
    };
    let service_account_key_pem = pki.service_account_key_pem()?;
    Ok(Security { tls, token, admin, controller_manager, scheduler, kubelet_client, service_account_key_pem })
}

/// The ServiceAccount token issuer over the PKI's signing key.
fn service_account_tokens(
    args: &ServerArgs,
    security: &Security,
) -> anyhow::Result<std::sync::Arc<berth_apiserver::serviceaccount_token::ServiceAccountTokens>> {
    use berth_apiserver::serviceaccount_token::{ServiceAccountTokens, TokenIssuer};
    let issuer = TokenIssuer::new(&security.service_account_key_pem, &args.service_account_issuer, &args.api_audiences)
        .context("the ServiceAccount signing key")?;
    Ok(std::sync::Arc::new(ServiceAccountTokens::new(issuer)))
}

/// The secret part of a `--token` (a bare secret or a full K10 token).
fn token_secret(given: &str) -> String {
    berth_pki::token::NodeToken::parse(given).map(|t| t.secret).unwrap_or_else(|_| given.trim().to_string())
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the admin kubeconfig for `addr` to DATA_DIR/kubeconfig.yaml (and
/// `--write-kubeconfig`); returns the data dir's path.
fn write_kubeconfigs(
    data_dir: &Path,
    args: &ServerArgs,
    addr: std::net::SocketAddr,
    security: &Security,
) -> anyhow::Result<PathBuf> {
    let admin = &security.admin;
    let kc = kubeconfig(
        &format!("https://{}", dialable(addr)),
        &security.tls.server_ca_pem,
        &admin.cert_pem,
        &admin.key_pem,
    );
    let kc_path = data_dir.join("kubeconfig.yaml");
    write_private(&kc_path, &kc)?;
    if let Some(extra) = &args.write_kubeconfig {
        write_private(extra, &kc)?;
    }
    Ok(kc_path)
}

/// Runs the server until SIGTERM or SIGINT.
pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // mimalloc commits its first arena at once by default; lazily committed, the idle
    // server's heap is ~4-20 MiB smaller (BENCHMARKS.md, bench api). An explicit setting wins.
    if std::env::var_os(crate::agent::EAGER_COMMIT).is_none() {
        let e = crate::agent::rerun_with_lazy_commit();
        tracing::warn!(error = %e, "could not run again with {}=0: continuing", crate::agent::EAGER_COMMIT);
    }
    let started = Instant::now();
    let scheduler_config = match &args.scheduler_config {
        Some(path) => berth_scheduler::SchedulerConfig::from_file(path)?,
        None => berth_scheduler::SchedulerConfig::default(),
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let mut controller_options =
        berth_controllers::Options::disabling(args.disable_controllers.iter().map(String::as_str))?;
    controller_options.cluster_cidr = args.cluster_cidr;
    controller_options.node_monitor_grace_period =
        args.node_monitor_grace_period.try_into().context("--node-monitor-grace-period must be positive")?;
    controller_options.terminated_pod_gc_threshold = args.terminated_pod_gc_threshold;
    let local_storage = match (&args.default_local_storage_path, args.disable_agent) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(data_dir.join("storage")),
        (None, true) => None,
    };
    let local_storage = local_storage
        .map(|p| std::path::absolute(&p).map(|p| p.display().to_string()))
        .transpose()
        .context("--default-local-storage-path")?;
    for (flag, rate) in [
        ("--node-eviction-rate", args.node_eviction_rate),
        ("--secondary-node-eviction-rate", args.secondary_node_eviction_rate),
    ] {
        anyhow::ensure!(rate.is_finite() && rate >= 0.0, "{flag} must be a number of nodes per second, 0 or more");
    }
    anyhow::ensure!(
        args.unhealthy_zone_threshold > 0.0 && args.unhealthy_zone_threshold <= 1.0,
        "--unhealthy-zone-threshold must be a share in (0, 1]"
    );
    controller_options.eviction_limits = berth_controllers::EvictionLimits {
        eviction_rate: args.node_eviction_rate,
        secondary_eviction_rate: args.secondary_node_eviction_rate,
        unhealthy_zone_threshold: args.unhealthy_zone_threshold,
        large_cluster_size_threshold: args.large_cluster_size_threshold,
    };
    let snapshot_schedule = match &args.snapshot_cron {
        Some(cron) => Some(crate::snapshots::Schedule::new(
            cron,
            args.snapshot_retention,
            args.snapshot_dir.clone().unwrap_or_else(|| data_dir.join("snapshots")),
        )?),
        None => None,
    };
    let compaction =
        Compaction { window: args.compaction_retention, interval: Duration::from_secs(args.compaction_interval) };
    let embedded = matches!(args.datastore.endpoint(&data_dir)?, datastore::Endpoint::Sqlite(_));
    // Servers on one etcd given the same --token share the CAs, keys and encryption
    // configuration through it (see `bootstrap`).
    let share_token = if embedded { None } else { args.token.as_deref().map(token_secret) };
    let share_encryption = share_token.is_some() && args.encryption.encryption_provider_config.is_none();
    let had_pki = berth_pki::Pki::exists(&data_dir.join("tls"));
    let had_encryption = share_encryption && crate::secrets_encryption::default_path(&data_dir).exists();
    let fresh = !had_pki && !had_encryption;
    let mut security = security(&data_dir, &args)?;
    // While etcd is not reachable the port already answers: live, not ready.
    let starting = if embedded {
        None
    } else {
        let starting =
            berth_apiserver::Starting::bind(args.bind_address, args.https_listen_port, Some(&security.tls), "etcd")
                .await
                .with_context(|| format!("listening on {}:{}", args.bind_address, args.https_listen_port))?;
        write_kubeconfigs(&data_dir, &args, starting.local_addr(), &security)?;
        Some(starting)
    };
    let Some(store) = datastore::open_for_server(&args.datastore, &data_dir, compaction, shutdown_signal()).await?
    else {
        tracing::info!("stopped while waiting for the datastore");
        return Ok(());
    };
    if let Some(token) = &share_token {
        if share_encryption {
            crate::secrets_encryption::ensure_default(&data_dir)?;
        }
        let shared = match crate::bootstrap::share(&*store, &data_dir, token, fresh, share_encryption).await {
            Ok(shared) => shared,
            Err(e) => {
                if fresh {
                    // What this start made goes, so that a retry with the right token joins.
                    let _ = std::fs::remove_dir_all(data_dir.join("tls"));
                    let _ = std::fs::remove_file(crate::secrets_encryption::default_path(&data_dir));
                }
                return Err(e);
            }
        };
        tracing::info!(?shared, "cluster bootstrap data shared through the datastore");
        if shared == (crate::bootstrap::Shared::Adopted { changed: true }) {
            security = self::security(&data_dir, &args)?;
        }
    }
    // A full K10 token names the cluster's CA: this server must have that one.
    if let Some(Ok(given)) = args.token.as_deref().map(berth_pki::token::NodeToken::parse) {
        given.verify_ca(&security.tls.server_ca_pem).context("--token")?;
    }
    let port = match starting {
        Some(starting) => starting.stop().await,
        None => args.https_listen_port,
    };
    controller_options.root_ca = Some(security.tls.server_ca_pem.clone());
    let signing_duration = Duration::try_from(args.cluster_signing_duration)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--cluster-signing-duration must be positive")?;
    controller_options.csr_signing = Some(crate::token::csr_signing(&data_dir, signing_duration)?);
    let config = Config {
        bind_address: args.bind_address,
        port,
        watch_history: usize::try_from(args.compaction_retention.max(1)).unwrap_or(usize::MAX),
        tls: Some(security.tls.clone()),
        authn: berth_apiserver::Authenticator {
            node_token: Some(security.token.secret.clone()),
            service_accounts: Some(service_account_tokens(&args, &security)?),
            static_tokens: match &args.token_auth_file {
                Some(path) => Some(Arc::new(berth_apiserver::token_file::StaticTokens::load(path)?)),
                None => None,
            },
            ..Default::default()
        },
        kubelet_client: Some(berth_apiserver::node_proxy::KubeletClient {
            cert_pem: security.kubelet_client.cert_pem.clone(),
            key_pem: security.kubelet_client.key_pem.clone(),
            ca_pem: match &args.kubelet_certificate_authority {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading --kubelet-certificate-authority {}", path.display()))?,
                None => security.tls.server_ca_pem.clone(),
            },
            cert_files: Some(
                berth_pki::Pki::load_or_create(&data_dir.join("tls"))?
                    .leaf_files(&berth_pki::LeafSpec::client("kubelet-client", "", &[]).name),
            ),
        }),
        authorization_mode: args.authorization_mode.clone(),
        audit: crate::audit::config(&args.audit)?,
    };
    let raw_store = store.clone();
    let etcd_unshared = !embedded && share_token.is_none();
    let (store, encryption) = crate::secrets_encryption::wrap(&args.encryption, &data_dir, etcd_unshared, store)?;
    let server = Server::start(config, store)
        .await
        .with_context(|| format!("starting the API server on {}:{}", args.bind_address, args.https_listen_port))?;
    let addr = server.local_addr();
    let url = format!("https://{addr}");
    let ca = &security.tls.server_ca_pem;
    let kc_path = write_kubeconfigs(&data_dir, &args, addr, &security)?;
    let (agent_failed_tx, agent_failed) = tokio::sync::oneshot::channel();
    let node = if args.disable_agent {
        None
    } else {
        let mut config = crate::agent::node_config(&args.node, data_dir.join("agent"))?;
        config.cluster_cidr = Some(args.cluster_cidr.to_string());
        // The node's own identity (group system:nodes), as a kubelet's client certificate.
        let pki = berth_pki::Pki::load_or_create(&data_dir.join("tls"))?;
        let spec =
            berth_pki::LeafSpec::client("kubelet", &format!("system:node:{}", config.node_name), &["system:nodes"]);
        let client = local_client(addr, ca, &pki.leaf(&spec)?)?;
        Some((spec.name, client, config))
    };
    tracing::info!(
        address = %url,
        kubeconfig = %kc_path.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "berth server ready"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let (Some(token), true) = (share_token, share_encryption) {
        tokio::spawn(crate::bootstrap::follow(raw_store, data_dir.clone(), token, encryption, stop_rx.clone()));
    }
    let admin_client = local_client(addr, ca, &security.admin)?;
    let controller_client = local_client(addr, ca, &security.controller_manager)?;
    let scheduler_client = local_client(addr, ca, &security.scheduler)?;
    let admin = admin_client.client();
    let (controller_manager, scheduler) = (controller_client.client(), scheduler_client.client());
    let mut clients = vec![
        ("client-admin".to_string(), admin_client),
        ("client-controller".to_string(), controller_client),
        ("client-scheduler".to_string(), scheduler_client),
    ];
    let node = node.map(|(name, client, config)| {
        let kube = client.client();
        clients.push((name, client));
        (kube, config)
    });
    let renewed = Renewed {
        clients,
        kubeconfig_url: format!("https://{}", dialable(addr)),
        ca_pem: ca.clone(),
        kubeconfigs: std::iter::once(kc_path.clone()).chain(args.write_kubeconfig.clone()).collect(),
    };
    tokio::spawn(renew_certificates(data_dir.join("tls"), renewed, stop_rx.clone()));
    let identity = format!("{}_{}", hostname(), uuid::Uuid::new_v4());
    if let Some(schedule) = snapshot_schedule {
        let source =
            crate::snapshots::Source { args: args.datastore.clone(), endpoint: args.datastore.endpoint(&data_dir)? };
        // On a shared etcd only the controller-manager leader takes them.
        let leader =
            (!embedded).then(|| crate::snapshots::Leader { client: admin.clone(), identity: identity.clone() });
        if leader.is_some() && args.disable_controller_manager {
            tracing::warn!(
                "--snapshot-cron on etcd with --disable-controller-manager: this server never holds the controller-manager Lease, so it takes no scheduled snapshots"
            );
        }
        tokio::spawn(crate::snapshots::run(source, schedule, leader, stop_rx.clone()));
    }
    let client_ca = serde_json::json!({ "client-ca-file": security.tls.client_ca_pem });
    tokio::spawn(publish_config_map(admin.clone(), "kube-system", "extension-apiserver-authentication", client_ca));
    let cluster_info = serde_json::json!({ "kubeconfig": cluster_info_kubeconfig(&url, ca) });
    tokio::spawn(publish_config_map(admin.clone(), "kube-public", "cluster-info", cluster_info));
    if let Some(path) = local_storage {
        tokio::spawn(berth_controllers::persistentvolume::ensure_local_path_class(admin, path));
    }
    // The node's graceful shutdown takes up to its grace period, and a moment to clean up.
    let agent_stop = node.as_ref().map_or(Duration::ZERO, |(_, c)| c.shutdown_grace_period) + Duration::from_secs(30);
    let agent = node.map(|(client, config)| tokio::spawn(run_agent(client, config, stop_rx.clone(), agent_failed_tx)));
    let components = tokio::spawn(run_components(
        identity,
        controller_manager,
        scheduler,
        (!args.disable_controller_manager).then_some(controller_options),
        (!args.disable_scheduler).then_some(scheduler_config),
        stop_rx,
    ));
    let failure = Arc::new(std::sync::Mutex::new(None));
    let failure_seen = failure.clone();
    server
        .serve(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                Ok(e) = agent_failed => {
                    *failure_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            }
            // Controllers and scheduler stop (and release their leases) while the API still serves.
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), components).await;
            // The node stops its pods while it can still report them.
            if let Some(agent) = agent {
                let _ = tokio::time::timeout(agent_stop, agent).await;
            }
        })
        .await
        .context("serving the API")?;
    if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    tracing::info!("berth server stopped");
    Ok(())
}

/// The address local clients dial for the listener `addr`: loopback when it binds every
/// address (0.0.0.0 is no certificate name).
fn dialable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() { std::net::SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port()) } else { addr }
}

/// A client of this server's own API as the holder of `identity`, for the components it
/// runs (they use HTTPS like any client); its certificate can be switched for a renewed one.
fn local_client(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: &berth_pki::CertKey,
) -> anyhow::Result<RotatingClient> {
    let url: hyper::Uri = format!("https://{}", dialable(addr)).parse().context("the server's own address")?;
    let creds = NodeCredentials {
        ca_pem: ca_pem.to_string(),
        cert_pem: identity.cert_pem.clone(),
        key_pem: identity.key_pem.clone(),
    };
    RotatingClient::new(url, &creds).context("a client for the server's own API")
}

/// Runs this server's node until `stop` turns true; a node that cannot start is reported
/// on `failed` (the server then stops: it was asked for a node).
async fn run_agent(
    client: kube::Client,
    config: berth_agent::node::AgentConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
    failed: tokio::sync::oneshot::Sender<anyhow::Error>,
) {
    match berth_agent::node::Agent::start(client, config).await {
        Ok(handle) => {
            tracing::info!(node = handle.node_name(), "node agent running");
            let _ = stop.wait_for(|s| *s).await;
            handle.stop().await;
        }
        Err(e) => {
            let e = anyhow::Error::new(e).context("starting this server's node (or run with --disable-agent)");
            let _ = failed.send(e);
        }
    }
}

/// Publishes `data` in the ConfigMap `namespace`/`name`, retrying until the API answers: the
/// client CA as Kubernetes does (kube-system/extension-apiserver-authentication,
/// `client-ca-file`: node agents trust the API server's kubelet client certificate by it),
/// and kube-public/cluster-info for joining agents.
async fn publish_config_map(client: kube::Client, namespace: &str, name: &str, data: serde_json::Value) {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace },
        "data": data,
    });
    // Server-side apply owns only these keys (the bootstrap signer adds its own to cluster-info).
    let params = PatchParams::apply("berth-server").force();
    for attempt in 0..60 {
        match api.patch(name, &params, &Patch::Apply(&cm)).await {
            Ok(_) => return,
            Err(e) if attempt == 59 => tracing::error!(error = %e, namespace, name, "publishing a ConfigMap"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The kubeconfig kube-public/cluster-info carries (as kubeadm writes it): the server and
/// its CA, no user. Agents joining with a bare bootstrap token trust this CA once the
/// bootstrap signer's signature with their token verifies.
fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n"
    )
}

/// Runs the controllers and the scheduler, each while this server holds its lease (as
/// kube-controller-manager and kube-scheduler elect their leaders), until `stop` turns true.
async fn run_components(
    identity: String,
    client: kube::Client,
    scheduler_client: kube::Client,
    controllers: Option<berth_controllers::Options>,
    scheduler: Option<berth_scheduler::SchedulerConfig>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    use berth_controllers::leader_election::LeaderElection;
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let controllers = controllers.map(|options| {
        let client = client.clone();
        let election = LeaderElection::new(client.clone(), "kube-controller-manager", &identity);
        election.run(move || berth_controllers::run(client.clone(), options.clone()), stopped(stop.clone()))
    });
    let scheduler = scheduler.map(|config| {
        let client = scheduler_client.clone();
        let election = LeaderElection::new(client.clone(), "kube-scheduler", &identity);
        let work = move || {
            let (client, config) = (client.clone(), config.clone());
            async move {
                if let Err(e) = berth_scheduler::run(client, config).await {
                    tracing::error!(error = %e, "scheduler stopped");
                }
            }
        };
        election.run(work, stopped(stop.clone()))
    });
    tokio::join!(
        async {
            if let Some(c) = controllers {
                c.await;
            }
        },
        async {
            if let Some(s) = scheduler {
                s.await;
            }
        }
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "berth".into())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
