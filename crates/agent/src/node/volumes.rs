//! Pod volumes on the node: emptyDir (a directory under the agent's data dir), configMap
//! and secret (their keys written as files, with items and modes), downwardAPI (pod
//! fields and container resources), projected (configMap, secret, downwardAPI and
//! ServiceAccount token sources in one directory; the token comes from the TokenRequest
//! API bound to the pod and is renewed at 80 % of its life), hostPath, persistentVolumeClaim
//! (the claim's bound PersistentVolume's hostPath or local path); and the CRI mounts of a
//! container's volumeMounts (with subPath; read-only where the mount or the claim says so).
//! An emptyDir of medium Memory is a tmpfs (its size the sizeLimit), and so are secret,
//! projected and downwardAPI volumes (as the kubelet does: Secret values and tokens stay off
//! the disk); [`empty_dir_over_limit`]
//! measures emptyDir usage (as du) for the eviction of pods over their sizeLimit. File contents are written as the
//! kubelet's atomic writer does (`..data` symlink switched in one rename) and refreshed
//! every [`RESYNC`], so updates of ConfigMaps and Secrets reach running containers.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, Pod, ProjectedVolumeSource, ResourceFieldSelector, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use kube::api::{Api, PostParams};

use super::sources::Sources;
use crate::hollow::config::parse_quantity;

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

/// Files of a volume: relative path → (contents, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The files `items` select from `data` (key → bytes) and name, with `mode` unless an
/// item has its own; every key when there are no items.
fn select(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    missing: MissingKey,
    out: &mut Files,
) -> Result<(), String> {
    match items {
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    match missing {
                        MissingKey::Skip => continue,
                        MissingKey::Fail(what) => return Err(format!("{what}: {}", item.key)),
                    }
                };
                safe_relative(&item.path)?;
                out.insert(item.path.clone(), (bytes.clone(), item.mode.map_or(mode, |m| m as u32)));
            }
        }
        None => {
            for (k, v) in data {
                safe_relative(k)?;
                out.insert(k.clone(), (v.clone(), mode));
            }
        }
    }
    Ok(())
}

/// What an item naming a key its ConfigMap or Secret lacks does, as the kubelet's
/// `MakePayload`: skipped when the source is optional, else the volume fails with the
/// kubelet's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// Left out (an optional source).
    Skip,
    /// An error: this text, `: `, the key.
    Fail(&'static str),
}

impl MissingKey {
    /// For a ConfigMap source.
    pub fn config_map(optional: Option<bool>) -> MissingKey {
        if optional == Some(true) {
            MissingKey::Skip
        } else {
            MissingKey::Fail("configmap references non-existent config key")
        }
    }

    /// For a Secret source.
    pub fn secret(optional: Option<bool>) -> MissingKey {
        if optional == Some(true) { MissingKey::Skip } else { MissingKey::Fail("references non-existent secret key") }
    }
}

/// Writes `files` (key → bytes) into `dir`, as `items` select and name them, with `mode`
/// (atomically, see [`write_atomic`]).
pub fn write_files(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    missing: MissingKey,
) -> Result<(), String> {
    let mut out = Files::new();
    select(files, items, mode, missing, &mut out)?;
    write_atomic(dir, &out).map(|_| ())
}

/// The files under `root` (following no links), relative path → (contents, mode).
fn read_tree(root: &Path) -> Option<Files> {
    let mut out = Files::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let entry = entry.ok()?;
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(root).ok()?.to_string_lossy().into_owned();
                out.insert(rel, (std::fs::read(entry.path()).ok()?, meta.permissions().mode() & 0o777));
            }
        }
    }
    Some(out)
}

/// Writes `files` into `dir` the way the kubelet's atomic writer does, so that a reader
/// never sees half an update: the files go into a new hidden directory `..<timestamp>`,
/// the symlink `..data` is switched to it with one rename, and each top-level name is a
/// symlink through `..data`. Returns false (and writes nothing) when the contents are
/// unchanged.
pub fn write_atomic(dir: &Path, files: &Files) -> Result<bool, String> {
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let data_link = dir.join("..data");
    let old = std::fs::read_link(&data_link).ok();
    if old.is_some() && read_tree(&data_link).as_ref() == Some(files) {
        return Ok(false);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let stamp = format!("..{}.{:09}", now.as_secs(), now.subsec_nanos());
    let target = dir.join(&stamp);
    std::fs::create_dir_all(&target).map_err(|e| io("creating", &target, e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).map_err(|e| io("chmod", &target, e))?;
    for (path, (data, mode)) in files {
        let file = target.join(safe_relative(path)?);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&file, data).map_err(|e| io("writing", &file, e))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(|e| io("setting the mode of", &file, e))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(|e| io("linking", &tmp, e))?;
    std::fs::rename(&tmp, &data_link).map_err(|e| io("switching", &data_link, e))?;
    let tops: std::collections::BTreeSet<String> =
        files.keys().filter_map(|p| p.split('/').next().map(str::to_string)).collect();
    for top in &tops {
        let link = dir.join(top);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => continue,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&link).map_err(|e| io("removing", &link, e))?,
            Ok(_) => std::fs::remove_file(&link).map_err(|e| io("removing", &link, e))?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(Path::new("..data").join(top), &link).map_err(|e| io("linking", &link, e))?;
    }
    // What the previous version had and this one does not.
    for entry in std::fs::read_dir(dir).map_err(|e| io("reading", dir, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || tops.contains(&name) {
            continue;
        }
        let _ = std::fs::remove_file(entry.path()).or_else(|_| std::fs::remove_dir_all(entry.path()));
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// What a pod's volumes keep between passes: the ServiceAccount tokens of projected
/// volumes and when each is to be renewed.
#[derive(Debug, Default)]
pub struct VolumeState {
    tokens: HashMap<String, (String, Instant)>,
    last: Option<Instant>,
}

/// How often configMap, secret, downward API and projected contents are looked at again.
pub const RESYNC: Duration = Duration::from_secs(10);

impl VolumeState {
    /// True when the volumes should be refreshed now.
    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= RESYNC)
            || self.tokens.values().any(|(_, renew_at)| Instant::now() >= *renew_at)
    }
}

async fn config_map_data(
    sources: &Sources,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let cm = sources.config_map(ns, name).await.map_err(|e| format!("reading configmap {name:?}: {e}"))?;
    match cm {
        Some(cm) => Ok(cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .chain(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())))
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

async fn secret_data(
    sources: &Sources,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let secret = sources.secret(ns, name).await.map_err(|e| format!("reading secret {name:?}: {e}"))?;
    match secret {
        Some(s) => Ok(s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

/// `k="v"` lines, sorted by key, as the kubelet writes labels and annotations.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a `resourceFieldRef` (limits fall back to the node's capacity), rounded up
/// to its divisor; env variables and downwardAPI volumes share it.
pub(crate) fn resource_value(pod: &Pod, r: &ResourceFieldSelector) -> Result<String, String> {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| r.container_name.as_deref().is_none_or(|n| n.is_empty() || c.name == n))
        .ok_or_else(|| format!("container {:?} not found", r.container_name))?;
    let (kind, res) = r.resource.split_once('.').ok_or_else(|| format!("unsupported resource {:?}", r.resource))?;
    let res_of = container.resources.as_ref();
    let map = match kind {
        "limits" => res_of.and_then(|x| x.limits.as_ref()),
        "requests" => res_of.and_then(|x| x.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", r.resource)),
    };
    let nano = |q: &str| parse_quantity(q).map_err(|e| e.to_string());
    let value = match map.and_then(|m| m.get(res)) {
        Some(q) => nano(&q.0)?,
        None if kind == "limits" && res == "cpu" => {
            std::thread::available_parallelism().map_or(1, |n| n.get()) as i128 * 1_000_000_000
        }
        None if kind == "limits" && res == "memory" => machine_memory() as i128 * 1_000_000_000,
        None => 0,
    };
    // No divisor, or a zero one (as defaulted), is 1 (the kubelet's ExtractContainerResourceValue).
    let divisor = match r.divisor.as_ref().map(|d| d.0.as_str()).filter(|d| !d.is_empty()) {
        Some(d) => Some(nano(d)?).filter(|n| *n != 0).unwrap_or(1_000_000_000),
        None => 1_000_000_000,
    };
    if divisor < 0 {
        return Err(format!("invalid divisor for {:?}", r.resource));
    }
    Ok(((value + divisor - 1) / divisor).to_string())
}

fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The files of downward API `items`.
fn downward_files(
    pod: &Pod,
    node_ip: Ipv4Addr,
    items: &[DownwardAPIVolumeFile],
    mode: u32,
    out: &mut Files,
) -> Result<(), String> {
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
    for item in items {
        safe_relative(&item.path)?;
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => super::pods::field_value(pod, pod_ip.as_deref(), node_ip, path)
                    .ok_or_else(|| format!("unsupported fieldPath {path:?}"))?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(pod, r)?
        } else {
            return Err(format!("item {:?} has neither fieldRef nor resourceFieldRef", item.path));
        };
        out.insert(item.path.clone(), (value.into_bytes(), item.mode.map_or(mode, |m| m as u32)));
    }
    Ok(())
}

/// A token for the pod's ServiceAccount bound to the pod, from the TokenRequest API,
/// reused until 80 % of its life has passed.
async fn sa_token(
    client: &kube::Client,
    pod: &Pod,
    key: String,
    src: &ServiceAccountTokenProjection,
    state: &mut VolumeState,
) -> Result<Vec<u8>, String> {
    if let Some((token, renew_at)) = state.tokens.get(&key)
        && Instant::now() < *renew_at
    {
        return Ok(token.clone().into_bytes());
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let seconds = src.expiration_seconds.unwrap_or(3600);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: src.audience.iter().filter(|a| !a.is_empty()).cloned().collect(),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for serviceaccount {ns}/{sa}: {e}"))?;
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    let life = answer.spec.expiration_seconds.unwrap_or(seconds).max(1) as u64;
    let renew_at = Instant::now() + Duration::from_secs(life * 8 / 10);
    state.tokens.insert(key, (token.clone(), renew_at));
    Ok(token.into_bytes())
}

/// The files of a projected volume.
async fn projected_files(
    client: &kube::Client,
    sources: &Sources,
    pod: &Pod,
    node_ip: Ipv4Addr,
    volume: &str,
    src: &ProjectedVolumeSource,
    state: &mut VolumeState,
) -> Result<Files, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mode = src.default_mode.unwrap_or(0o644) as u32;
    let mut out = Files::new();
    for (i, s) in src.sources.iter().flatten().enumerate() {
        if let Some(cm) = &s.config_map {
            let data = config_map_data(sources, &ns, &cm.name, cm.optional == Some(true)).await?;
            select(&data, cm.items.as_deref(), mode, MissingKey::config_map(cm.optional), &mut out)?;
        } else if let Some(sec) = &s.secret {
            let data = secret_data(sources, &ns, &sec.name, sec.optional == Some(true)).await?;
            select(&data, sec.items.as_deref(), mode, MissingKey::secret(sec.optional), &mut out)?;
        } else if let Some(d) = &s.downward_api {
            downward_files(pod, node_ip, d.items.as_deref().unwrap_or_default(), mode, &mut out)?;
        } else if let Some(t) = &s.service_account_token {
            safe_relative(&t.path)?;
            let token = sa_token(client, pod, format!("{volume}/{i}"), t, state).await?;
            // The kubelet writes the token readable by the owner and group only when the
            // pod sets fsGroup; 0644 (defaultMode) otherwise.
            out.insert(t.path.clone(), (token, mode));
        }
    }
    Ok(out)
}

/// Why some of a pod's volumes could not be set up, in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFailure {
    /// One message per failure, each a FailedMount event: `MountVolume.SetUp failed for
    /// volume "v" : <why>` for a volume the node could not make, `Unable to attach or mount
    /// volumes: ...: error processing PVC ns/claim: <why>` for claims it could not resolve.
    pub messages: Vec<String>,
    /// The volumes not mounted, by name, sorted.
    pub unmounted: Vec<String>,
    /// Some claim could not be resolved (the kubelet then says so, not that it timed out).
    pub unprocessed: bool,
}

impl MountFailure {
    /// The summary the kubelet records when a pod's volumes are still not mounted after
    /// its wait for them (two minutes) timed out.
    pub fn timed_out(&self) -> String {
        format!(
            "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[], failed to process \
             volumes=[]: timed out waiting for the condition",
            self.unmounted.join(" ")
        )
    }
}

/// Why one volume could not be set up.
enum VolumeError {
    /// The node could not make it (the volume plugin's SetUp failed).
    SetUp(String),
    /// Its claim could not be resolved to a volume.
    Claim(String),
}

impl From<String> for VolumeError {
    fn from(message: String) -> VolumeError {
        VolumeError::SetUp(message)
    }
}

/// Makes every volume of `pod` the node can provide, or brings the contents of its
/// configMap, secret, downward API and projected volumes up to date (an atomic switch
/// when they changed); returns their host paths by name. Every volume is tried; the
/// error gathers the failures.
pub async fn prepare(
    client: &kube::Client,
    sources: &Sources,
    data_dir: &Path,
    pod: &Pod,
    node_ip: Ipv4Addr,
    state: &mut VolumeState,
) -> Result<HashMap<String, PathBuf>, MountFailure> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let base = pod_volumes_dir(data_dir, &uid);
    let mut out = HashMap::new();
    let mut set_up_failures = Vec::new();
    let mut claim_failures = Vec::new();
    state.last = Some(Instant::now());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let context = Context { client, sources, pod, ns: &ns, node_ip };
        match set_up(&context, v, &base.join(&v.name), state).await {
            Ok(Some(path)) => {
                out.insert(v.name.clone(), path);
            }
            Ok(None) => {}
            Err(VolumeError::SetUp(why)) => {
                set_up_failures
                    .push((v.name.clone(), format!("MountVolume.SetUp failed for volume \"{}\" : {why}", v.name)));
            }
            Err(VolumeError::Claim(why)) => claim_failures.push((v.name.clone(), why)),
        }
    }
    if set_up_failures.is_empty() && claim_failures.is_empty() {
        return Ok(out);
    }
    let mut unmounted: Vec<String> =
        set_up_failures.iter().map(|(n, _)| n.clone()).chain(claim_failures.iter().map(|(n, _)| n.clone())).collect();
    unmounted.sort();
    let mut messages: Vec<String> = set_up_failures.into_iter().map(|(_, m)| m).collect();
    let unprocessed = !claim_failures.is_empty();
    if unprocessed {
        let names: Vec<&str> = claim_failures.iter().map(|(n, _)| n.as_str()).collect();
        let errors: Vec<&str> = claim_failures.iter().map(|(_, e)| e.as_str()).collect();
        // One error as it is, several as Kubernetes' aggregate prints them.
        let why = if errors.len() == 1 { errors[0].to_string() } else { format!("[{}]", errors.join(", ")) };
        messages.push(format!(
            "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[], failed to process \
             volumes=[{}]: {why}",
            unmounted.join(" "),
            names.join(" ")
        ));
    }
    Err(MountFailure { messages, unmounted, unprocessed })
}

/// What setting a volume up reads.
struct Context<'a> {
    client: &'a kube::Client,
    sources: &'a Sources,
    pod: &'a Pod,
    ns: &'a str,
    node_ip: Ipv4Addr,
}

/// Sets volume `v` up in `dir`; its host path, None for a kind the node does not provide
/// (mounts of it fail in [`mounts`]).
async fn set_up(
    cx: &Context<'_>,
    v: &Volume,
    dir: &Path,
    state: &mut VolumeState,
) -> Result<Option<PathBuf>, VolumeError> {
    let Context { client, sources, pod, ns, node_ip } = *cx;
    if let Some(src) = &v.empty_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if src.medium.as_deref() == Some("Memory") && !is_mount_point(dir) {
            let limit = src.size_limit.as_ref().map(|q| quantity_bytes(&q.0)).transpose()?;
            mount_tmpfs(dir, limit).await?;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))?;
    } else if let Some(src) = &v.config_map {
        let data = config_map_data(sources, ns, &src.name, src.optional == Some(true)).await?;
        let mode = src.default_mode.unwrap_or(0o644) as u32;
        write_files(dir, &data, src.items.as_deref(), mode, MissingKey::config_map(src.optional))?;
    } else if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let data = secret_data(sources, ns, &name, src.optional == Some(true)).await?;
        memory_backed(dir).await?;
        let mode = src.default_mode.unwrap_or(0o644) as u32;
        write_files(dir, &data, src.items.as_deref(), mode, MissingKey::secret(src.optional))?;
    } else if let Some(src) = &v.downward_api {
        let mut files = Files::new();
        let mode = src.default_mode.unwrap_or(0o644) as u32;
        downward_files(pod, node_ip, src.items.as_deref().unwrap_or_default(), mode, &mut files)?;
        memory_backed(dir).await?;
        write_atomic(dir, &files)?;
    } else if let Some(src) = &v.projected {
        let files = projected_files(client, sources, pod, node_ip, &v.name, src, state).await?;
        memory_backed(dir).await?;
        write_atomic(dir, &files)?;
    } else if let Some(src) = &v.host_path {
        let path = PathBuf::from(&src.path);
        check_host_path(&path, src.type_.as_deref())?;
        return Ok(Some(path));
    } else if let Some(src) = &v.persistent_volume_claim {
        let path = claim_path(client, ns, src)
            .await
            .map_err(|e| VolumeError::Claim(format!("error processing PVC {ns}/{}: {e}", src.claim_name)))?;
        return Ok(Some(path));
    } else {
        return Ok(None);
    }
    Ok(Some(dir.to_path_buf()))
}

/// Bytes of a resource quantity (`1Mi`, `500k`, `1e6`).
fn quantity_bytes(q: &str) -> Result<u64, String> {
    let nano = parse_quantity(q).map_err(|e| e.to_string())?;
    Ok(u64::try_from(nano.div_euclid(1_000_000_000)).unwrap_or(0))
}

/// The mount points under `dir` (itself included), from /proc/self/mountinfo, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    // mountinfo has resolved paths: compare with the resolved directory.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes spaces and the like as octal (\040); our paths have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn is_mount_point(dir: &Path) -> bool {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    mounts_under(dir).contains(&resolved)
}

/// Makes `dir` a tmpfs (once): secret, projected and downwardAPI volumes are memory
/// backed, as the kubelet makes them, so that Secret values and tokens never reach the
/// node's disk.
/// A volume directory that already exists is kept as it is (a running container's mount
/// refers to it: a tmpfs mounted over it now would hide later updates from the container).
async fn memory_backed(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    mount_tmpfs(dir, None).await?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))
}

/// Mounts a tmpfs on `dir`, of `size` bytes when given (else the kernel's default).
async fn mount_tmpfs(dir: &Path, size: Option<u64>) -> Result<(), String> {
    let mut options = "mode=0777".to_string();
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    let out = tokio::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .output()
        .await
        .map_err(|e| format!("running mount: {e}"))?;
    if !out.status.success() {
        return Err(format!("mounting a tmpfs on {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Unmounts every mount under `dir` (a pod's tmpfs emptyDirs before its directory goes).
pub async fn unmount_all(dir: &Path) {
    for p in mounts_under(dir) {
        match tokio::process::Command::new("umount").arg(&p).output().await {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                tracing::warn!(path = %p.display(), error = %String::from_utf8_lossy(&out.stderr).trim(), "umount")
            }
            Err(e) => tracing::warn!(path = %p.display(), %e, "umount"),
        }
    }
}

/// The disk usage of the files under `dir` in bytes, as du counts it (allocated blocks,
/// each inode once, links not followed).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// The first emptyDir of `pod` whose usage exceeds its sizeLimit: the kubelet's eviction
/// message for it (`Usage of EmptyDir volume "x" exceeds the limit "1Mi".`).
pub fn empty_dir_over_limit(data_dir: &Path, pod: &Pod) -> Option<String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let base = pod_volumes_dir(data_dir, uid);
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).find_map(|v| {
        let limit = v.empty_dir.as_ref()?.size_limit.as_ref()?;
        let bytes = quantity_bytes(&limit.0).ok()?;
        (disk_usage(&base.join(&v.name)) > bytes)
            .then(|| format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}.", v.name, limit.0))
    })
}

/// The host path of a PersistentVolumeClaim's volume: the claim (in the pod's namespace)
/// must be Bound to a PersistentVolume that names it back and is a hostPath or local
/// volume. The error says what is wrong, in the kubelet's words.
async fn claim_path(
    client: &kube::Client,
    ns: &str,
    src: &PersistentVolumeClaimVolumeSource,
) -> Result<PathBuf, String> {
    let name = &src.claim_name;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = claims
        .get_opt(name)
        .await
        .map_err(|e| format!("failed to fetch PVC from API server: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    let (Some(volume), "Bound") = (volume, phase) else {
        return Err("PVC is not bound".into());
    };
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume)
        .await
        .map_err(|e| format!("failed to fetch PV {volume} from API server: {e}"))?
        .ok_or_else(|| {
            format!("failed to fetch PV {volume} from API server: persistentvolume \"{volume}\" not found")
        })?;
    persistent_volume_path(&pv, &claim)
}

/// The host path of `pv` for `claim`: its hostPath or local path, when it is bound to
/// that claim (same uid). A hostPath of type DirectoryOrCreate is created.
fn persistent_volume_path(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<PathBuf, String> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.clone().unwrap_or_default();
    let claim_ref = spec.claim_ref.as_ref();
    let bound_here = claim_ref.is_some_and(|r| {
        r.name == claim.metadata.name && r.uid.as_ref().is_none_or(|u| Some(u) == claim.metadata.uid.as_ref())
    });
    if !bound_here {
        return Err(format!(
            "persistentvolume {pv_name} is bound to a different claim (claimRef {:?})",
            claim_ref.map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or("")))
        ));
    }
    let path = if let Some(h) = &spec.host_path {
        let path = PathBuf::from(&h.path);
        check_host_path(&path, h.type_.as_deref()).map_err(|e| format!("persistentvolume {pv_name}: {e}"))?;
        path
    } else if let Some(l) = &spec.local {
        PathBuf::from(&l.path)
    } else {
        return Err(format!("persistentvolume {pv_name}: only hostPath and local volumes are supported on this node"));
    };
    if !path.exists() {
        return Err(format!("persistentvolume {pv_name}: path {} does not exist on the node", path.display()));
    }
    Ok(path)
}

/// Checks a hostPath against its `type` as the kubelet does before mounting it, creating
/// what `DirectoryOrCreate` (mode 0755, parents too) and `FileOrCreate` (an empty file, mode
/// 0644, in an existing directory) ask for; the error is the kubelet's message. No type
/// (or `""`) checks nothing; links are followed.
pub fn check_host_path(path: &Path, type_: Option<&str>) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
    let kind = || std::fs::metadata(path).ok().map(|m| m.file_type());
    let failed = |what: &str| format!("hostPath type check failed: {} is not {what}", path.display());
    let (ok, what) = match type_.unwrap_or("") {
        "" => return Ok(()),
        "DirectoryOrCreate" if kind().is_none() => {
            let made = std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path);
            return made.map_err(|e| format!("creating {}: {e}", path.display()));
        }
        "FileOrCreate" if kind().is_none() => {
            let made = std::fs::OpenOptions::new().create(true).append(true).mode(0o644).open(path);
            return made.map(drop).map_err(|e| format!("creating {}: {e}", path.display()));
        }
        "Directory" | "DirectoryOrCreate" => (kind().is_some_and(|k| k.is_dir()), "a directory"),
        "File" | "FileOrCreate" => (kind().is_some_and(|k| k.is_file()), "a file"),
        "Socket" => (kind().is_some_and(|k| k.is_socket()), "a socket file"),
        "CharDevice" => (kind().is_some_and(|k| k.is_char_device()), "a character device"),
        "BlockDevice" => (kind().is_some_and(|k| k.is_block_device()), "a block device"),
        other => return Err(format!("{other} is an invalid volume type")),
    };
    if ok { Ok(()) } else { Err(failed(what)) }
}

/// The CRI mounts of `container`'s volumeMounts over the prepared `volumes` of `pod`; a
/// claim's `readOnly` makes its mounts read-only.
pub fn mounts(pod: &Pod, container: &Container, volumes: &HashMap<String, PathBuf>) -> Result<Vec<cri::Mount>, String> {
    let claim_read_only = |name: &str| {
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.name == name && v.persistent_volume_claim.as_ref().is_some_and(|c| c.read_only == Some(true)))
    };
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
            readonly: m.read_only.unwrap_or(false) || claim_read_only(&m.name),
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_values_round_up_to_their_divisor() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [
                { "name": "a" },
                { "name": "b", "resources": { "limits": { "cpu": "250m", "memory": "100Mi" } } }] }
        }))
        .unwrap();
        let value = |container: &str, resource: &str, divisor: Option<&str>| {
            let r: ResourceFieldSelector = serde_json::from_value(serde_json::json!({
                "containerName": container, "resource": resource, "divisor": divisor
            }))
            .unwrap();
            resource_value(&pod, &r)
        };
        assert_eq!(value("b", "limits.cpu", Some("1m")).unwrap(), "250");
        // No divisor or a zero one is 1: 250m rounds up to 1 CPU.
        assert_eq!(value("b", "limits.cpu", None).unwrap(), "1");
        assert_eq!(value("b", "limits.cpu", Some("0")).unwrap(), "1");
        assert_eq!(value("b", "limits.memory", Some("1Mi")).unwrap(), "100");
        assert_eq!(value("b", "requests.memory", Some("1Mi")).unwrap(), "0");
        assert!(value("b", "limits.cpu", Some("-1")).is_err());
        // An unset limit is the node's capacity.
        assert!(value("a", "limits.cpu", None).unwrap().parse::<u64>().unwrap() >= 1);
    }

    #[test]
    fn host_paths_are_checked_and_made_by_type() {
        let dir = tempfile::tempdir().unwrap();
        let check = |p: &Path, t: &str| check_host_path(p, Some(t));
        let missing = dir.path().join("a/b");
        assert_eq!(check_host_path(&missing, None), Ok(()), "no type, no check");
        assert_eq!(check(&missing, ""), Ok(()));
        let not_dir = format!("hostPath type check failed: {} is not a directory", missing.display());
        assert_eq!(check(&missing, "Directory"), Err(not_dir));
        check(&missing, "DirectoryOrCreate").unwrap();
        let mode = std::fs::metadata(&missing).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o755, 0, "made with mode 0755 at most: {mode:o}");
        assert_eq!(check(&missing, "Directory"), Ok(()));
        assert_eq!(check(&missing, "DirectoryOrCreate"), Ok(()));
        let not_file = format!("hostPath type check failed: {} is not a file", missing.display());
        assert_eq!(check(&missing, "File"), Err(not_file.clone()));
        assert_eq!(check(&missing, "FileOrCreate"), Err(not_file), "a directory is there");

        let file = dir.path().join("f");
        let no_parent = dir.path().join("none/f");
        assert!(check(&no_parent, "FileOrCreate").unwrap_err().starts_with("creating"));
        assert!(check(&file, "File").unwrap_err().ends_with("is not a file"));
        check(&file, "FileOrCreate").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        std::fs::write(&file, b"kept").unwrap();
        check(&file, "FileOrCreate").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"kept", "an existing file is left alone");
        assert_eq!(check(&file, "File"), Ok(()));
        let not_dir = format!("hostPath type check failed: {} is not a directory", file.display());
        assert_eq!(check(&file, "DirectoryOrCreate"), Err(not_dir));

        let socket_path = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
        assert_eq!(check(&socket_path, "Socket"), Ok(()));
        let not_socket = format!("hostPath type check failed: {} is not a socket file", file.display());
        assert_eq!(check(&file, "Socket"), Err(not_socket));
        assert_eq!(check(Path::new("/dev/null"), "CharDevice"), Ok(()));
        let not_char = format!("hostPath type check failed: {} is not a character device", file.display());
        assert_eq!(check(&file, "CharDevice"), Err(not_char));
        let not_block = "hostPath type check failed: /dev/null is not a block device".to_string();
        assert_eq!(check(Path::new("/dev/null"), "BlockDevice"), Err(not_block));
        assert_eq!(check(&file, "Pipe"), Err("Pipe is an invalid volume type".to_string()));
    }

    #[test]
    fn files_follow_items_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let files: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())].into();
        write_files(dir.path(), &files, None, 0o600, MissingKey::secret(None)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");
        let mode = std::fs::metadata(dir.path().join("b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let items: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "b", "path": "sub/x", "mode": 0o400 }])).unwrap();
        let other = dir.path().join("items");
        write_files(&other, &files, Some(&items), 0o644, MissingKey::secret(None)).unwrap();
        assert_eq!(std::fs::read(other.join("sub/x")).unwrap(), b"2");
        assert!(!other.join("a").exists());
        let bad: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "a", "path": "../escape" }])).unwrap();
        let fail = MissingKey::config_map(Some(false));
        assert!(write_files(&other, &files, Some(&bad), 0o644, fail).unwrap_err().contains("invalid path"));
        let missing: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "zz", "path": "z" }])).unwrap();
        let err = write_files(&other, &files, Some(&missing), 0o644, fail).unwrap_err();
        assert_eq!(err, "configmap references non-existent config key: zz");
        let err = write_files(&other, &files, Some(&missing), 0o644, MissingKey::secret(None)).unwrap_err();
        assert_eq!(err, "references non-existent secret key: zz");
        // An optional source leaves the missing key out and writes the others.
        let some: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{ "key": "zz", "path": "z" }, { "key": "a", "path": "y" }]))
                .unwrap();
        let optional = dir.path().join("optional");
        write_files(&optional, &files, Some(&some), 0o644, MissingKey::secret(Some(true))).unwrap();
        assert_eq!(std::fs::read(optional.join("y")).unwrap(), b"1");
        assert!(!optional.join("z").exists());
    }

    #[test]
    fn mounts_use_sub_paths_and_refuse_unknown_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let volumes: HashMap<String, PathBuf> = [("data".to_string(), dir.path().to_path_buf())].into();
        let c: Container = serde_json::from_value(serde_json::json!({ "name": "c", "volumeMounts": [
            { "name": "data", "mountPath": "/data", "readOnly": true },
            { "name": "data", "mountPath": "/sub", "subPath": "x/y" }] }))
        .unwrap();
        let pod = Pod::default();
        let m = mounts(&pod, &c, &volumes).unwrap();
        assert_eq!(m[0].container_path, "/data");
        assert!(m[0].readonly);
        assert_eq!(m[1].host_path, dir.path().join("x/y").display().to_string());
        assert!(dir.path().join("x/y").is_dir());
        let bad: Container = serde_json::from_value(serde_json::json!({ "name": "c", "volumeMounts": [
            { "name": "nope", "mountPath": "/n" }] }))
        .unwrap();
        assert!(mounts(&pod, &bad, &volumes).is_err());
        // A read-only claim makes every mount of it read-only.
        let pod: Pod = serde_json::from_value(serde_json::json!({ "spec": { "containers": [], "volumes": [
            { "name": "data", "persistentVolumeClaim": { "claimName": "c", "readOnly": true } }] } }))
        .unwrap();
        assert!(mounts(&pod, &c, &volumes).unwrap().iter().all(|m| m.readonly));
    }

    #[test]
    fn a_claim_mounts_its_bound_volume_path() {
        let dir = tempfile::tempdir().unwrap();
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "c", "namespace": "ns", "uid": "u1" }, "spec": { "volumeName": "pv" } }))
        .unwrap();
        let pv = |source: serde_json::Value, claim_uid: &str| -> PersistentVolume {
            let mut spec = serde_json::json!({ "claimRef": { "namespace": "ns", "name": "c", "uid": claim_uid } });
            spec.as_object_mut().unwrap().extend(source.as_object().unwrap().clone());
            serde_json::from_value(serde_json::json!({ "metadata": { "name": "pv" }, "spec": spec })).unwrap()
        };
        let local = pv(serde_json::json!({ "local": { "path": dir.path() } }), "u1");
        assert_eq!(persistent_volume_path(&local, &claim).unwrap(), dir.path());
        let created = dir.path().join("made/here");
        let host = pv(serde_json::json!({ "hostPath": { "path": created, "type": "DirectoryOrCreate" } }), "u1");
        assert_eq!(persistent_volume_path(&host, &claim).unwrap(), created);
        assert!(created.is_dir());
        let missing = pv(serde_json::json!({ "hostPath": { "path": dir.path().join("nope") } }), "u1");
        assert!(persistent_volume_path(&missing, &claim).unwrap_err().contains("does not exist"));
        let other = pv(serde_json::json!({ "local": { "path": dir.path() } }), "u2");
        assert!(persistent_volume_path(&other, &claim).unwrap_err().contains("different claim"));
        let nfs = pv(serde_json::json!({ "nfs": { "server": "x", "path": "/" } }), "u1");
        assert!(persistent_volume_path(&nfs, &claim).unwrap_err().contains("only hostPath and local"));
    }

    #[test]
    fn updates_switch_the_data_link_and_drop_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("vol");
        let files = |pairs: &[(&str, &str)]| -> Files {
            pairs.iter().map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644))).collect()
        };
        assert!(write_atomic(&v, &files(&[("a", "1"), ("d/b", "2")])).unwrap());
        let first = std::fs::read_link(v.join("..data")).unwrap();
        assert_eq!(std::fs::read_link(v.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(std::fs::read_to_string(v.join("d/b")).unwrap(), "2");
        // The same contents write nothing.
        assert!(!write_atomic(&v, &files(&[("a", "1"), ("d/b", "2")])).unwrap());
        assert_eq!(std::fs::read_link(v.join("..data")).unwrap(), first);
        // A change: new data directory, the old one gone, a removed key's link gone.
        assert!(write_atomic(&v, &files(&[("a", "one"), ("c", "3")])).unwrap());
        assert_ne!(std::fs::read_link(v.join("..data")).unwrap(), first);
        assert!(!v.join(&first).exists());
        assert_eq!(std::fs::read_to_string(v.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(v.join("c")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(v.join("d")).is_err());
        // Files an older agent wrote in place are replaced by links.
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("a"), "stale").unwrap();
        write_atomic(&old, &files(&[("a", "fresh")])).unwrap();
        assert_eq!(std::fs::read_to_string(old.join("a")).unwrap(), "fresh");
    }

    #[test]
    fn downward_api_items_read_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u1", "labels": { "b": "2", "a": "x\"y" } },
            "spec": { "containers": [{ "name": "c", "resources": { "limits": { "memory": "64Mi", "cpu": "250m" } } }] },
            "status": { "podIP": "10.0.0.9" },
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
            { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" }, "mode": 0o400 },
            { "path": "ip", "fieldRef": { "fieldPath": "status.podIP" } },
            { "path": "mem", "resourceFieldRef": { "containerName": "c", "resource": "limits.memory", "divisor": "1Mi" } },
            { "path": "cpu", "resourceFieldRef": { "containerName": "c", "resource": "limits.cpu", "divisor": "1m" } },
            { "path": "cpus", "resourceFieldRef": { "containerName": "c", "resource": "limits.cpu" } },
        ]))
        .unwrap();
        let mut out = Files::new();
        downward_files(&pod, Ipv4Addr::LOCALHOST, &items, 0o644, &mut out).unwrap();
        let text = |k: &str| String::from_utf8(out[k].0.clone()).unwrap();
        assert_eq!(text("name"), "p");
        assert_eq!(text("labels"), "a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(out["labels"].1, 0o400);
        assert_eq!(text("ip"), "10.0.0.9");
        assert_eq!(text("mem"), "64");
        assert_eq!(text("cpu"), "250");
        assert_eq!(text("cpus"), "1");
        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(
            serde_json::json!([{ "path": "../x", "fieldRef": { "fieldPath": "metadata.name" } }]),
        )
        .unwrap();
        assert!(downward_files(&pod, Ipv4Addr::LOCALHOST, &bad, 0o644, &mut Files::new()).is_err());
    }

    #[test]
    fn empty_dir_usage_is_measured_against_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({ "metadata": { "uid": "u1" },
            "spec": { "containers": [], "volumes": [
                { "name": "free", "emptyDir": {} },
                { "name": "small", "emptyDir": { "sizeLimit": "64Ki" } },
            ] } }))
        .unwrap();
        let base = pod_volumes_dir(dir.path(), "u1");
        std::fs::create_dir_all(base.join("free")).unwrap();
        std::fs::create_dir_all(base.join("small/sub")).unwrap();
        std::fs::write(base.join("free/big"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(base.join("small/sub/a"), vec![1u8; 16 << 10]).unwrap();
        assert_eq!(empty_dir_over_limit(dir.path(), &pod), None);
        assert!(disk_usage(&base.join("small")) >= 16 << 10);
        std::fs::write(base.join("small/sub/b"), vec![1u8; 100 << 10]).unwrap();
        assert_eq!(
            empty_dir_over_limit(dir.path(), &pod).as_deref(),
            Some("Usage of EmptyDir volume \"small\" exceeds the limit \"64Ki\".")
        );
        assert_eq!(quantity_bytes("1Mi"), Ok(1 << 20));
        assert_eq!(quantity_bytes("1k"), Ok(1000));
        assert!(quantity_bytes("lots").is_err());
    }

    #[tokio::test]
    async fn failures_are_gathered_in_the_kubelets_words() {
        // No API server: the claim cannot be fetched.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let sources = Sources::new(client.clone());
        let data = tempfile::tempdir().unwrap();
        let missing = data.path().join("missing");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u1" },
            "spec": { "containers": [{ "name": "c" }], "volumes": [
                { "name": "scratch", "emptyDir": {} },
                { "name": "host", "hostPath": { "path": missing, "type": "Directory" } },
                { "name": "data", "persistentVolumeClaim": { "claimName": "claim" } },
            ] },
        }))
        .unwrap();
        let mut state = VolumeState::default();
        let failure = prepare(&client, &sources, data.path(), &pod, Ipv4Addr::LOCALHOST, &mut state).await.unwrap_err();
        assert_eq!(failure.unmounted, ["data", "host"]);
        assert!(failure.unprocessed);
        let host = format!(
            "MountVolume.SetUp failed for volume \"host\" : hostPath type check failed: {} is not a directory",
            missing.display()
        );
        assert_eq!(failure.messages[0], host);
        let claim = "Unable to attach or mount volumes: unmounted volumes=[data host], unattached volumes=[], failed \
                     to process volumes=[data]: error processing PVC ns/claim: failed to fetch PVC from API server: ";
        assert!(failure.messages[1].starts_with(claim), "{:?}", failure.messages);
        assert_eq!(failure.messages.len(), 2);
        // The emptyDir was made all the same.
        assert!(pod_volumes_dir(data.path(), "u1").join("scratch").is_dir());
        assert_eq!(
            failure.timed_out(),
            "Unable to attach or mount volumes: unmounted volumes=[data host], unattached volumes=[], failed to \
             process volumes=[]: timed out waiting for the condition"
        );
    }
}
