//! Static pods, as the kubelet's file source: Pod manifests (YAML or JSON) in
//! `--pod-manifests DIR` run on this node without the API server, and each has a mirror pod
//! in the API server that shows it (and receives its status).
//!
//! The directory is read every [`READ_EVERY`] (the kubelet's file check frequency). A static
//! pod is named `<name>-<nodeName>` (namespace `default` unless given), bound to this node, and
//! its uid is a hash of the manifest and the node name, so an edited manifest is a new pod
//! (the old one stops). The mirror pod carries the annotations `kubernetes.io/config.mirror`
//! (the hash), `kubernetes.io/config.source: file` and `kubernetes.io/config.hash`, and a
//! controller ownerReference to the Node (what NodeRestriction lets a node create). Mirror
//! pods are checked every [`MIRROR_EVERY`]: a missing one is created, a deleted or outdated
//! one is removed (grace 0) and created again, one without a manifest is removed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use super::Shared;
use super::pods::Workers;

/// How often the manifest directory is read.
pub const READ_EVERY: Duration = Duration::from_secs(20);

/// How often the mirror pods are checked.
pub const MIRROR_EVERY: Duration = Duration::from_secs(5);

/// The annotation marking a mirror pod (its value: the static pod's hash).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The annotation naming where a static pod came from.
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// Whether `pod` came from a manifest (the kubelet's IsStaticPod: a source other than the
/// API server).
pub(crate) fn is_static(pod: &Pod) -> bool {
    let source = pod.metadata.annotations.as_ref().and_then(|a| a.get(SOURCE_ANNOTATION));
    source.is_some_and(|s| s != "api")
}

/// The annotation with the static pod's hash.
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// The uid of the mirror pod a static pod's status goes to (berth's own; on the worker's copy only).
pub(crate) const MIRROR_UID_ANNOTATION: &str = "berth.dev/mirror-uid";

/// Why a manifest was skipped.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a Pod manifest.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The static pod a manifest describes, as this node runs it (name, namespace, uid, node and
/// annotations set).
pub fn static_pod(text: &str, path: &Path, node_name: &str) -> Result<Pod, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid { path: path.to_path_buf(), reason };
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| invalid(format!("not YAML: {e}")))?
    };
    if value["kind"] != "Pod" || value["apiVersion"] != "v1" {
        return Err(invalid("not a v1 Pod (kind: Pod, apiVersion: v1)".into()));
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| invalid(format!("not a valid Pod: {e}")))?;
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or_else(|| invalid("no metadata.name".into()))?;
    let spec = pod.spec.as_mut().ok_or_else(|| invalid("no spec".into()))?;
    if spec.containers.is_empty() {
        return Err(invalid("no containers".into()));
    }
    spec.node_name = Some(node_name.to_string());
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{node_name}\n{text}").as_bytes());
    let hash: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    let m = &mut pod.metadata;
    m.name = Some(format!("{name}-{node_name}"));
    if m.namespace.as_deref().is_none_or(str::is_empty) {
        m.namespace = Some("default".into());
    }
    m.uid = Some(hash.clone());
    m.resource_version = None;
    let annotations = m.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(HASH_ANNOTATION.into(), hash);
    pod.status = None;
    Ok(pod)
}

/// The static pods of the manifests in `dir` by uid (files ending .yaml, .yml or .json;
/// dot files skipped), with the files that were skipped and why.
pub fn read_dir(dir: &Path, node_name: &str) -> (BTreeMap<String, Pod>, Vec<ManifestError>) {
    let mut pods = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (pods, errors) };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let manifest = [".yaml", ".yml", ".json"].iter().any(|ext| file.ends_with(ext));
        if file.starts_with('.') || !manifest || !path.is_file() {
            continue;
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|source| ManifestError::Read { path: path.clone(), source })
            .and_then(|text| static_pod(&text, &path, node_name));
        match parsed {
            Ok(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                pods.insert(uid, pod);
            }
            Err(e) => errors.push(e),
        }
    }
    (pods, errors)
}

/// The mirror pod of `pod` for a Node with uid `node_uid`.
pub fn mirror_pod(pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut mirror = pod.clone();
    let m = &mut mirror.metadata;
    let hash = m.uid.take().unwrap_or_default();
    m.annotations.get_or_insert_with(BTreeMap::new).insert(MIRROR_ANNOTATION.into(), hash);
    m.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node_uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror
}

/// Runs the manifests in `dir` through the pod `workers` and keeps their mirror pods.
pub(crate) async fn run(shared: Arc<Shared>, workers: Workers, dir: PathBuf) {
    let node_name = shared.config.node_name.clone();
    let mut running: BTreeMap<String, Pod> = BTreeMap::new();
    let mut reported: Vec<String> = Vec::new();
    let mut mirrors: HashMap<String, String> = HashMap::new(); // static uid → mirror uid
    let mut last_read: Option<tokio::time::Instant> = None;
    let mut ticker = tokio::time::interval(MIRROR_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if last_read.is_none_or(|t| t.elapsed() >= READ_EVERY) {
            last_read = Some(tokio::time::Instant::now());
            let (dir, name) = (dir.clone(), node_name.clone());
            let Ok((wanted, errors)) = tokio::task::spawn_blocking(move || read_dir(&dir, &name)).await else {
                continue;
            };
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            if messages != reported {
                for m in &messages {
                    tracing::warn!(error = m, "skipping a static pod manifest");
                }
                reported = messages;
            }
            for uid in running.keys().filter(|u| !wanted.contains_key(*u)) {
                tracing::info!(pod = uid, "static pod removed: stopping it");
                workers.send_pod(&shared, uid.clone(), None);
                mirrors.remove(uid);
            }
            for (uid, pod) in &wanted {
                if !running.contains_key(uid) {
                    tracing::info!(pod = pod.metadata.name.as_deref().unwrap_or(""), "static pod added");
                    workers.send_pod(&shared, uid.clone(), Some(pod.clone()));
                }
            }
            running = wanted;
            workers.mark_static_read();
        }
        sync_mirrors(&shared, &workers, &running, &mut mirrors).await;
    }
}

/// Creates the missing mirror pods, replaces deleted or outdated ones, removes orphans.
async fn sync_mirrors(
    shared: &Arc<Shared>,
    workers: &Workers,
    running: &BTreeMap<String, Pod>,
    mirrors: &mut HashMap<String, String>,
) {
    let node_name = &shared.config.node_name;
    let api: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={node_name}");
    let Ok(list) = api.list(&ListParams::default().fields(&selector)).await else { return };
    let existing: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)))
        .collect();
    let mut present: HashMap<String, String> = HashMap::new(); // static uid → mirror uid
    for mirror in existing {
        let hash = mirror.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR_ANNOTATION)).cloned();
        let hash = hash.unwrap_or_default();
        let current = running.get(&hash).is_some_and(|p| p.metadata.name == mirror.metadata.name);
        if current && mirror.metadata.deletion_timestamp.is_none() {
            present.insert(hash, mirror.metadata.uid.clone().unwrap_or_default());
            continue;
        }
        // Deleted by a user, outdated, or without a manifest: removed now (grace 0).
        let ns = mirror.metadata.namespace.as_deref().unwrap_or("default");
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: mirror.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        let name = mirror.metadata.name.clone().unwrap_or_default();
        match Api::<Pod>::namespaced(shared.client.clone(), ns).delete(&name, &params).await {
            Ok(_) => tracing::info!(pod = name, "mirror pod removed"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = name, %e, "removing a mirror pod"),
        }
    }
    let missing: Vec<&String> = running.keys().filter(|u| !present.contains_key(*u)).collect();
    let node_uid = if missing.is_empty() {
        String::new()
    } else {
        match Api::<Node>::all(shared.client.clone()).get(node_name).await {
            Ok(n) => n.metadata.uid.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%e, "reading the node for mirror pods");
                return;
            }
        }
    };
    for uid in missing {
        let pod = &running[uid];
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mirror = mirror_pod(pod, node_name, &node_uid);
        match Api::<Pod>::namespaced(shared.client.clone(), ns).create(&PostParams::default(), &mirror).await {
            Ok(created) => {
                let mirror_uid = created.metadata.uid.unwrap_or_default();
                tracing::info!(pod = pod.metadata.name.as_deref().unwrap_or(""), "mirror pod created");
                present.insert(uid.clone(), mirror_uid);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {} // still being removed: next round
            Err(e) => tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or(""), %e, "creating a mirror pod"),
        }
    }
    // A new mirror pod gets the static pod's status: its worker posts again.
    for (uid, mirror_uid) in &present {
        if mirrors.get(uid) != Some(mirror_uid) {
            let mut pod = running[uid].clone();
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(MIRROR_UID_ANNOTATION.into(), mirror_uid.clone());
            workers.send_pod(shared, uid.clone(), Some(pod));
            mirrors.insert(uid.clone(), mirror_uid.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: main\n    image: localhost/busybox:1\n";

    #[test]
    fn a_manifest_becomes_a_static_pod_of_this_node() {
        let pod = static_pod(WEB, Path::new("web.yaml"), "n1").expect("valid");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[SOURCE_ANNOTATION], "file");
        // Same manifest, same uid; another node or an edit, another uid.
        assert_eq!(static_pod(WEB, Path::new("x.yaml"), "n1").unwrap().metadata.uid.unwrap(), uid);
        assert_ne!(static_pod(WEB, Path::new("web.yaml"), "n2").unwrap().metadata.uid.unwrap(), uid);
        let edited = WEB.replace("busybox:1", "busybox:2");
        assert_ne!(static_pod(&edited, Path::new("web.yaml"), "n1").unwrap().metadata.uid.unwrap(), uid);
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","namespace":"kube-system"},
            "spec":{"containers":[{"name":"c","image":"i"}]}}"#;
        let pod = static_pod(json, Path::new("j.json"), "n1").expect("valid JSON");
        assert_eq!(
            (pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref()),
            (Some("j-n1"), Some("kube-system"))
        );
    }

    #[test]
    fn bad_manifests_are_refused_with_a_reason() {
        for bad in [
            "not: [yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n",
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: i\n",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: 3\n",
        ] {
            let e = static_pod(bad, Path::new("bad.yaml"), "n1").expect_err(bad);
            assert!(e.to_string().starts_with("bad.yaml: "), "{e}");
        }
    }

    #[test]
    fn the_mirror_pod_is_owned_by_the_node_and_annotated() {
        let pod = static_pod(WEB, Path::new("web.yaml"), "n1").unwrap();
        let mirror = mirror_pod(&pod, "n1", "node-uid");
        assert_eq!(mirror.metadata.uid, None);
        let a = mirror.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[MIRROR_ANNOTATION], pod.metadata.uid.clone().unwrap());
        let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Node", "n1", "node-uid"));
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn the_directory_gives_manifests_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
        std::fs::write(dir.path().join("broken.yml"), "kind: Pod").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::write(dir.path().join(".web.yaml.swp"), WEB).unwrap();
        let (pods, errors) = read_dir(dir.path(), "n1");
        let names: Vec<_> = pods.values().map(|p| p.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, vec!["web-n1"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (none, errors) = read_dir(&dir.path().join("missing"), "n1");
        assert!(none.is_empty() && errors.is_empty());
    }
}
