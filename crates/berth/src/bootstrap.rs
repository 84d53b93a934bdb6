//! The cluster's bootstrap data shared through the datastore, as k3s does: servers on
//! one etcd started with the same `--token` use one set of CAs, one ServiceAccount
//! signing key and one Secrets encryption key.
//!
//! The first server to reach the datastore seals its own files with the token
//! ([`berth_pki::bootstrap`]) under [`KEY`] (outside `/registry`, so the API never
//! serves it); the others open them and take them into their data dir before they serve.
//! A wrong token cannot open them and the server stops with a clear error, having
//! written nothing. A data dir that already holds another cluster's CA is refused rather
//! than overwritten.

use std::path::Path;

use anyhow::{Context, bail};
use berth_pki::Pki;
use berth_pki::bootstrap::{self, Bundle};
use berth_store::Store;

/// Where the sealed bootstrap data lives in the datastore.
pub(crate) const KEY: &str = "/bootstrap/berth";

/// The encryption configuration's place in the data dir, when it is shared.
const ENCRYPTION_CONFIG: &str = "cred/encryption-config.json";

/// The data dir's files that are shared (relative paths).
fn shared_files(with_encryption: bool) -> Vec<String> {
    let mut names: Vec<String> = Pki::SHARED.iter().map(|n| format!("tls/{n}")).collect();
    if with_encryption {
        names.push(ENCRYPTION_CONFIG.to_string());
    }
    names
}

/// What [`share`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    /// This server's files are now the cluster's (the datastore had none).
    Published,
    /// The datastore's files were taken; `changed` when the data dir's differed.
    Adopted {
        /// Some local file was replaced (leaf certificates must be issued anew).
        changed: bool,
    },
}

/// Publishes or adopts the bootstrap data in `store` with `token`. `fresh` says the data
/// dir's shared files were made by this start (so they may be replaced); with
/// `with_encryption` the Secrets encryption configuration is shared too.
pub(crate) async fn share(
    store: &dyn Store,
    data_dir: &Path,
    token: &str,
    fresh: bool,
    with_encryption: bool,
) -> anyhow::Result<Shared> {
    let names = shared_files(with_encryption);
    loop {
        if let Some(kv) = store.get(KEY).await.context("reading the cluster's bootstrap data")? {
            let files = bootstrap::open(token, &kv.value)?;
            return adopt(data_dir, &names, files, fresh).map(|changed| Shared::Adopted { changed });
        }
        let mut files = Bundle::new();
        for name in &names {
            let path = data_dir.join(name);
            files.insert(name.clone(), std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        }
        let sealed = bootstrap::seal(token, &files);
        match store.create(KEY, sealed.into()).await {
            Ok(_) => return Ok(Shared::Published),
            // Another server published first: take theirs.
            Err(berth_store::Error::AlreadyExists(_)) => continue,
            Err(e) => return Err(e).context("publishing the cluster's bootstrap data"),
        }
    }
}

/// Writes the cluster's `files` into `data_dir`; true when a local file changed.
fn adopt(data_dir: &Path, names: &[String], files: Bundle, fresh: bool) -> anyhow::Result<bool> {
    // Check everything before writing anything.
    let mut writes = Vec::new();
    for name in names {
        let Some(contents) = files.get(name) else {
            if name == ENCRYPTION_CONFIG {
                bail!(
                    "the cluster's bootstrap data has no Secrets encryption configuration \
                     (its first server was started with --encryption-provider-config): give this server the same file"
                );
            }
            bail!("the cluster's bootstrap data lacks {name}");
        };
        let path = data_dir.join(name);
        match std::fs::read(&path) {
            Ok(local) if local == *contents => continue,
            Ok(_) if !fresh => bail!(
                "{} is not the cluster's: this data dir belongs to another cluster; start the server with an empty --data-dir to join",
                path.display()
            ),
            _ => writes.push((path, contents)),
        }
    }
    let changed = !writes.is_empty();
    for (path, contents) in writes {
        let text = std::str::from_utf8(contents).with_context(|| format!("{}: not text", path.display()))?;
        crate::server::write_private(&path, text)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = berth_store::sqlite::SqliteStore::open(&dir.path().join("state.db"), Default::default()).unwrap();
        (dir, Arc::new(store))
    }

    fn server_dir(encryption: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(&dir.path().join("tls")).unwrap();
        crate::server::write_private(&dir.path().join(ENCRYPTION_CONFIG), encryption).unwrap();
        dir
    }

    fn read(dir: &tempfile::TempDir, name: &str) -> Vec<u8> {
        std::fs::read(dir.path().join(name)).unwrap()
    }

    #[tokio::test]
    async fn the_first_server_publishes_and_the_next_adopts() {
        let (_db, store) = store().await;
        let first = server_dir("first");
        assert_eq!(share(&*store, first.path(), "t0ken", false, true).await.unwrap(), Shared::Published);
        // The datastore holds no plaintext key.
        let sealed = store.get(KEY).await.unwrap().unwrap().value;
        let key = read(&first, "tls/server-ca.key");
        assert!(!sealed.windows(40).any(|w| key.windows(40).any(|k| k == w)));
        let second = server_dir("second");
        let shared = share(&*store, second.path(), "t0ken", true, true).await.unwrap();
        assert_eq!(shared, Shared::Adopted { changed: true });
        for name in shared_files(true) {
            assert_eq!(read(&first, &name), read(&second, &name), "{name}");
        }
        // A restart of either changes nothing.
        let again = share(&*store, second.path(), "t0ken", false, true).await.unwrap();
        assert_eq!(again, Shared::Adopted { changed: false });
    }

    #[tokio::test]
    async fn a_wrong_token_or_another_clusters_data_dir_is_refused_and_nothing_changes() {
        let (_db, store) = store().await;
        let first = server_dir("first");
        share(&*store, first.path(), "t0ken", false, true).await.unwrap();
        let stored = store.get(KEY).await.unwrap().unwrap();
        let other = server_dir("other");
        let before = read(&other, "tls/server-ca.crt");
        let err = share(&*store, other.path(), "wrong", true, true).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot be decrypted with this --token"), "{err:#}");
        // A data dir with its own CA from an earlier life is not overwritten.
        let err = share(&*store, other.path(), "t0ken", false, true).await.unwrap_err();
        assert!(format!("{err:#}").contains("belongs to another cluster"), "{err:#}");
        assert_eq!(read(&other, "tls/server-ca.crt"), before);
        assert_eq!(store.get(KEY).await.unwrap().unwrap().mod_revision, stored.mod_revision);
    }
}
