//! The datastore a server runs on: `--datastore-endpoint` parsing (the embedded SQLite
//! store, or etcd) and opening it, waiting for etcd while it is unreachable; and
//! `berth datastore`: snapshots (save/restore) and migration between backends.
//!
//! Snapshots come in two formats. *Native* (the default): the embedded store copied with
//! SQLite's online backup API (a SQLite file: every key with its history and its
//! revisions, i.e. the same resourceVersions), or etcd's own snapshot (the bbolt file
//! `etcdctl snapshot restore` reads) — both consistent at one revision while the server
//! keeps writing. *Logical* (`--format logical`, and the files of earlier berth
//! versions): one JSON header line (format, revision, count), then one line per object
//! (`/registry/...` key, mod revision, base64 value), all read at one revision; it moves
//! between backends. Restore reads a SQLite file or a logical file into an embedded
//! store; a logical restore and a migration create the objects in their mod-revision
//! order, so resourceVersions keep their order (not their numbers). An etcd snapshot is
//! restored into etcd with etcd's own `etcdctl snapshot restore`; restored into an
//! embedded store, it is read the same way: unpacked by etcdctl into a temporary etcd on
//! loopback ([`crate::etcd_process`]), then loaded as a logical snapshot (berth does not
//! parse etcd's bbolt file).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_store::Store;
use berth_store::etcd::{EtcdOptions, EtcdStore, EtcdTls};
use berth_store::sqlite::{SqliteOptions, SqliteStore};
use clap::Args;

/// Flags that choose and reach the datastore.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct DatastoreArgs {
    /// The datastore: `etcd://HOST:PORT[,HOST:PORT...]` for etcd, or `sqlite:PATH`
    /// [default: the embedded SQLite store in the data dir].
    #[arg(long)]
    pub(crate) datastore_endpoint: Option<String>,
    /// CA bundle (PEM) that signed etcd's serving certificates; turns on TLS.
    #[arg(long)]
    pub(crate) datastore_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd; turns on TLS.
    #[arg(long)]
    pub(crate) datastore_certfile: Option<PathBuf>,
    /// Key (PEM) of the client certificate for etcd.
    #[arg(long)]
    pub(crate) datastore_keyfile: Option<PathBuf>,
}

/// A parsed `--datastore-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The embedded SQLite store in this file.
    Sqlite(PathBuf),
    /// etcd at these `host:port` endpoints.
    Etcd(Vec<String>),
}

impl Endpoint {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...]` or `sqlite:PATH`.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Endpoint> {
        if let Some(rest) = url.strip_prefix("etcd://") {
            let mut endpoints = Vec::new();
            for part in rest.split(',') {
                let part = part.trim().trim_end_matches('/');
                let Some((host, port)) = part.rsplit_once(':') else {
                    bail!("datastore endpoint {url:?}: {part:?} is not HOST:PORT");
                };
                if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
                    bail!("datastore endpoint {url:?}: {part:?} is not HOST:PORT");
                }
                endpoints.push(part.to_string());
            }
            return Ok(Endpoint::Etcd(endpoints));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("datastore endpoint {url:?}: sqlite: needs a file path");
            }
            return Ok(Endpoint::Sqlite(PathBuf::from(path)));
        }
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or(url);
        bail!(
            "unsupported datastore endpoint {url:?} (scheme {scheme:?}): use etcd://HOST:PORT[,HOST:PORT...] or sqlite:PATH"
        )
    }
}

impl DatastoreArgs {
    /// The endpoint these flags name (the SQLite file in `data_dir` by default).
    pub(crate) fn endpoint(&self, data_dir: &Path) -> anyhow::Result<Endpoint> {
        let endpoint = match &self.datastore_endpoint {
            Some(url) => Endpoint::parse(url)?,
            None => Endpoint::Sqlite(data_dir.join("state.db")),
        };
        if matches!(endpoint, Endpoint::Sqlite(_)) && self.tls().is_some() {
            bail!("--datastore-cafile/--datastore-certfile/--datastore-keyfile apply to etcd:// endpoints only");
        }
        Ok(endpoint)
    }

    fn tls(&self) -> Option<EtcdTls> {
        if self.datastore_cafile.is_none() && self.datastore_certfile.is_none() && self.datastore_keyfile.is_none() {
            return None;
        }
        Some(EtcdTls {
            ca_file: self.datastore_cafile.clone(),
            cert_file: self.datastore_certfile.clone(),
            key_file: self.datastore_keyfile.clone(),
        })
    }

    /// etcd-client endpoints with the scheme TLS calls for.
    fn etcd_urls(&self, endpoints: &[String]) -> Vec<String> {
        let scheme = if self.tls().is_some() { "https" } else { "http" };
        endpoints.iter().map(|e| format!("{scheme}://{e}")).collect()
    }

    /// Connects to etcd once (no waiting).
    pub(crate) async fn connect_etcd(&self, endpoints: &[String], options: EtcdOptions) -> anyhow::Result<EtcdStore> {
        let options = EtcdOptions { tls: self.tls(), ..options };
        EtcdStore::connect(&self.etcd_urls(endpoints), options)
            .await
            .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))
    }
}

/// History settings shared by both backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compaction {
    /// Revisions of history kept.
    pub(crate) window: i64,
    /// Time between automatic compactions.
    pub(crate) interval: Duration,
}

/// Opens the datastore for a server. etcd that cannot be reached is waited for, with
/// back-off up to 30 s between attempts, until it answers or `stop` resolves (then None).
pub(crate) async fn open_for_server(
    args: &DatastoreArgs,
    data_dir: &Path,
    compaction: Compaction,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<Arc<dyn Store>>> {
    match args.endpoint(data_dir)? {
        Endpoint::Sqlite(path) => {
            let options = SqliteOptions {
                compaction_window: compaction.window.max(1),
                compaction_interval: compaction.interval,
                ..SqliteOptions::default()
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let store = SqliteStore::open(&path, options)
                .with_context(|| format!("opening the store at {}", path.display()))?;
            Ok(Some(Arc::new(store)))
        }
        Endpoint::Etcd(endpoints) => {
            let options = EtcdOptions {
                compaction_window: compaction.window.max(1),
                compaction_interval: compaction.interval,
                ..EtcdOptions::default()
            };
            tokio::pin!(stop);
            let mut delay = Duration::from_millis(500);
            loop {
                match args.connect_etcd(&endpoints, options.clone()).await {
                    Ok(store) => {
                        tracing::info!(endpoints = %store.endpoints(), "connected to etcd");
                        return Ok(Some(Arc::new(store)));
                    }
                    Err(e) if is_transient(&e) => {
                        tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "etcd is not reachable yet; waiting (not ready)");
                    }
                    Err(e) => return Err(e),
                }
                tokio::select! {
                    _ = &mut stop => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Whether a connection failure may go away by itself (etcd down, no quorum yet).
fn is_transient(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<berth_store::Error>(),
        Some(berth_store::Error::Unavailable(_) | berth_store::Error::Timeout(_))
    )
}

/// `berth datastore`: snapshots and migration between backends.
#[derive(Args, Debug)]
pub(crate) struct DatastoreCommand {
    #[command(subcommand)]
    command: Tool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// Save or restore a snapshot of every object, consistent at one revision.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Copy every object from one datastore to another (empty) one.
    Migrate(MigrateArgs),
}

#[derive(clap::Subcommand, Debug)]
enum SnapshotCommand {
    /// Write a snapshot of the store of DIR (or of the datastore at URL) to FILE.
    Save(SaveArgs),
    /// Create the embedded store of DIR from a snapshot FILE (DIR must have none yet).
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
struct SaveArgs {
    /// Data dir of the server whose embedded store is saved [default: the server's default].
    #[arg(long, conflicts_with = "datastore_endpoint")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    datastore: DatastoreArgs,
    /// `native`: a copy of the embedded SQLite store (online backup) or etcd's own
    /// snapshot; `logical`: every object as JSON lines, for any backend.
    #[arg(long, value_enum, default_value_t = SnapshotFormat::Native)]
    format: SnapshotFormat,
    /// The snapshot file to write.
    file: PathBuf,
}

/// The format `snapshot save` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SnapshotFormat {
    /// The backend's own: a SQLite database file, or an etcd (bbolt) snapshot.
    #[default]
    Native,
    /// berth's backend-independent JSON lines.
    Logical,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// Data dir whose embedded store is created from the snapshot.
    #[arg(long)]
    data_dir: PathBuf,
    /// The encryption configuration of the server the snapshot came from (its
    /// DATA_DIR/cred/encryption-config.json): copied into the data dir so the restored
    /// server reads the encrypted Secrets.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// The snapshot file to read.
    file: PathBuf,
}

#[derive(Args, Debug)]
struct MigrateArgs {
    /// The datastore to copy from: `sqlite:PATH` or `etcd://HOST:PORT[,...]`.
    #[arg(long)]
    from: String,
    /// The datastore to copy to (must hold no objects): `sqlite:PATH` or `etcd://...`.
    #[arg(long)]
    to: String,
}

/// The keys a snapshot or a migration carries: every API object.
const OBJECTS: &str = "/registry/";
/// Format tag of the first line of a snapshot file.
const SNAPSHOT_FORMAT: &str = "berth-snapshot/v1";

/// Runs a `berth datastore` command.
pub(crate) async fn run(cmd: DatastoreCommand) -> anyhow::Result<()> {
    match cmd.command {
        Tool::Snapshot(SnapshotCommand::Save(args)) => {
            let endpoint = match (&args.datastore.datastore_endpoint, &args.data_dir) {
                (Some(_), _) => args.datastore.endpoint(Path::new("."))?,
                (None, dir) => {
                    Endpoint::Sqlite(dir.clone().unwrap_or_else(crate::server::default_data_dir).join("state.db"))
                }
            };
            let saved = save(&args.datastore, &endpoint, args.format, &args.file).await?;
            eprintln!("saved {saved} to {}", args.file.display());
            Ok(())
        }
        Tool::Snapshot(SnapshotCommand::Restore(args)) => restore(&args).await,
        Tool::Migrate(args) => {
            let none = DatastoreArgs::default();
            let (from, to) = (Endpoint::parse(&args.from)?, Endpoint::parse(&args.to)?);
            if from == to {
                bail!("--from and --to are the same datastore");
            }
            let source = open_existing(&none, &from).await?;
            let target = match &to {
                Endpoint::Sqlite(path) => open_sqlite(path)?,
                Endpoint::Etcd(endpoints) => Arc::new(none.connect_etcd(endpoints, tool_etcd_options()).await?),
            };
            let (revision, kvs) = dump(source.as_ref()).await?;
            source.close().await.context("closing the source store")?;
            load(target.as_ref(), &kvs).await?;
            target.close().await.context("closing the target store")?;
            eprintln!("migrated {} objects (source revision {revision}) from {} to {}", kvs.len(), args.from, args.to);
            Ok(())
        }
    }
}

/// What a snapshot save wrote, for messages.
pub(crate) struct Saved {
    /// The format written.
    pub(crate) format: SnapshotFormat,
    /// Objects (API keys) in it, when known (etcd snapshots are not read back).
    pub(crate) objects: Option<u64>,
    /// The revision it was taken at (for etcd: at or after it).
    pub(crate) revision: i64,
}

impl std::fmt::Display for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.format {
            SnapshotFormat::Native => "a native snapshot",
            SnapshotFormat::Logical => "a logical snapshot",
        };
        match self.objects {
            Some(n) => write!(f, "{what} of {n} objects at revision {}", self.revision),
            None => write!(f, "{what} (etcd) at revision {}", self.revision),
        }
    }
}

/// Writes a snapshot of the datastore at `endpoint` to `file` (replacing it when the
/// snapshot is whole; a failed save leaves `file` as it was and no partial file).
pub(crate) async fn save(
    args: &DatastoreArgs,
    endpoint: &Endpoint,
    format: SnapshotFormat,
    file: &Path,
) -> anyhow::Result<Saved> {
    match (format, endpoint) {
        (SnapshotFormat::Logical, _) => {
            let store = open_existing(args, endpoint).await?;
            let (revision, kvs) = dump(store.as_ref()).await?;
            store.close().await.context("closing the source store")?;
            write_snapshot(file, revision, &kvs)?;
            Ok(Saved { format, objects: Some(kvs.len() as u64), revision })
        }
        (SnapshotFormat::Native, Endpoint::Sqlite(db)) => {
            if !db.exists() {
                bail!("no store at {}", db.display());
            }
            let partial = with_suffix(file, ".partial");
            let _ = std::fs::remove_file(&partial);
            let (db, out) = (db.clone(), partial.clone());
            let info = tokio::task::spawn_blocking(move || berth_store::sqlite::backup::backup(&db, &out))
                .await
                .context("the backup task")?
                .with_context(|| format!("backing up {}", endpoint_name(endpoint)))?;
            if let Err(e) = std::fs::rename(&partial, file) {
                let _ = std::fs::remove_file(&partial);
                return Err(e).with_context(|| format!("writing {}", file.display()));
            }
            Ok(Saved { format, objects: Some(info.objects), revision: info.revision })
        }
        (SnapshotFormat::Native, Endpoint::Etcd(endpoints)) => {
            let store = args.connect_etcd(endpoints, tool_etcd_options()).await?;
            let partial = with_suffix(file, ".etcd");
            let _ = std::fs::remove_file(&partial);
            let saved = store.snapshot_to(&partial).await.context("taking an etcd snapshot");
            store.close().await.context("closing the etcd client")?;
            let info = saved?;
            if let Err(e) = std::fs::rename(&partial, file) {
                let _ = std::fs::remove_file(&partial);
                return Err(e).with_context(|| format!("writing {}", file.display()));
            }
            Ok(Saved { format, objects: None, revision: info.revision })
        }
    }
}

fn endpoint_name(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Sqlite(path) => path.display().to_string(),
        Endpoint::Etcd(endpoints) => format!("etcd://{}", endpoints.join(",")),
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The kinds of file `snapshot restore` tells apart by their first bytes.
#[derive(Debug, PartialEq, Eq)]
enum FileKind {
    /// A SQLite database (a native snapshot of the embedded store).
    Sqlite,
    /// A bbolt database: an etcd snapshot.
    Etcd,
    /// JSON lines: a logical snapshot.
    Logical,
    /// Anything else.
    Unknown,
}

fn file_kind(head: &[u8]) -> FileKind {
    if head.starts_with(berth_store::sqlite::backup::SQLITE_MAGIC) {
        FileKind::Sqlite
    } else if berth_store::etcd::snapshot::is_bolt(head) {
        FileKind::Etcd
    } else if head.first() == Some(&b'{') {
        FileKind::Logical
    } else {
        FileKind::Unknown
    }
}

/// `snapshot restore`: checks the whole file first, then creates the store; a failure
/// leaves no store (and no data dir when the restore created it).
async fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let head = {
        use std::io::Read;
        let mut head = Vec::with_capacity(20);
        std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?
            .take(20)
            .read_to_end(&mut head)
            .with_context(|| format!("reading {}", args.file.display()))?;
        head
    };
    let db = args.data_dir.join("state.db");
    for existing in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
        if existing.exists() {
            bail!("{} already exists: restore into a data dir without a store", existing.display());
        }
    }
    // Everything is checked before anything is created.
    let source = match file_kind(&head) {
        FileKind::Sqlite => {
            if with_suffix(&args.file, "-wal").exists() {
                bail!(
                    "{} has a -wal file beside it: it is a live store, not a snapshot (take one with `berth datastore snapshot save`)",
                    args.file.display()
                );
            }
            let file = args.file.clone();
            let info = tokio::task::spawn_blocking(move || berth_store::sqlite::backup::verify(&file))
                .await
                .context("the check task")??;
            Restore::Copy(info)
        }
        FileKind::Logical => {
            let (revision, kvs) = read_snapshot(&args.file)?;
            Restore::Load(revision, kvs)
        }
        FileKind::Etcd => {
            if let Err(e) = berth_store::etcd::snapshot::verify_etcd_snapshot(&args.file) {
                bail!("{} is an etcd snapshot, and not a usable one ({e})", args.file.display());
            }
            let (revision, kvs) = read_etcd_snapshot(&args.file)
                .await
                .with_context(|| format!("reading the etcd snapshot {}", args.file.display()))?;
            Restore::Load(revision, kvs)
        }
        FileKind::Unknown => bail!(
            "{} is not a berth snapshot: neither a SQLite store, a logical snapshot nor an etcd snapshot",
            args.file.display()
        ),
    };
    let config = match &args.encryption_provider_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            berth_store::encryption::EncryptionConfig::parse(&text).with_context(|| path.display().to_string())?;
            Some(text)
        }
        None => None,
    };
    let created_dir = !args.data_dir.exists();
    let key_file = args.data_dir.join("cred/encryption-config.json");
    let had_key = key_file.exists();
    let result = write_restored(args, &db, &key_file, config.as_deref(), &source).await;
    if let Err(e) = result {
        if created_dir {
            let _ = std::fs::remove_dir_all(&args.data_dir);
        } else {
            for leftover in
                [with_suffix(&db, ".restoring"), db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")]
            {
                let _ = std::fs::remove_file(leftover);
            }
            if !had_key && config.is_some() {
                let _ = std::fs::remove_file(&key_file);
            }
        }
        return Err(e);
    }
    let (objects, revision, encrypted) = match &source {
        Restore::Copy(info) => (info.objects, info.revision, info.encrypted),
        Restore::Load(revision, kvs) => {
            let encrypted = kvs.iter().filter(|kv| kv.value.starts_with(b"k8s:enc:")).count();
            (kvs.len() as u64, *revision, encrypted as u64)
        }
    };
    let how = match source {
        Restore::Copy(_) => "same resourceVersions",
        Restore::Load(..) => "resourceVersions in the same order",
    };
    eprintln!("restored {objects} objects (saved at revision {revision}; {how}) into {}", db.display());
    if encrypted > 0 && !key_file.exists() {
        eprintln!(
            "warning: {encrypted} values are encrypted: copy the source server's cred/encryption-config.json to {} (or pass --encryption-provider-config) before starting a server on it",
            key_file.display()
        );
    }
    Ok(())
}

/// A checked snapshot, ready to become a store.
enum Restore {
    /// A SQLite store file, copied as it is.
    Copy(berth_store::sqlite::backup::BackupInfo),
    /// A logical snapshot's objects, created one by one.
    Load(i64, Vec<berth_store::KeyValue>),
}

async fn write_restored(
    args: &RestoreArgs,
    db: &Path,
    key_file: &Path,
    config: Option<&str>,
    source: &Restore,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    if let Some(text) = config {
        crate::server::write_private(key_file, text)?;
    }
    match source {
        Restore::Copy(_) => {
            // Copied under another name, synced, then renamed: a store appears whole or not at all.
            let partial = with_suffix(db, ".restoring");
            std::fs::copy(&args.file, &partial)
                .and_then(|_| std::fs::File::open(&partial)?.sync_all())
                .with_context(|| format!("copying {} to {}", args.file.display(), partial.display()))?;
            std::fs::rename(&partial, db).with_context(|| format!("writing {}", db.display()))?;
        }
        Restore::Load(_, kvs) => {
            let store = open_sqlite(db)?;
            let loaded = load(store.as_ref(), kvs).await;
            store.close().await.context("closing the restored store")?;
            loaded?;
        }
    }
    Ok(())
}

/// Every object of an etcd snapshot file at its revision, read through a temporary etcd
/// on loopback that `etcdctl snapshot restore` unpacked it for.
async fn read_etcd_snapshot(file: &Path) -> anyhow::Result<(i64, Vec<berth_store::KeyValue>)> {
    let etcd = crate::etcd_process::EtcdProcesses::from_snapshot(file)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let store = loop {
        match EtcdStore::connect(&etcd.endpoints(), tool_etcd_options()).await {
            Ok(store) => match store.current_revision().await {
                Ok(_) => break store,
                Err(e) if std::time::Instant::now() > deadline => {
                    bail!("the etcd serving the snapshot did not answer: {e}\n{}", etcd.log())
                }
                Err(_) => {}
            },
            Err(e) if std::time::Instant::now() > deadline => {
                bail!("the etcd serving the snapshot did not start: {e}\n{}", etcd.log())
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let dumped = dump(&store).await;
    store.close().await.context("closing the temporary etcd's store")?;
    dumped
}

fn tool_etcd_options() -> EtcdOptions {
    EtcdOptions { compaction_interval: Duration::ZERO, ..EtcdOptions::default() }
}

fn open_sqlite(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = SqliteOptions { compaction_interval: Duration::ZERO, ..SqliteOptions::default() };
    let store = SqliteStore::open(path, options).with_context(|| format!("opening the store at {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Opens a datastore that must already exist (a source).
async fn open_existing(args: &DatastoreArgs, endpoint: &Endpoint) -> anyhow::Result<Arc<dyn Store>> {
    match endpoint {
        Endpoint::Sqlite(path) => {
            if !path.exists() {
                bail!("no store at {}", path.display());
            }
            open_sqlite(path)
        }
        Endpoint::Etcd(endpoints) => Ok(Arc::new(args.connect_etcd(endpoints, tool_etcd_options()).await?)),
    }
}

/// Every object at one revision, in key order, with that revision.
pub(crate) async fn dump(store: &dyn Store) -> anyhow::Result<(i64, Vec<berth_store::KeyValue>)> {
    let revision = store.current_revision().await.context("reading the current revision")?;
    let mut kvs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .range(OBJECTS, after.as_deref(), 1000, Some(revision))
            .await
            .with_context(|| format!("reading objects at revision {revision}"))?;
        after = page.kvs.last().map(|kv| kv.key.clone());
        kvs.extend(page.kvs);
        if !page.more {
            return Ok((revision, kvs));
        }
    }
}

/// Creates every object in `store` (which must hold none) in the order they were last
/// written, so resourceVersions keep their order.
async fn load(store: &dyn Store, kvs: &[berth_store::KeyValue]) -> anyhow::Result<()> {
    let existing = store.count(OBJECTS).await.context("counting objects in the target")?;
    if existing > 0 {
        bail!("the target datastore already holds {existing} objects: it must be empty");
    }
    let mut ordered: Vec<&berth_store::KeyValue> = kvs.iter().collect();
    ordered.sort_by_key(|kv| kv.mod_revision);
    for kv in ordered {
        store.create(&kv.key, kv.value.clone()).await.with_context(|| format!("writing {}", kv.key))?;
    }
    Ok(())
}

/// Writes a snapshot: a header line, then one JSON line per object (value in base64).
pub(crate) fn write_snapshot(file: &Path, revision: i64, kvs: &[berth_store::KeyValue]) -> anyhow::Result<()> {
    use base64::Engine;
    use std::io::Write;
    let tmp = file.with_extension("partial");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let header = serde_json::json!({ "format": SNAPSHOT_FORMAT, "revision": revision, "objects": kvs.len() });
    writeln!(out, "{header}")?;
    for kv in kvs {
        let line = serde_json::json!({
            "key": kv.key,
            "modRevision": kv.mod_revision,
            "value": base64::engine::general_purpose::STANDARD.encode(&kv.value),
        });
        writeln!(out, "{line}")?;
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

/// Reads a snapshot written by [`write_snapshot`], checking its header and object count.
fn read_snapshot(file: &Path) -> anyhow::Result<(i64, Vec<berth_store::KeyValue>)> {
    use base64::Engine;
    use std::io::BufRead;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut lines = std::io::BufReader::new(f).lines();
    let bad = |what: String| anyhow::anyhow!("{} is not a berth snapshot: {what}", file.display());
    let header: serde_json::Value = match lines.next() {
        Some(line) => serde_json::from_str(&line?).map_err(|e| bad(format!("header: {e}")))?,
        None => return Err(bad("empty file".into())),
    };
    if header["format"] != SNAPSHOT_FORMAT {
        return Err(bad(format!("format {}", header["format"])));
    }
    let revision = header["revision"].as_i64().ok_or_else(|| bad("no revision".into()))?;
    let objects = header["objects"].as_u64().ok_or_else(|| bad("no object count".into()))?;
    let mut kvs = Vec::new();
    for (n, line) in lines.enumerate() {
        let v: serde_json::Value = serde_json::from_str(&line?).map_err(|e| bad(format!("line {}: {e}", n + 2)))?;
        let (Some(key), Some(mod_revision), Some(value)) =
            (v["key"].as_str(), v["modRevision"].as_i64(), v["value"].as_str())
        else {
            return Err(bad(format!("line {}: needs key, modRevision and value", n + 2)));
        };
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| bad(format!("line {}: value: {e}", n + 2)))?;
        kvs.push(berth_store::KeyValue {
            key: key.to_string(),
            value: value.into(),
            create_revision: mod_revision,
            mod_revision,
            version: 1,
        });
    }
    if kvs.len() as u64 != objects {
        return Err(bad(format!("{} objects where the header says {objects} (truncated?)", kvs.len())));
    }
    Ok((revision, kvs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expect: Result<Endpoint, &str>) {
        match (Endpoint::parse(url), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
            (Err(got), Err(want)) => assert!(got.to_string().contains(want), "{url}: {got}"),
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn endpoints_parse() {
        let etcd = |e: &[&str]| Ok(Endpoint::Etcd(e.iter().map(|s| s.to_string()).collect()));
        check("etcd://127.0.0.1:2379", etcd(&["127.0.0.1:2379"]));
        check("etcd://a:1,b:2,c:3", etcd(&["a:1", "b:2", "c:3"]));
        check("etcd://[::1]:2379", etcd(&["[::1]:2379"]));
        check("sqlite:/var/lib/berth/state.db", Ok(Endpoint::Sqlite("/var/lib/berth/state.db".into())));
        check("sqlite://tmp/x.db", Ok(Endpoint::Sqlite("tmp/x.db".into())));
        check("sqlite:rel.db", Ok(Endpoint::Sqlite("rel.db".into())));
        check("etcd://", Err("is not HOST:PORT"));
        check("etcd://host", Err("is not HOST:PORT"));
        check("etcd://host:port", Err("is not HOST:PORT"));
        check("etcd://a:1,,b:2", Err("is not HOST:PORT"));
        check("etcd://:2379", Err("is not HOST:PORT"));
        check("sqlite:", Err("needs a file path"));
        check("mysql://db:3306", Err("unsupported datastore endpoint \"mysql://db:3306\" (scheme \"mysql\")"));
        check("http://127.0.0.1:2379", Err("unsupported datastore endpoint"));
        check("127.0.0.1:2379", Err("unsupported datastore endpoint"));
    }

    #[test]
    fn snapshot_files_are_told_apart_by_their_first_bytes() {
        let mut bolt = vec![0u8; 20];
        bolt[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        for (head, want) in [
            (b"SQLite format 3\0\0\x10".as_slice(), FileKind::Sqlite),
            (bolt.as_slice(), FileKind::Etcd),
            (b"{\"format\":\"berth-snapshot/v1\"".as_slice(), FileKind::Logical),
            (b"SQLite format 2\0".as_slice(), FileKind::Unknown),
            (&bolt[..19], FileKind::Unknown),
            (b"".as_slice(), FileKind::Unknown),
            (b"hello".as_slice(), FileKind::Unknown),
        ] {
            assert_eq!(file_kind(head), want, "{head:?}");
        }
    }

    #[test]
    fn tls_flags_need_etcd() {
        let args = DatastoreArgs { datastore_cafile: Some("ca.pem".into()), ..DatastoreArgs::default() };
        let err = args.endpoint(Path::new("/tmp")).unwrap_err().to_string();
        assert!(err.contains("apply to etcd:// endpoints only"), "{err}");
        let args = DatastoreArgs {
            datastore_endpoint: Some("etcd://127.0.0.1:2379".into()),
            datastore_cafile: Some("ca.pem".into()),
            ..DatastoreArgs::default()
        };
        assert!(args.endpoint(Path::new("/tmp")).is_ok());
        assert_eq!(args.etcd_urls(&["h:1".into()]), ["https://h:1"]);
    }
}
