//! Scheduled snapshots of a running server's datastore (`--snapshot-cron`,
//! `--snapshot-retention`), as k3s takes etcd snapshots: at each time of a cron schedule
//! (standard five fields, or six with seconds first) a native snapshot (the format of
//! `berth datastore snapshot save`: a SQLite copy of the embedded store, which
//! `berth datastore snapshot restore` reads, or etcd's own snapshot) is written to
//! `snapshot-<unix seconds>` in the snapshot dir, and only the newest N files are kept.
//!
//! On etcd, where several servers share one datastore, only the server holding the
//! controller-manager Lease (`kube-system/kube-controller-manager`) takes them, so one
//! copy is written per scheduled time, not one per server.

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;

use crate::datastore::{DatastoreArgs, Endpoint, SnapshotFormat};

/// The datastore a server snapshots.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Flags that reach it (TLS towards etcd).
    pub(crate) args: DatastoreArgs,
    /// The store file or the etcd endpoints.
    pub(crate) endpoint: Endpoint,
}

/// Who may take scheduled snapshots when several servers share the datastore: the
/// holder of the controller-manager Lease.
#[derive(Clone)]
pub(crate) struct Leader {
    /// A client of this server's API.
    pub(crate) client: kube::Client,
    /// This server's identity in its leader elections.
    pub(crate) identity: String,
}

/// The Lease whose holder takes the snapshots.
const LEASE: &str = "kube-controller-manager";

impl Leader {
    /// Whether this server holds the Lease now (named holder, renewed within its duration).
    async fn holds(&self) -> anyhow::Result<bool> {
        let api: kube::Api<Lease> = kube::Api::namespaced(self.client.clone(), "kube-system");
        let Some(lease) = api.get_opt(LEASE).await.context("reading the controller-manager Lease")? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec else { return Ok(false) };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
        Ok(spec.renew_time.is_some_and(|t| jiff::Timestamp::now().as_second() - t.0.as_second() <= duration))
    }
}

/// File name prefix of scheduled snapshots (other files in the dir are left alone).
const PREFIX: &str = "snapshot-";

/// When and where snapshots are taken, and how many are kept.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    cron: croner::Cron,
    retention: usize,
    dir: PathBuf,
}

impl Schedule {
    /// Parses the cron expression (five fields, or six with seconds first; descriptors
    /// such as `@daily` too). A retention of 0 is refused: it would delete each snapshot
    /// as it is written.
    pub(crate) fn new(expression: &str, retention: usize, dir: PathBuf) -> anyhow::Result<Schedule> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build();
        let cron = parser.parse(expression).with_context(|| format!("--snapshot-cron {expression:?}"))?;
        if retention == 0 {
            anyhow::bail!("--snapshot-retention must be at least 1");
        }
        Ok(Schedule { cron, retention, dir })
    }

    /// The first scheduled time strictly after `t` (in the machine's time zone).
    fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let zoned = t.to_zoned(jiff::tz::TimeZone::system());
        self.cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp())
    }
}

/// Takes snapshots on `schedule` until `stop` turns true; with a `leader`, only at the
/// times this server holds the controller-manager Lease. A failed snapshot is logged and
/// the next one is attempted at its time.
pub(crate) async fn run(
    source: Source,
    schedule: Schedule,
    leader: Option<Leader>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = jiff::Timestamp::now();
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!("the snapshot schedule has no future time: no more snapshots");
            return;
        };
        let wait = next.duration_since(now).unsigned_abs();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(leader) = &leader {
            match leader.holds().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("scheduled snapshot skipped: another server holds the controller-manager Lease");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "scheduled snapshot skipped");
                    continue;
                }
            }
        }
        match take(&source, &schedule.dir, next).await {
            Ok((path, saved)) => {
                tracing::info!(file = %path.display(), %saved, "snapshot saved");
                if let Err(e) = prune(&schedule.dir, schedule.retention) {
                    tracing::warn!(error = %format!("{e:#}"), "removing old snapshots");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "snapshot failed"),
        }
    }
}

/// Writes one snapshot named for `at`; returns its path and what it holds.
async fn take(source: &Source, dir: &Path, at: jiff::Timestamp) -> anyhow::Result<(PathBuf, crate::datastore::Saved)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{PREFIX}{}", at.as_second()));
    let saved = crate::datastore::save(&source.args, &source.endpoint, SnapshotFormat::Native, &path).await?;
    Ok((path, saved))
}

/// Deletes all but the newest `keep` scheduled snapshots in `dir`.
fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut taken: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seconds = name.strip_prefix(PREFIX)?.parse().ok()?;
            Some((seconds, e.path()))
        })
        .collect();
    taken.sort();
    let excess = taken.len().saturating_sub(keep);
    for (_, path) in taken.into_iter().take(excess) {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        tracing::info!(file = %path.display(), "old snapshot removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_or_without_seconds() {
        let dir = PathBuf::from("/tmp");
        let t: jiff::Timestamp = "2026-11-29T05:00:00Z".parse().unwrap();
        let every_two_seconds = Schedule::new("*/2 * * * * *", 3, dir.clone()).unwrap();
        let next = every_two_seconds.next_after(t).unwrap();
        assert_eq!(next.duration_since(t).as_secs(), 2);
        let hourly = Schedule::new("0 * * * *", 3, dir.clone()).unwrap();
        let next = hourly.next_after(t).unwrap();
        assert!(next > t && next.as_second() % 3600 == t.as_second() % 3600, "{next}");
        assert!(Schedule::new("61 * * * *", 3, dir.clone()).is_err());
        assert!(Schedule::new("* * * * *", 0, dir).is_err());
    }

    #[test]
    fn pruning_keeps_the_newest_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for s in [100, 9, 1000, 50] {
            std::fs::write(dir.path().join(format!("{PREFIX}{s}")), "x").unwrap();
        }
        std::fs::write(dir.path().join("mine.txt"), "keep").unwrap();
        prune(dir.path(), 2).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["mine.txt", "snapshot-100", "snapshot-1000"]);
    }
}
