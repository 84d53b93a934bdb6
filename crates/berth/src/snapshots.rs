//! Scheduled snapshots of a running server's datastore (`--snapshot-cron`,
//! `--snapshot-retention`), as k3s takes etcd snapshots: at each time of a cron schedule
//! (standard five fields, or six with seconds first) every object is written at one
//! revision to `snapshot-<unix seconds>` in the snapshot dir (the format of
//! `berth datastore snapshot save`, so `berth datastore snapshot restore` reads it), and
//! only the newest N files are kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use berth_store::Store;

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

/// Takes snapshots on `schedule` until `stop` turns true. A failed snapshot is logged and
/// the next one is attempted at its time.
pub(crate) async fn run(store: Arc<dyn Store>, schedule: Schedule, mut stop: tokio::sync::watch::Receiver<bool>) {
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
        match take(store.as_ref(), &schedule.dir, next).await {
            Ok((path, objects)) => {
                tracing::info!(file = %path.display(), objects, "snapshot saved");
                if let Err(e) = prune(&schedule.dir, schedule.retention) {
                    tracing::warn!(error = %format!("{e:#}"), "removing old snapshots");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "snapshot failed"),
        }
    }
}

/// Writes one snapshot named for `at`; returns its path and object count.
async fn take(store: &dyn Store, dir: &Path, at: jiff::Timestamp) -> anyhow::Result<(PathBuf, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (revision, kvs) = crate::datastore::dump(store).await?;
    let path = dir.join(format!("{PREFIX}{}", at.as_second()));
    crate::datastore::write_snapshot(&path, revision, &kvs)?;
    Ok((path, kvs.len()))
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
