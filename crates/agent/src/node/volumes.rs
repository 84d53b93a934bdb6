//! Pod volumes on the node: emptyDir (a directory under the agent's data dir), configMap
//! and secret (their keys written as files, with items and modes), hostPath; and the CRI
//! mounts of a container's volumeMounts (with subPath). Files are written once, when the
//! pod starts; updates of the ConfigMap or Secret are not propagated yet.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret};
use kube::api::Api;

use crate::runtime::cri::v1 as cri;

/// The directory of a pod's volumes: `<data dir>/pods/<uid>/volumes`.
pub fn pod_volumes_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid).join("volumes")
}

/// A relative path that stays inside its directory (no `..`, not absolute).
fn safe_relative(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    if path.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("invalid path {path:?}: must be relative without '..'"));
    }
    Ok(p)
}

/// Writes `files` (key → bytes) into `dir`, as `items` select and name them, with `mode`.
pub fn write_files(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let selected: Vec<(String, &Vec<u8>, u32)> = match items {
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                let data = files.get(&item.key).ok_or_else(|| format!("key {:?} not found", item.key))?;
                out.push((item.path.clone(), data, item.mode.map_or(mode, |m| m as u32)));
            }
            out
        }
        None => files.iter().map(|(k, v)| (k.clone(), v, mode)).collect(),
    };
    for (path, data, mode) in selected {
        let target = dir.join(safe_relative(&path)?);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, data).map_err(|e| format!("writing {}: {e}", target.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(|e| format!("setting the mode of {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Makes every volume of `pod` the node can provide; returns their host paths by name.
/// An error is the message the pod's containers wait with.
pub async fn prepare(client: &kube::Client, data_dir: &Path, pod: &Pod) -> Result<HashMap<String, PathBuf>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let base = pod_volumes_dir(data_dir, &uid);
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = base.join(&v.name);
        if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))?;
        } else if let Some(src) = &v.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let cm = api.get_opt(&src.name).await.map_err(|e| format!("reading configmap {:?}: {e}", src.name))?;
            let files: BTreeMap<String, Vec<u8>> = match cm {
                Some(cm) => cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .chain(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)))
                    .collect(),
                None if src.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", src.name)),
            };
            let mode = src.default_mode.unwrap_or(0o644) as u32;
            write_files(&dir, &files, src.items.as_deref(), mode)?;
        } else if let Some(src) = &v.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let secret = api.get_opt(&name).await.map_err(|e| format!("reading secret {name:?}: {e}"))?;
            let files: BTreeMap<String, Vec<u8>> = match secret {
                Some(s) => s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
                None if src.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{name}\" not found")),
            };
            let mode = src.default_mode.unwrap_or(0o644) as u32;
            write_files(&dir, &files, src.items.as_deref(), mode)?;
        } else if let Some(src) = &v.host_path {
            out.insert(v.name.clone(), PathBuf::from(&src.path));
            continue;
        } else {
            continue; // not supported yet: mounts of it fail in mounts()
        }
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// The CRI mounts of `container`'s volumeMounts over the prepared `volumes`.
pub fn mounts(container: &Container, volumes: &HashMap<String, PathBuf>) -> Result<Vec<cri::Mount>, String> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let base =
            volumes.get(&m.name).ok_or_else(|| format!("volume {:?} is not supported on this node yet", m.name))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = base.join(safe_relative(sub)?);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
                }
                p
            }
            None => base.clone(),
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_items_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let files: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())].into();
        write_files(dir.path(), &files, None, 0o600).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
        let mode = std::fs::metadata(dir.path().join("b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let items: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "b", "path": "sub/x", "mode": 0o400 }])).unwrap();
        let other = dir.path().join("items");
        write_files(&other, &files, Some(&items), 0o644).unwrap();
        assert_eq!(std::fs::read(other.join("sub/x")).unwrap(), b"2");
        assert!(!other.join("a").exists());
        let bad: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "a", "path": "../escape" }])).unwrap();
        assert!(write_files(&other, &files, Some(&bad), 0o644).unwrap_err().contains("invalid path"));
        let missing: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "zz", "path": "z" }])).unwrap();
        assert!(write_files(&other, &files, Some(&missing), 0o644).unwrap_err().contains("\"zz\""));
    }

    #[test]
    fn mounts_use_sub_paths_and_refuse_unknown_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let volumes: HashMap<String, PathBuf> = [("data".to_string(), dir.path().to_path_buf())].into();
        let c: Container = serde_json::from_value(serde_json::json!({ "name": "c", "volumeMounts": [
            { "name": "data", "mountPath": "/data", "readOnly": true },
            { "name": "data", "mountPath": "/sub", "subPath": "x/y" }] }))
        .unwrap();
        let m = mounts(&c, &volumes).unwrap();
        assert_eq!(m[0].container_path, "/data");
        assert!(m[0].readonly);
        assert_eq!(m[1].host_path, dir.path().join("x/y").display().to_string());
        assert!(dir.path().join("x/y").is_dir());
        let bad: Container = serde_json::from_value(serde_json::json!({ "name": "c", "volumeMounts": [
            { "name": "nope", "mountPath": "/n" }] }))
        .unwrap();
        assert!(mounts(&bad, &volumes).is_err());
    }
}
