//! etcd's own snapshots: the Maintenance snapshot stream (the bbolt database of one
//! member, consistent at one revision, followed by its SHA-256) written to a file, which
//! is what `etcdctl snapshot save` writes and `etcdctl`/`etcdutl snapshot restore` read;
//! and a check that a file is such a snapshot, whole.

use std::io::{Read, Write};
use std::path::Path;

use super::{EtcdStore, from_etcd};
use crate::{Error, Result, Revision};

/// bbolt's magic number, in the meta page that starts the file (after its 16-byte page header).
const BOLT_MAGIC: u32 = 0xED0C_DAED;
/// Length of the SHA-256 etcd appends to the database in a snapshot stream.
const SHA_LEN: usize = 32;

/// What an etcd snapshot file holds, as far as berth checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSnapshotInfo {
    /// Bytes of the file (database and checksum).
    pub size: u64,
    /// berth's revision at or before which the snapshot was taken (0 when unknown).
    pub revision: Revision,
}

/// Whether the first bytes of a file are those of a bbolt database (an etcd snapshot or data file).
pub fn is_bolt(head: &[u8]) -> bool {
    head.len() >= 20 && u32::from_le_bytes([head[16], head[17], head[18], head[19]]) == BOLT_MAGIC
}

/// Checks that `path` is a whole etcd snapshot: a bbolt database followed by the SHA-256
/// of it (as etcd streams it), the checksum matching.
pub fn verify_etcd_snapshot(path: &Path) -> Result<EtcdSnapshotInfo> {
    let bad = |what: String| Error::Backend(format!("{} is not a whole etcd snapshot: {what}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut head = [0u8; 20];
    if file.read_exact(&mut head).is_err() || !is_bolt(&head) {
        return Err(bad("no bbolt database header".into()));
    }
    if size < (4096 + SHA_LEN) as u64 {
        return Err(bad(format!("{size} bytes is too short (truncated?)")));
    }
    // The database is hashed as it is read (snapshots can be gigabytes), then the last
    // 32 bytes are compared with the digest.
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(&head);
    let mut db = (&mut file).take(size - SHA_LEN as u64 - head.len() as u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = db.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    let mut sha = [0u8; SHA_LEN];
    file.read_exact(&mut sha).map_err(|e| bad(e.to_string()))?;
    if digest.finish().as_ref() != sha {
        return Err(bad("its SHA-256 does not match (truncated or corrupt)".into()));
    }
    Ok(EtcdSnapshotInfo { size, revision: 0 })
}

impl EtcdStore {
    /// Streams a snapshot of one etcd member into the new file `dest` (written as
    /// `dest` + `.partial`, renamed when whole and its checksum verified). Other clients
    /// keep reading and writing meanwhile.
    pub async fn snapshot_to(&self, dest: &Path) -> Result<EtcdSnapshotInfo> {
        if dest.exists() {
            return Err(Error::Backend(format!("{} already exists", dest.display())));
        }
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let result = self.stream_snapshot(&partial).await.and_then(|revision| {
            let info = verify_etcd_snapshot(&partial)?;
            std::fs::rename(&partial, dest).map_err(|e| Error::Backend(format!("writing {}: {e}", dest.display())))?;
            Ok(EtcdSnapshotInfo { revision, ..info })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    /// Writes the snapshot stream to `path`; returns berth's revision from the stream's header.
    async fn stream_snapshot(&self, path: &Path) -> Result<Revision> {
        let io = |e: std::io::Error| Error::Backend(format!("writing {}: {e}", path.display()));
        let etcd = |e: etcd_client::Error| Error::Unavailable(format!("etcd snapshot: {e}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let mut stream = self.client().maintenance_client().snapshot().await.map_err(etcd)?;
        let mut revision = 0;
        while let Some(message) = stream.message().await.map_err(etcd)? {
            if let Some(header) = message.header() {
                revision = revision.max(from_etcd(header.revision()));
            }
            out.write_all(message.blob()).map_err(io)?;
        }
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(revision.max(0))
    }
}
