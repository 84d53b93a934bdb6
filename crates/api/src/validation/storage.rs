//! Validation of PersistentVolumeClaims and PersistentVolumes, as Kubernetes'
//! `ValidatePersistentVolumeClaim(Update)` and `ValidatePersistentVolume(Update)`: the
//! required parts of a new object, and what an update may change (a claim's spec only its
//! storage request, its `volumeAttributesClassName`, a first `volumeName` and a first class;
//! a volume's source, volume mode and node affinity never).

use serde_json::{Map, Value};

use super::{Ctx, is_dns1123_subdomain, parse_quantity};
use crate::field_error::FieldError;

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The keys of a PersistentVolumeSource (one volume type each).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn spec(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&Value::Null)
}

/// A JSON object without its null members (absent and null are the same field).
fn present(v: &Value) -> Map<String, Value> {
    v.as_object()
        .map(|m| m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn storage_at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_str).and_then(parse_quantity)
}

fn access_modes(ctx: &mut Ctx<'_>, spec: &Value, path: &str) {
    let modes: Vec<&str> =
        spec.get("accessModes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if modes.is_empty() {
        ctx.push(FieldError::required(path, "at least 1 access mode is required"));
    }
    for m in &modes {
        ctx.one_of(path, Some(&Value::String((*m).to_string())), ACCESS_MODES);
    }
    if modes.len() > 1 && modes.contains(&"ReadWriteOncePod") {
        ctx.push(FieldError::forbidden(path, "may not use ReadWriteOncePod with other access modes"));
    }
}

/// A claim, created or updated (`old`).
pub(super) fn claim(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let s = spec(obj);
    access_modes(ctx, s, "spec.accessModes");
    match s.pointer("/resources/requests/storage") {
        None | Some(Value::Null) => ctx.push(FieldError::required("spec.resources[storage]", "")),
        Some(q) => {
            let text = q.as_str().unwrap_or_default();
            if parse_quantity(text).is_some_and(|n| n <= 0.0) {
                ctx.push(FieldError::invalid(
                    "spec.resources[storage]",
                    super::quote(text),
                    "must be greater than zero",
                ));
            }
        }
    }
    ctx.one_of("spec.volumeMode", s.get("volumeMode"), VOLUME_MODES);
    if let Some(class) = s.get("storageClassName").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        ctx.check_str("spec.storageClassName", class, is_dns1123_subdomain);
    }
    if let Some(old) = old {
        claim_update(ctx, obj, old);
    }
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// Kubernetes' `ValidatePersistentVolumeClaimUpdate`.
fn claim_update(ctx: &mut Ctx<'_>, new: &Value, old: &Value) {
    let mut new_spec = present(spec(new));
    let mut old_spec = present(spec(old));
    // The binder writes volumeName once.
    if old_spec.get("volumeName").and_then(Value::as_str).is_none_or(str::is_empty) {
        match new_spec.get("volumeName") {
            Some(v) => old_spec.insert("volumeName".into(), v.clone()),
            None => old_spec.remove("volumeName"),
        };
    }
    // A claim without a class may get one once: the default class (retroactively), or the
    // class its beta annotation names.
    let (old_note, new_note) = (annotation(old, CLASS_ANNOTATION), annotation(new, CLASS_ANNOTATION));
    if !old_spec.contains_key("storageClassName")
        && let Some(class) = new_spec.get("storageClassName").and_then(Value::as_str)
        && ((old_note.is_none() && new_note.is_none()) || (old_note == Some(class) && new_note == old_note))
    {
        new_spec.remove("storageClassName");
    }
    if old_note != new_note {
        ctx.immutable(
            new_note.map(|n| Value::String(n.into())).as_ref(),
            old_note.map(|n| Value::String(n.into())).as_ref(),
            &format!("metadata.annotations[{CLASS_ANNOTATION}]"),
        );
    }
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        let old_storage = old.pointer("/spec/resources/requests/storage").cloned();
        if let Some(requests) =
            new_spec.get_mut("resources").and_then(|r| r.get_mut("requests")).and_then(Value::as_object_mut)
        {
            match old_storage {
                Some(s) => requests.insert("storage".into(), s),
                None => requests.remove("storage"),
            };
        }
    }
    match old_spec.get("volumeAttributesClassName") {
        Some(v) => new_spec.insert("volumeAttributesClassName".into(), v.clone()),
        None => new_spec.remove("volumeAttributesClassName"),
    };
    if new_spec != old_spec {
        ctx.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    // Shrinking is allowed only back towards a failed expansion (RecoverVolumeExpansionFailure,
    // on by default in 1.33): never to status.capacity or below.
    let (old_size, new_size) =
        (storage_at(old, "/spec/resources/requests/storage"), storage_at(new, "/spec/resources/requests/storage"));
    let status_size = storage_at(old, "/status/capacity/storage").unwrap_or(0.0);
    if let (Some(o), Some(n)) = (old_size, new_size)
        && n < o
        && n <= status_size
    {
        ctx.push(FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        ));
    }
}

/// A volume, created or updated (`old`).
pub(super) fn volume(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let s = spec(obj);
    let sources: Vec<&str> = PV_SOURCES.iter().copied().filter(|k| s.get(*k).is_some_and(|v| !v.is_null())).collect();
    match sources.len() {
        0 => ctx.push(FieldError::required("spec", "must specify a volume type")),
        1 => {}
        _ => ctx.push(FieldError::forbidden(format!("spec.{}", sources[1]), "may not specify more than 1 volume type")),
    }
    access_modes(ctx, s, "spec.accessModes");
    if s.get("capacity").and_then(Value::as_object).is_none_or(|c| c.is_empty()) {
        ctx.push(FieldError::required("spec.capacity", ""));
    }
    ctx.one_of("spec.persistentVolumeReclaimPolicy", s.get("persistentVolumeReclaimPolicy"), RECLAIM_POLICIES);
    ctx.one_of("spec.volumeMode", s.get("volumeMode"), VOLUME_MODES);
    let Some(old) = old else { return };
    let old_s = spec(old);
    let source = |s: &Value| -> Vec<(&str, Value)> {
        PV_SOURCES.iter().filter_map(|k| s.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v.clone()))).collect()
    };
    if source(s) != source(old_s) {
        ctx.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    ctx.immutable(s.get("volumeMode"), old_s.get("volumeMode"), "volumeMode");
    if old_s.get("nodeAffinity").is_some_and(|a| !a.is_null()) {
        ctx.immutable(s.get("nodeAffinity"), old_s.get("nodeAffinity"), "nodeAffinity");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    const PVC: &str = "/v1/persistentvolumeclaims";
    const PV: &str = "/v1/persistentvolumes";
    const IMMUTABLE: &str = "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

    fn claim(spec: Value, phase: Option<&str>) -> Value {
        let mut c = json!({ "metadata": { "name": "data", "namespace": "default" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } },
                      "volumeMode": "Filesystem", "storageClassName": "fast" } });
        for (k, v) in spec.as_object().unwrap() {
            c["spec"][k] = v.clone();
        }
        if let Some(p) = phase {
            c["status"] = json!({ "phase": p, "capacity": { "storage": "1Gi" } });
        }
        c
    }

    #[test]
    fn new_claims() {
        check(PVC, claim(json!({}), None), None, &[]);
        check(
            PVC,
            claim(json!({ "accessModes": [], "resources": {} }), None),
            None,
            &[
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ],
        );
        check(
            PVC,
            claim(
                json!({ "accessModes": ["ReadWriteOncePod", "Sometimes"], "resources": { "requests": { "storage": "0" } }, "volumeMode": "Disk" }),
                None,
            ),
            None,
            &[
                r#"spec.accessModes: Unsupported value: "Sometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#,
                "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
                r#"spec.resources[storage]: Invalid value: "0": must be greater than zero"#,
                r#"spec.volumeMode: Unsupported value: "Disk": supported values: "Block", "Filesystem""#,
            ],
        );
    }

    #[test]
    fn claim_updates() {
        let bound = |spec: Value| claim(spec, Some("Bound"));
        let pending = |spec: Value| claim(spec, Some("Pending"));
        let cases: Vec<(&str, Value, Value, &[&str])> = vec![
            (
                "a bound claim grows",
                bound(json!({ "resources": { "requests": { "storage": "2Gi" } } })),
                bound(json!({})),
                &[],
            ),
            (
                "labels change freely",
                {
                    let mut c = bound(json!({}));
                    c["metadata"]["labels"] = json!({ "a": "b" });
                    c
                },
                bound(json!({})),
                &[],
            ),
            (
                "the volume attributes class changes",
                bound(json!({ "volumeAttributesClassName": "gold" })),
                bound(json!({})),
                &[],
            ),
            ("the binder sets volumeName once", pending(json!({ "volumeName": "pv-1" })), pending(json!({})), &[]),
            (
                "a claim without a class gets one",
                pending(json!({})),
                {
                    let mut c = pending(json!({}));
                    c["spec"].as_object_mut().unwrap().remove("storageClassName");
                    c
                },
                &[],
            ),
            (
                "the access modes of a bound claim",
                bound(json!({ "accessModes": ["ReadWriteMany"] })),
                bound(json!({})),
                &[IMMUTABLE],
            ),
            ("its class", bound(json!({ "storageClassName": "slow" })), bound(json!({})), &[IMMUTABLE]),
            (
                "its volume, once set",
                bound(json!({ "volumeName": "pv-2" })),
                bound(json!({ "volumeName": "pv-1" })),
                &[IMMUTABLE],
            ),
            (
                "its selector",
                bound(json!({ "selector": { "matchLabels": { "a": "b" } } })),
                bound(json!({})),
                &[IMMUTABLE],
            ),
            (
                "the size of a claim not bound",
                pending(json!({ "resources": { "requests": { "storage": "2Gi" } } })),
                pending(json!({})),
                &[IMMUTABLE],
            ),
            (
                "a bound claim shrinks",
                bound(json!({ "resources": { "requests": { "storage": "512Mi" } } })),
                bound(json!({})),
                &["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"],
            ),
        ];
        for (what, new, old, want) in cases {
            let parts: Vec<&str> = PVC.split('/').collect();
            let res = crate::registry::find_builtin(parts[0], parts[1], parts[2]).unwrap();
            let errs: Vec<String> =
                crate::validation::validate(res, &new, Some(&old)).iter().map(ToString::to_string).collect();
            assert_eq!(errs, want, "{what}");
        }
    }

    fn volume(spec: Value) -> Value {
        let mut v = json!({ "metadata": { "name": "pv-1" },
            "spec": { "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" }, "hostPath": { "path": "/a" } } });
        for (k, val) in spec.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        v
    }

    #[test]
    fn volumes() {
        check(PV, volume(json!({})), None, &[]);
        check(
            PV,
            json!({ "metadata": { "name": "pv-1" }, "spec": {} }),
            None,
            &[
                "spec: Required value: must specify a volume type",
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.capacity: Required value",
            ],
        );
        check(
            PV,
            volume(json!({ "nfs": { "server": "a", "path": "/" } })),
            None,
            &["spec.nfs: Forbidden: may not specify more than 1 volume type"],
        );
        // Updates: the capacity and claimRef may change, the source may not.
        check(
            PV,
            volume(json!({ "capacity": { "storage": "2Gi" }, "claimRef": { "name": "c" } })),
            Some(volume(json!({}))),
            &[],
        );
        check(
            PV,
            volume(json!({ "hostPath": { "path": "/b" } })),
            Some(volume(json!({}))),
            &["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"],
        );
        check(
            PV,
            volume(json!({ "volumeMode": "Block" })),
            Some(volume(json!({ "volumeMode": "Filesystem" }))),
            &[r#"volumeMode: Invalid value: "Block": field is immutable"#],
        );
        let affinity = json!({ "required": { "nodeSelectorTerms": [] } });
        check(PV, volume(json!({ "nodeAffinity": affinity })), Some(volume(json!({}))), &[]);
    }
}
