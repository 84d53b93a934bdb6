//! Pod volumes and the containers' volume mounts: exactly one source per volume, what
//! each source requires, file modes and projected paths, and mount paths, sub-paths and
//! propagation, with the paths and messages Kubernetes' validation uses.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::pod::{array, text};
use super::{Ctx, duplicate, is_dns1123_label, is_dns1123_subdomain, parse_quantity, quote};
use crate::field_error::FieldError;

/// The message for a file mode outside 0..=0777.
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Every volume source in the order Kubernetes checks them, with the path its "more than
/// one volume type" error names (Kubernetes' own spelling, typos included: clients match
/// on these paths).
const SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// The keys of every volume source a volume may name (exactly one must be set).
pub(crate) fn volume_source_keys() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|(key, _)| *key)
}

/// Sources whose only rules are required string fields: (source, path segment Kubernetes
/// reports them under, required fields).
const REQUIRED_FIELDS: &[(&str, &str, &[&str])] = &[
    ("gcePersistentDisk", "persistentDisk", &["pdName"]),
    ("awsElasticBlockStore", "awsElasticBlockStore", &["volumeID"]),
    ("glusterfs", "glusterfs", &["endpoints", "path"]),
    ("rbd", "rbd", &["monitors", "image"]),
    ("cinder", "cinder", &["volumeID"]),
    ("cephfs", "cephfs", &["monitors"]),
    ("quobyte", "quobyte", &["registry", "volume"]),
    ("flexVolume", "flexVolume", &["driver"]),
    ("azureFile", "azureFile", &["secretName", "shareName"]),
    ("azureDisk", "azureDisk", &["diskName", "diskURI"]),
    ("vsphereVolume", "vsphereVolume", &["volumePath"]),
    ("photonPersistentDisk", "photonPersistentDisk", &["pdID"]),
    ("portworxVolume", "portworxVolume", &["volumeID"]),
    ("scaleIO", "scaleIO", &["gateway", "system", "volumeName"]),
    ("storageos", "storageos", &["volumeName"]),
    ("iscsi", "iscsi", &["targetPortal", "iqn"]),
    ("persistentVolumeClaim", "persistentVolumeClaim", &["claimName"]),
    ("gitRepo", "gitRepo", &["repository"]),
    ("ephemeral", "ephemeral", &["volumeClaimTemplate"]),
];

const HOST_PATH_TYPES: &[&str] =
    &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];

/// The downward API fields a volume file may project.
const VOLUME_FIELD_PATHS: &[&str] =
    &["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];

/// Validates `spec.volumes`; returns the valid volumes by name with their source key (a
/// mount of an invalid volume is then reported as not found, as Kubernetes does).
pub(super) fn validate_volumes(ctx: &mut Ctx<'_>, spec: &Value, path: &str) -> HashMap<String, &'static str> {
    let mut valid = HashMap::new();
    for (i, v) in array(spec, "volumes").iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        let mut errs = Vec::new();
        let source = volume_source(&mut Ctx { errs: &mut errs }, v, &vpath);
        let name = text(v, "name");
        let mut vctx = Ctx { errs: &mut errs };
        if name.is_empty() {
            vctx.push(FieldError::required(format!("{vpath}.name"), ""));
        } else {
            vctx.check_str(&format!("{vpath}.name"), name, is_dns1123_label);
        }
        // Only valid volumes count as taken names, as in Kubernetes.
        if valid.contains_key(name) {
            vctx.push(duplicate(format!("{vpath}.name"), name));
        }
        match source {
            Some(s) if errs.is_empty() => {
                valid.insert(name.to_string(), s);
            }
            _ => ctx.errs.extend(errs),
        }
    }
    valid
}

/// Checks one volume's source; returns the key of the (first) source it names.
fn volume_source(ctx: &mut Ctx<'_>, v: &Value, vpath: &str) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for (key, error_name) in SOURCES {
        let Some(src) = v.get(*key).filter(|s| !s.is_null()) else {
            continue;
        };
        if found.is_some() {
            ctx.push(FieldError::forbidden(format!("{vpath}.{error_name}"), "may not specify more than 1 volume type"));
            continue;
        }
        found = Some(key);
        source_rules(ctx, key, src, &format!("{vpath}.{key}"));
    }
    if found.is_none() {
        ctx.push(FieldError::required(vpath, "must specify a volume type"));
    }
    found
}

/// The rules of one source kind.
fn source_rules(ctx: &mut Ctx<'_>, key: &str, src: &Value, spath: &str) {
    if let Some((_, segment, fields)) = REQUIRED_FIELDS.iter().find(|(k, _, _)| *k == key) {
        let base = spath.rsplit_once('.').map_or(spath, |(b, _)| b);
        for f in *fields {
            if is_empty(src.get(*f)) {
                ctx.push(FieldError::required(format!("{base}.{segment}.{f}"), ""));
            }
        }
    }
    match key {
        "emptyDir" => {
            let negative = match src.get("sizeLimit") {
                Some(Value::String(q)) => parse_quantity(q).is_some_and(|q| q < 0.0),
                Some(Value::Number(n)) => n.as_f64().is_some_and(|q| q < 0.0),
                _ => false,
            };
            if negative {
                ctx.push(FieldError::forbidden(
                    format!("{spath}.sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => {
            let p = text(src, "path");
            if p.is_empty() {
                ctx.push(FieldError::required(format!("{spath}.path"), ""));
                return;
            }
            no_backsteps(ctx, p, &format!("{spath}.path"));
            ctx.one_of(&format!("{spath}.type"), src.get("type"), HOST_PATH_TYPES);
        }
        "gitRepo" => local_descending_path(ctx, text(src, "directory"), &format!("{spath}.directory")),
        "nfs" => {
            for f in ["server", "path"] {
                if text(src, f).is_empty() {
                    ctx.push(FieldError::required(format!("{spath}.{f}"), ""));
                }
            }
            let p = text(src, "path");
            if !p.starts_with('/') {
                ctx.push(FieldError::invalid(format!("{spath}.path"), quote(p), "must be an absolute path"));
            }
        }
        "secret" => {
            if text(src, "secretName").is_empty() {
                ctx.push(FieldError::required(format!("{spath}.secretName"), ""));
            }
            file_mode(ctx, src, "defaultMode", spath);
            key_paths(ctx, src, spath, None);
        }
        "configMap" => {
            if text(src, "name").is_empty() {
                ctx.push(FieldError::required(format!("{spath}.name"), ""));
            }
            file_mode(ctx, src, "defaultMode", spath);
            key_paths(ctx, src, spath, None);
        }
        "downwardAPI" => {
            file_mode(ctx, src, "defaultMode", spath);
            for file in array(src, "items") {
                downward_api_file(ctx, file, spath);
            }
        }
        "projected" => {
            file_mode(ctx, src, "defaultMode", spath);
            projection_sources(ctx, src, spath);
        }
        "csi" => {
            let driver = text(src, "driver");
            let dpath = format!("{spath}.driver");
            if driver.is_empty() {
                ctx.push(FieldError::required(&dpath, ""));
            }
            if driver.len() > 63 {
                ctx.push(FieldError::new(
                    crate::field_error::FieldErrorKind::TooLong,
                    &dpath,
                    "may not be more than 63 bytes",
                ));
            }
            for msg in is_dns1123_subdomain(&driver.to_lowercase()) {
                ctx.push(FieldError::invalid(&dpath, quote(driver), msg));
            }
        }
        _ => {}
    }
}

/// Absent, null, an empty string or an empty list.
fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// A file mode at `obj[key]` must be within 0..=0777.
fn file_mode(ctx: &mut Ctx<'_>, obj: &Value, key: &str, path: &str) {
    if let Some(mode) = obj.get(key).and_then(Value::as_i64)
        && !(0..=0o777).contains(&mode)
    {
        ctx.push(FieldError::invalid(format!("{path}.{key}"), mode, FILE_MODE_ERROR));
    }
}

/// The `items` of a secret or configMap source (`key`, relative `path`, `mode`); with
/// `seen`, paths must also be unique across a projected volume's sources.
fn key_paths(ctx: &mut Ctx<'_>, src: &Value, spath: &str, mut seen: Option<(&mut HashSet<String>, &str)>) {
    for (i, item) in array(src, "items").iter().enumerate() {
        let ipath = format!("{spath}.items[{i}]");
        if text(item, "key").is_empty() {
            ctx.push(FieldError::required(format!("{ipath}.key"), ""));
        }
        let p = text(item, "path");
        if p.is_empty() {
            ctx.push(FieldError::required(format!("{ipath}.path"), ""));
        }
        local_non_reserved_path(ctx, p, &format!("{ipath}.path"));
        file_mode(ctx, item, "mode", &ipath);
        if let Some((paths, projected)) = seen.as_mut()
            && !p.is_empty()
            && !paths.insert(p.to_string())
        {
            ctx.push(FieldError::invalid(*projected, quote(text(src, "name")), "conflicting duplicate paths"));
        }
    }
}

/// One file of a downward API volume (or projection), reported under `path`.
fn downward_api_file(ctx: &mut Ctx<'_>, file: &Value, path: &str) {
    let p = text(file, "path");
    if p.is_empty() {
        ctx.push(FieldError::required(format!("{path}.path"), ""));
    }
    local_non_reserved_path(ctx, p, &format!("{path}.path"));
    let field_ref = file.get("fieldRef").filter(|f| !f.is_null());
    let resource_ref = file.get("resourceFieldRef").filter(|f| !f.is_null());
    match (field_ref, resource_ref) {
        (Some(f), other) => {
            super::env::object_field_selector(ctx, f, VOLUME_FIELD_PATHS, &format!("{path}.fieldRef"));
            if other.is_some() {
                ctx.push(FieldError::invalid(
                    path,
                    quote("resource"),
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(r)) => super::env::resource_field_selector(ctx, r, &format!("{path}.resourceFieldRef"), true),
        (None, None) => ctx.push(FieldError::required(path, "one of fieldRef and resourceFieldRef is required")),
    }
    file_mode(ctx, file, "mode", path);
}

/// The sources of a projected volume: one kind each, paths unique across them.
fn projection_sources(ctx: &mut Ctx<'_>, src: &Value, spath: &str) {
    let mut paths = HashSet::new();
    for (i, source) in array(src, "sources").iter().enumerate() {
        let srcpath = format!("{spath}.sources[{i}]");
        let mut kinds = 0;
        for key in ["secret", "configMap"] {
            let Some(s) = source.get(key).filter(|s| !s.is_null()) else {
                continue;
            };
            kinds += 1;
            let ppath = format!("{srcpath}.{key}");
            if text(s, "name").is_empty() {
                ctx.push(FieldError::required(format!("{ppath}.name"), ""));
            }
            key_paths(ctx, s, &ppath, Some((&mut paths, spath)));
        }
        if let Some(d) = source.get("downwardAPI").filter(|s| !s.is_null()) {
            kinds += 1;
            let ppath = format!("{srcpath}.downwardAPI");
            for file in array(d, "items") {
                downward_api_file(ctx, file, &ppath);
                let p = text(file, "path");
                if !p.is_empty() && !paths.insert(p.to_string()) {
                    ctx.push(FieldError::invalid(spath, quote(p), "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = source.get("serviceAccountToken").filter(|s| !s.is_null()) {
            kinds += 1;
            let ppath = format!("{srcpath}.serviceAccountToken");
            let seconds = t.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(3600);
            if seconds < 600 {
                ctx.push(FieldError::invalid(
                    format!("{ppath}.expirationSeconds"),
                    seconds,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if seconds > 1 << 32 {
                ctx.push(FieldError::invalid(
                    format!("{ppath}.expirationSeconds"),
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let p = text(t, "path");
            if p.is_empty() {
                ctx.push(FieldError::required(format!("{spath}.path"), ""));
            } else {
                local_non_reserved_path(ctx, p, &format!("{spath}.path"));
            }
        }
        if source.get("clusterTrustBundle").is_some_and(|s| !s.is_null()) {
            kinds += 1;
        }
        if kinds > 1 {
            ctx.push(FieldError::forbidden(srcpath, "may not specify more than 1 volume type per source"));
        }
    }
}

/// Not absolute and no `..` element.
fn local_descending_path(ctx: &mut Ctx<'_>, p: &str, path: &str) {
    if p.starts_with('/') {
        ctx.push(FieldError::invalid(path, quote(p), "must be a relative path"));
    }
    no_backsteps(ctx, p, path);
}

/// Not absolute, no `..` element, and not starting with `..`.
fn local_non_reserved_path(ctx: &mut Ctx<'_>, p: &str, path: &str) {
    local_descending_path(ctx, p, path);
    if p.starts_with("..") && !p.starts_with("../") {
        ctx.push(FieldError::invalid(path, quote(p), "must not start with '..'"));
    }
}

/// No `..` path element.
fn no_backsteps(ctx: &mut Ctx<'_>, p: &str, path: &str) {
    if p.split('/').any(|part| part == "..") {
        ctx.push(FieldError::invalid(path, quote(p), "must not contain '..'"));
    }
}

/// Validates a container's `volumeMounts` against the pod's valid `volumes`.
pub(super) fn validate_mounts(ctx: &mut Ctx<'_>, c: &Value, path: &str, volumes: &HashMap<String, &'static str>) {
    let list_path = format!("{path}.volumeMounts");
    let privileged = c.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true);
    let mut mount_points = HashSet::new();
    for (i, m) in array(c, "volumeMounts").iter().enumerate() {
        let mpath = format!("{list_path}[{i}]");
        let name = text(m, "name");
        if name.is_empty() {
            ctx.push(FieldError::required(format!("{mpath}.name"), ""));
        }
        if !volumes.contains_key(name) {
            ctx.push(FieldError {
                value: Some(quote(name)),
                ..FieldError::new(crate::field_error::FieldErrorKind::NotFound, format!("{mpath}.name"), "")
            });
        }
        let mount_path = text(m, "mountPath");
        if mount_path.is_empty() {
            ctx.push(FieldError::required(format!("{mpath}.mountPath"), ""));
        }
        if !mount_points.insert(mount_path.to_string()) {
            ctx.push(FieldError::invalid(format!("{mpath}.mountPath"), quote(mount_path), "must be unique"));
        }
        let sub_path = text(m, "subPath");
        let sub_path_expr = text(m, "subPathExpr");
        if volumes.get(name) == Some(&"image") {
            for (key, value) in [("subPath", sub_path), ("subPathExpr", sub_path_expr)] {
                if !value.is_empty() {
                    ctx.push(FieldError::invalid(
                        format!("{mpath}.{key}"),
                        quote(value),
                        "not allowed in image volume sources",
                    ));
                }
            }
        }
        // Kubernetes reports sub-path problems under the list's path, not the item's.
        if !sub_path.is_empty() {
            local_descending_path(ctx, sub_path, &format!("{list_path}.subPath"));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                ctx.push(FieldError::invalid(
                    format!("{mpath}.subPathExpr"),
                    quote(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(ctx, sub_path_expr, &format!("{list_path}.subPathExpr"));
        }
        let propagation = m.get("mountPropagation").and_then(Value::as_str);
        if let Some(p) = propagation {
            let ppath = format!("{list_path}.mountPropagation");
            ctx.one_of(&ppath, m.get("mountPropagation"), &["Bidirectional", "HostToContainer", "None"]);
            if p == "Bidirectional" && !privileged {
                ctx.push(FieldError::forbidden(
                    ppath,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = m.get("recursiveReadOnly").and_then(Value::as_str) {
            let rpath = format!("{list_path}.recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if m.get("readOnly").and_then(Value::as_bool) != Some(true) {
                        ctx.push(FieldError::forbidden(&rpath, "may only be specified when readOnly is true"));
                    }
                    if propagation.is_some_and(|p| p != "None") {
                        ctx.push(FieldError::forbidden(
                            &rpath,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => {
                    ctx.push(FieldError::not_supported(rpath, quote(other), &["Disabled", "Enabled", "IfPossible"]))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    fn pod(volumes: Value, mounts: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "image": "x", "volumeMounts": mounts}]}})
    }

    #[test]
    fn sources_need_their_fields() {
        check(
            "/v1/pods",
            pod(
                json!([{"name": "a", "hostPath": {"path": ""}},
                    {"name": "b", "hostPath": {"path": "/x/../etc", "type": "Folder"}},
                    {"name": "c", "secret": {"defaultMode": 512}},
                    {"name": "d", "configMap": {"name": "m", "items": [{"key": "", "path": "/abs"}, {"key": "k", "path": "..x", "mode": -1}]}},
                    {"name": "e", "persistentVolumeClaim": {}},
                    {"name": "f", "nfs": {"server": "s", "path": "rel"}},
                    {"name": "g", "csi": {"driver": "Bad_Driver"}},
                    {"name": "h", "gcePersistentDisk": {}},
                    {"name": "i", "emptyDir": {"sizeLimit": "-1Gi"}},
                    {"name": "j", "ephemeral": {}}]),
                json!([]),
            ),
            None,
            &[
                "spec.volumes[0].hostPath.path: Required value",
                r#"spec.volumes[1].hostPath.path: Invalid value: "/x/../etc": must not contain '..'"#,
                r#"spec.volumes[1].hostPath.type: Unsupported value: "Folder": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
                "spec.volumes[2].secret.secretName: Required value",
                "spec.volumes[2].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[3].configMap.items[0].key: Required value",
                r#"spec.volumes[3].configMap.items[0].path: Invalid value: "/abs": must be a relative path"#,
                r#"spec.volumes[3].configMap.items[1].path: Invalid value: "..x": must not start with '..'"#,
                "spec.volumes[3].configMap.items[1].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
                "spec.volumes[4].persistentVolumeClaim.claimName: Required value",
                r#"spec.volumes[5].nfs.path: Invalid value: "rel": must be an absolute path"#,
                r#"spec.volumes[6].csi.driver: Invalid value: "Bad_Driver": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                "spec.volumes[7].persistentDisk.pdName: Required value",
                "spec.volumes[8].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
                "spec.volumes[9].ephemeral.volumeClaimTemplate: Required value",
            ],
        );
    }

    #[test]
    fn projected_and_downward_api_volumes() {
        check(
            "/v1/pods",
            pod(
                json!([{"name": "a", "projected": {"sources": [
                        {"configMap": {"name": "m", "items": [{"key": "k", "path": "same"}]}},
                        {"secret": {"name": "s", "items": [{"key": "k", "path": "same"}]}},
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 60}},
                        {"configMap": {"name": "m"}, "secret": {"name": "s"}}]}},
                    {"name": "b", "downwardAPI": {"items": [
                        {"path": "name", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                        {"path": "ip", "fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
                        {"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}},
                        {"path": "none"}]}}]),
                json!([]),
            ),
            None,
            &[
                r#"spec.volumes[0].projected: Invalid value: "s": conflicting duplicate paths"#,
                "spec.volumes[0].projected.sources[2].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                "spec.volumes[0].projected.sources[3]: Forbidden: may not specify more than 1 volume type per source",
                r#"spec.volumes[1].downwardAPI.fieldRef.fieldPath: Unsupported value: "status.podIP": supported values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid""#,
                "spec.volumes[1].downwardAPI.resourceFieldRef.containerName: Required value",
                "spec.volumes[1].downwardAPI: Required value: one of fieldRef and resourceFieldRef is required",
            ],
        );
    }

    #[test]
    fn mounts_name_valid_volumes_with_unique_paths() {
        check(
            "/v1/pods",
            pod(
                json!([{"name": "ok", "emptyDir": {}}, {"name": "broken", "secret": {}}]),
                json!([{"name": "ok", "mountPath": "/data"},
                    {"name": "ok", "mountPath": "/data", "subPath": "../up"},
                    {"name": "broken", "mountPath": "/s"},
                    {"name": "ok", "mountPath": "/e", "subPath": "a", "subPathExpr": "$(X)"},
                    {"name": "ok", "mountPath": "/p", "mountPropagation": "Bidirectional"},
                    {"name": "ok", "mountPath": "/r", "recursiveReadOnly": "Enabled"}]),
            ),
            None,
            &[
                "spec.volumes[1].secret.secretName: Required value",
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#,
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "../up": must not contain '..'"#,
                r#"spec.containers[0].volumeMounts[2].name: Not found: "broken""#,
                r#"spec.containers[0].volumeMounts[3].subPathExpr: Invalid value: "$(X)": subPathExpr and subPath are mutually exclusive"#,
                "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
            ],
        );
    }

    #[test]
    fn a_valid_pod_with_every_common_volume_passes() {
        check(
            "/v1/pods",
            pod(
                json!([{"name": "a", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "b", "hostPath": {"path": "/var/log", "type": "Directory"}},
                    {"name": "c", "secret": {"secretName": "s", "defaultMode": 420, "items": [{"key": "k", "path": "dir/k"}]}},
                    {"name": "d", "configMap": {"name": "m"}},
                    {"name": "e", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "f", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
                    {"name": "g", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
                        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
                    {"name": "h", "csi": {"driver": "hostpath.csi.k8s.io"}}]),
                json!([{"name": "a", "mountPath": "/a"}, {"name": "b", "mountPath": "/b", "readOnly": true, "recursiveReadOnly": "IfPossible"},
                    {"name": "c", "mountPath": "/c", "subPath": "dir"}, {"name": "f", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            ),
            None,
            &[],
        );
    }
}
