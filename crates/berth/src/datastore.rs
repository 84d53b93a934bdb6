//! The datastore a server runs on: `--datastore-endpoint` parsing (the embedded SQLite
//! store, or etcd) and opening it, waiting for etcd while it is unreachable.

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
