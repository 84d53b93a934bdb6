//! Node-side deletion of `local-path` volumes (what k3s's local-path provisioner does with
//! a helper pod): a provisioned volume carries the `berth.io/local-path-cleanup` finalizer;
//! once the persistentvolume-binder deletes it (Released, reclaim policy Delete), the agent
//! of the node its node affinity names removes the directory, then the finalizer, and the
//! volume goes.
//!
//! Only a directory that is one entry directly under its StorageClass's `path` parameter
//! is removed (both absolute, the base never `/`); a symlink there is removed itself, never
//! followed, and the removal does not follow symlinks inside (`std::fs::remove_dir_all`).
//! A volume whose path breaks these rules, or whose class is gone, keeps its directory and
//! loses the finalizer with a warning (nothing can be removed safely). A failed removal
//! keeps the finalizer and is tried again every [`RETRY`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// The finalizer a local-path volume carries until its node removed the directory.
pub const CLEANUP_FINALIZER: &str = "berth.io/local-path-cleanup";
const HOSTNAME: &str = "kubernetes.io/hostname";
/// How often volumes whose directory could not be removed are tried again.
const RETRY: Duration = Duration::from_secs(20);

/// Whether `pv` waits for this node (`hostname`) to remove its directory: being deleted,
/// holding the finalizer, a hostPath volume whose required node affinity names the node.
pub fn ours(pv: &PersistentVolume, hostname: &str) -> bool {
    let finalizer = pv.metadata.finalizers.iter().flatten().any(|f| f == CLEANUP_FINALIZER);
    let Some(spec) = pv.spec.as_ref() else { return false };
    let on_node = spec.node_affinity.as_ref().and_then(|a| a.required.as_ref()).is_some_and(|r| {
        r.node_selector_terms.iter().any(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .any(|e| e.key == HOSTNAME && e.operator == "In" && e.values.iter().flatten().any(|v| v == hostname))
        })
    });
    pv.metadata.deletion_timestamp.is_some() && finalizer && spec.host_path.is_some() && on_node
}

/// The directory to remove for a volume at `path` of a class whose base is `base`: `path`
/// itself when it is one plain entry directly under `base`; else why not.
pub fn directory_to_remove(path: &str, base: &str) -> Result<PathBuf, String> {
    let base_path = Path::new(base.trim_end_matches('/'));
    // `.` and `..` segments are refused as written (Path's components drop inner `.`s).
    let plain = |p: &Path| {
        p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !p.to_string_lossy().split('/').any(|segment| segment == "." || segment == "..")
    };
    if !base_path.is_absolute() || base_path == Path::new("/") || base_path.as_os_str().is_empty() || !plain(base_path)
    {
        return Err(format!("the class's path {base:?} is not an absolute directory other than /"));
    }
    let dir = Path::new(path.trim_end_matches('/'));
    if !dir.is_absolute() || !plain(dir) || dir.parent() != Some(base_path) {
        return Err(format!("{path:?} is not an entry directly under the class's path {base:?}"));
    }
    Ok(dir.to_path_buf())
}

/// Removes `dir`, an entry of `base`: a symlink is removed itself, a directory with
/// everything in it (symlinks inside are not followed); a missing one is fine. `base` is
/// resolved first, so that `dir` is removed only if its parent really is that directory.
pub fn remove(dir: &Path, base: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let parent = dir.parent().map(std::fs::canonicalize).transpose()?;
    if parent != Some(std::fs::canonicalize(base)?) {
        return Err(std::io::Error::other(format!("{} is not inside {}", dir.display(), base.display())));
    }
    if meta.is_dir() { std::fs::remove_dir_all(dir) } else { std::fs::remove_file(dir) }
}

/// Watches PersistentVolumes and cleans this node's up, until dropped.
pub(crate) async fn run(client: kube::Client, hostname: String) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut events = watcher(api.clone(), watcher::Config::default()).default_backoff().boxed();
    let mut waiting: BTreeMap<String, PersistentVolume> = BTreeMap::new();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(pv) | watcher::Event::InitApply(pv))) => {
                    if ours(&pv, &hostname) {
                        waiting.insert(pv.name_any(), pv);
                    } else {
                        waiting.remove(&pv.name_any());
                        continue;
                    }
                }
                Some(Ok(watcher::Event::Delete(pv))) => {
                    waiting.remove(&pv.name_any());
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "local-path cleanup: volume watch");
                    continue;
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
        for pv in waiting.values() {
            clean(&client, &api, pv).await;
        }
    }
}

/// Removes one volume's directory, then its finalizer (failures are logged and retried).
async fn clean(client: &kube::Client, api: &Api<PersistentVolume>, pv: &PersistentVolume) {
    let name = pv.name_any();
    let path = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.clone()).unwrap_or_default();
    let class = pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default();
    let found =
        if class.is_empty() { Ok(None) } else { Api::<StorageClass>::all(client.clone()).get_opt(&class).await };
    let base = match found {
        Ok(Some(c)) => c.parameters.and_then(|p| p.get("path").cloned()),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(volume = %name, error = %e, "local-path cleanup: reading the StorageClass");
            return;
        }
    };
    match base
        .ok_or_else(|| format!("StorageClass {class:?} with a path is gone"))
        .and_then(|b| directory_to_remove(&path, &b).map(|d| (d, b)))
    {
        Ok((dir, base)) => {
            if let Err(e) = remove(&dir, Path::new(&base)) {
                tracing::warn!(volume = %name, dir = %dir.display(), error = %e, "local-path cleanup: removing the directory");
                return;
            }
            tracing::info!(volume = %name, dir = %dir.display(), "local-path cleanup: removed the directory");
        }
        Err(why) => {
            tracing::warn!(volume = %name, path = %path, "local-path cleanup: directory left on the node: {why}")
        }
    }
    let left: Vec<&String> = pv.metadata.finalizers.iter().flatten().filter(|f| *f != CLEANUP_FINALIZER).collect();
    let patch = json!({ "metadata": { "resourceVersion": pv.metadata.resource_version, "finalizers": left } });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(volume = %name, error = %e, "local-path cleanup: removing the finalizer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_entries_right_under_the_base_are_removed() {
        let ok = |path: &str, base: &str| directory_to_remove(path, base).map(|p| p.display().to_string());
        assert_eq!(ok("/var/lib/s/pvc-1_default_data", "/var/lib/s"), Ok("/var/lib/s/pvc-1_default_data".into()));
        assert_eq!(ok("/var/lib/s/pvc-1/", "/var/lib/s/"), Ok("/var/lib/s/pvc-1".into()));
        for (path, base) in [
            ("/var/lib/s", "/var/lib/s"),
            ("/var/lib/s/a/b", "/var/lib/s"),
            ("/var/lib/s/..", "/var/lib/s"),
            ("/var/lib/s/../etc", "/var/lib/s"),
            ("/var/lib/s/./a", "/var/lib/s"),
            ("/etc", "/"),
            ("/etc", ""),
            ("relative/a", "relative"),
            ("/var/lib/other/a", "/var/lib/s"),
            ("/x/../a", "/x/.."),
        ] {
            assert!(directory_to_remove(path, base).is_err(), "{path} under {base}");
        }
    }

    #[test]
    fn removal_does_not_follow_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("storage");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(base.join("vol/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::fs::write(base.join("vol/sub/file"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, base.join("vol/link")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("linked-vol")).unwrap();

        remove(&base.join("vol"), &base).unwrap();
        assert!(!base.join("vol").exists());
        remove(&base.join("linked-vol"), &base).unwrap();
        assert!(std::fs::symlink_metadata(base.join("linked-vol")).is_err());
        assert!(outside.join("keep").exists(), "a symlink's target was removed");
        // Gone already: fine.
        remove(&base.join("vol"), &base).unwrap();
        // A base that is not the parent: refused.
        std::fs::create_dir_all(outside.join("d")).unwrap();
        assert!(remove(&outside.join("d"), &base).is_err());
        assert!(outside.join("d").exists());
    }

    #[test]
    fn volumes_of_this_node_being_deleted_are_ours() {
        let pv = |host: &str, deleting: bool, finalizers: serde_json::Value| -> PersistentVolume {
            let mut meta = json!({ "name": "v", "finalizers": finalizers });
            if deleting {
                meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(json!({ "metadata": meta, "spec": {
                "hostPath": { "path": "/s/v" },
                "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                    { "key": HOSTNAME, "operator": "In", "values": [host] }] }] } } } }))
            .unwrap()
        };
        let f = json!([CLEANUP_FINALIZER, "kubernetes.io/pv-protection"]);
        assert!(ours(&pv("a", true, f.clone()), "a"));
        assert!(!ours(&pv("b", true, f.clone()), "a"));
        assert!(!ours(&pv("a", false, f), "a"));
        assert!(!ours(&pv("a", true, json!(["kubernetes.io/pv-protection"])), "a"));
    }
}
