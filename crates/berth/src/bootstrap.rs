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
//!
//! Secrets key rotation across servers (what k3s's `secrets-encrypt rotate-keys` does
//! through its bootstrap data): `berth secrets-encrypt rotate` puts a new key first in one
//! server's file; when that server starts, its configuration holds every key of the
//! cluster's and more, so it seals the bundle again with its own ([`share`]) before it
//! writes anything with the new key. The other servers follow the sealed data
//! ([`follow`]): a configuration that holds every key of theirs and more is written into
//! their data dir and used at once, so they read what the new key wrote without a restart.
//! A configuration that is neither the cluster's nor a rotation of it is refused.

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
            let mut files = bootstrap::open(token, &kv.value)?;
            if with_encryption && !fresh {
                let local = data_dir.join(ENCRYPTION_CONFIG);
                let local = std::fs::read(&local).with_context(|| format!("reading {}", local.display()))?;
                if files.get(ENCRYPTION_CONFIG).is_some_and(|cluster| rotation_of(&local, cluster)) {
                    // This server's key was rotated: the cluster takes its configuration
                    // before anything is written with the new key.
                    files.insert(ENCRYPTION_CONFIG.to_string(), local);
                    match store.update(KEY, bootstrap::seal(token, &files).into(), kv.mod_revision).await {
                        Ok(_) => {
                            tracing::info!("published this server's rotated Secrets encryption key to the cluster")
                        }
                        // Changed meanwhile (another server's rotation): look again.
                        Err(berth_store::Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e).context("publishing the rotated Secrets encryption key"),
                    }
                }
            }
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
            // The cluster's key was rotated while this server was away.
            Ok(local) if name == ENCRYPTION_CONFIG && rotation_of(contents, &local) => writes.push((path, contents)),
            Ok(_) if !fresh && name == ENCRYPTION_CONFIG => bail!(
                "{} is neither the cluster's Secrets encryption configuration nor a rotation of it (were two servers' keys rotated at once?): \
                 copy the configuration of the server that rotated last to the others",
                path.display()
            ),
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

/// Whether the encryption configuration `newer` holds every key of `older` and more:
/// `older` after `berth secrets-encrypt rotate` (which keeps the old keys, to read).
fn rotation_of(newer: &[u8], older: &[u8]) -> bool {
    use berth_store::encryption::EncryptionConfig;
    let names = |text: &[u8]| std::str::from_utf8(text).ok().and_then(|t| EncryptionConfig::key_names(t).ok());
    match (names(newer), names(older)) {
        (Some(newer), Some(older)) => newer.len() > older.len() && older.iter().all(|k| newer.contains(k)),
        _ => false,
    }
}

/// Follows the cluster's sealed bootstrap data while the server runs: when another
/// server publishes a rotated Secrets encryption configuration, writes it into `data_dir`
/// and makes `handle` (the server's encrypted store) use it, until `stop` turns true.
pub(crate) async fn follow(
    store: std::sync::Arc<dyn Store>,
    data_dir: std::path::PathBuf,
    token: String,
    handle: berth_store::encryption::ConfigHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let path = data_dir.join(ENCRYPTION_CONFIG);
    loop {
        let watched = async {
            let from = match store.get(KEY).await? {
                Some(kv) => {
                    take_rotation(&token, &kv.value, &path, &handle);
                    kv.mod_revision + 1
                }
                None => 0,
            };
            let mut events = store.watch(KEY, from).await?;
            while let Some(event) = events.next().await {
                if let berth_store::Event::Put { kv, .. } = event? {
                    take_rotation(&token, &kv.value, &path, &handle);
                }
            }
            Ok::<(), berth_store::Error>(())
        };
        tokio::select! {
            result = watched => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "following the cluster's bootstrap data: watching again");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Takes the encryption configuration of the sealed data `sealed` into `path` and
/// `handle` if it is a rotation of the one at `path`.
fn take_rotation(token: &str, sealed: &[u8], path: &Path, handle: &berth_store::encryption::ConfigHandle) {
    let Ok(files) = bootstrap::open(token, sealed) else {
        tracing::warn!("the cluster's bootstrap data no longer opens with this server's --token");
        return;
    };
    let (Some(cluster), Ok(local)) = (files.get(ENCRYPTION_CONFIG), std::fs::read(path)) else { return };
    if !rotation_of(cluster, &local) {
        return;
    }
    let taken = std::str::from_utf8(cluster)
        .map_err(anyhow::Error::from)
        .and_then(|text| Ok((text, berth_store::encryption::EncryptionConfig::parse(text)?)))
        .and_then(|(text, config)| {
            crate::server::write_private(path, text)?;
            handle.replace(config);
            Ok(())
        });
    match taken {
        Ok(()) => tracing::info!(file = %path.display(), "took the cluster's rotated Secrets encryption key"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "taking the cluster's rotated Secrets encryption key"),
    }
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

    #[tokio::test]
    async fn a_rotated_key_is_published_taken_by_the_others_and_diverging_rotations_are_refused() {
        use berth_store::encryption::EncryptionConfig;
        let (_db, store) = store().await;
        let first = server_dir(&EncryptionConfig::generate());
        share(&*store, first.path(), "t0ken", false, true).await.unwrap();
        let second = server_dir("second");
        share(&*store, second.path(), "t0ken", true, true).await.unwrap();
        let config = |dir: &tempfile::TempDir| String::from_utf8(read(dir, ENCRYPTION_CONFIG)).unwrap();
        let before = config(&second);
        // Rotated on the first server (stopped), which then starts again and publishes it.
        let rotated = EncryptionConfig::rotate(&config(&first)).unwrap();
        crate::server::write_private(&first.path().join(ENCRYPTION_CONFIG), &rotated).unwrap();
        let again = share(&*store, first.path(), "t0ken", false, true).await.unwrap();
        assert_eq!(again, Shared::Adopted { changed: false });
        let sealed = bootstrap::open("t0ken", &store.get(KEY).await.unwrap().unwrap().value).unwrap();
        assert_eq!(sealed[ENCRYPTION_CONFIG], rotated.as_bytes());

        // The running second server follows it: file and store configuration.
        let raw = store.clone();
        let encrypted = berth_store::encryption::EncryptedStore::new(raw, EncryptionConfig::parse(&before).unwrap());
        let path = second.path().join(ENCRYPTION_CONFIG);
        take_rotation("t0ken", &store.get(KEY).await.unwrap().unwrap().value, &path, &encrypted.handle());
        assert_eq!(config(&second), rotated);
        let written =
            berth_store::encryption::EncryptedStore::new(store.clone(), EncryptionConfig::parse(&rotated).unwrap());
        written.create("/registry/core/secrets/default/s", "v".into()).await.unwrap();
        assert_eq!(encrypted.get("/registry/core/secrets/default/s").await.unwrap().unwrap().value, "v");
        // A stopped server with the old file takes it at its next start.
        let third = server_dir("third");
        share(&*store, third.path(), "t0ken", true, true).await.unwrap();
        crate::server::write_private(&third.path().join(ENCRYPTION_CONFIG), &before).unwrap();
        share(&*store, third.path(), "t0ken", false, true).await.unwrap();
        assert_eq!(config(&third), rotated);

        // Two rotations of the same configuration: the second to start is refused.
        let other = EncryptionConfig::rotate(&before).unwrap();
        crate::server::write_private(&third.path().join(ENCRYPTION_CONFIG), &other).unwrap();
        let err = share(&*store, third.path(), "t0ken", false, true).await.unwrap_err();
        assert!(format!("{err:#}").contains("nor a rotation of it"), "{err:#}");
        assert_eq!(config(&third), other, "nothing was written");
    }
}
