//! Secrets at rest: which encryption configuration a server uses, and
//! `berth secrets-encrypt rotate`.
//!
//! A server encrypts Secrets by default, on the embedded store and on etcd alike: at
//! first start it writes DATA_DIR/cred/encryption-config.json (an EncryptionConfiguration
//! with one random AES-GCM key, mode 0600) and uses it from then on.
//! `--encryption-provider-config FILE` uses the given file instead. On etcd, servers
//! started with the same `--token` share the generated file through the datastore
//! (`crate::bootstrap`); a server on etcd without `--token` keeps its key to itself, so
//! other servers of that etcd cannot read the Secrets it writes (give them all one
//! `--token`).
//!
//! Rotation: `berth secrets-encrypt rotate` puts a new key first in the file (old keys
//! stay, to read what they wrote); a server started with it re-encrypts every value in
//! the background ([`berth_store::encryption::reencrypt`]). On etcd with a shared
//! `--token`, rotate one server's file and restart that server: it publishes the rotated
//! configuration and the running servers take it without a restart
//! (`crate::bootstrap::follow`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use berth_store::Store;
use berth_store::encryption::{ConfigHandle, EncryptedStore, EncryptionConfig};
use clap::Args;

/// The flag of `berth server` that chooses the encryption configuration.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct EncryptionArgs {
    /// EncryptionConfiguration file (Kubernetes' format; providers aesgcm and identity)
    /// [default: DATA_DIR/cred/encryption-config.json, made at first start].
    #[arg(long)]
    pub(crate) encryption_provider_config: Option<PathBuf>,
}

/// The generated configuration's place in a data dir.
pub(crate) fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cred").join("encryption-config.json")
}

/// Makes DATA_DIR's configuration (one random AES-GCM key) unless it exists.
pub(crate) fn ensure_default(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = default_path(data_dir);
    if !path.exists() {
        crate::server::write_private(&path, &EncryptionConfig::generate())?;
        tracing::info!(file = %path.display(), "made an encryption key for Secrets at rest");
    }
    Ok(path)
}

/// Wraps a server's `store` in encryption per the flags (DATA_DIR's configuration,
/// made when there is none, unless `--encryption-provider-config` names one); `etcd`
/// says the store is etcd. Also starts re-encrypting values that an older key (or no key)
/// wrote. Returns the wrapped store and the handle that replaces its configuration.
pub(crate) fn wrap(
    args: &EncryptionArgs,
    data_dir: &Path,
    etcd_unshared: bool,
    store: Arc<dyn Store>,
) -> anyhow::Result<(Arc<dyn Store>, ConfigHandle)> {
    let path = match &args.encryption_provider_config {
        Some(path) => path.clone(),
        None => {
            if etcd_unshared {
                tracing::info!(
                    "Secrets in etcd are encrypted with this server's own key: give every server of this etcd the same --token so that they share it"
                );
            }
            ensure_default(data_dir)?
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = EncryptionConfig::parse(&text).with_context(|| path.display().to_string())?;
    let reencrypt_config = EncryptionConfig::parse(&text).with_context(|| path.display().to_string())?;
    let raw = store.clone();
    tokio::spawn(async move {
        match berth_store::encryption::reencrypt(raw, reencrypt_config).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(values = n, "re-encrypted values with the current key"),
            Err(e) => tracing::warn!(error = %e, "re-encrypting values"),
        }
    });
    let encrypted = EncryptedStore::new(store, config);
    let handle = encrypted.handle();
    Ok((Arc::new(encrypted), handle))
}

/// `berth secrets-encrypt`: key rotation for Secrets at rest.
#[derive(Args, Debug)]
pub(crate) struct SecretsEncryptCommand {
    #[command(subcommand)]
    command: Tool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// Put a new key first in the encryption configuration (old keys stay, for reading);
    /// restart the server to re-encrypt every value with it (on etcd with a shared
    /// --token, the other servers then take the new key without a restart).
    Rotate(RotateArgs),
}

#[derive(Args, Debug)]
struct RotateArgs {
    /// Data dir of the server whose generated configuration is rotated [default: the
    /// server's default].
    #[arg(long, conflicts_with = "encryption_provider_config")]
    data_dir: Option<PathBuf>,
    /// The configuration file to rotate (instead of the data dir's).
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
}

/// Runs a `berth secrets-encrypt` command.
pub(crate) fn run(cmd: SecretsEncryptCommand) -> anyhow::Result<()> {
    let Tool::Rotate(args) = cmd.command;
    let path = match (args.encryption_provider_config, args.data_dir) {
        (Some(path), _) => path,
        (None, dir) => default_path(&dir.unwrap_or_else(crate::server::default_data_dir)),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rotated = EncryptionConfig::rotate(&text).with_context(|| path.display().to_string())?;
    crate::server::write_private(&path, &rotated)?;
    eprintln!(
        "{}: a new key now encrypts new writes; restart the server using it to re-encrypt every stored value \
         (servers sharing its --token on etcd take the key from it)",
        path.display()
    );
    Ok(())
}
