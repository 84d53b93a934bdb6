//! ControllerRevisions for StatefulSets and DaemonSets (Kubernetes' `controller/history`):
//! each distinct pod template is stored once as `{"spec":{"template":{..,"$patch":"replace"}}}`
//! (what `kubectl rollout undo` applies back), named `<owner>-<hash>`, numbered in order;
//! and the template hash shared with Deployments.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::pods;

/// The pod label naming the revision a pod was made from.
pub(crate) const HASH_LABEL: &str = "controller-revision-hash";

/// `value` with nulls, `{}` and `[]` dropped: Kubernetes' Go types do not tell an empty struct
/// from a missing one (`resources: {}`), so neither may a comparison or a hash.
pub(crate) fn prune(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> =
                map.into_iter().filter_map(|(k, v)| prune(v).map(|v| (k, v))).collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().map(|v| prune(v).unwrap_or(Value::Null)).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        other => Some(other),
    }
}

/// FNV-1a 32 of `bytes` (and the collision count), its decimal form encoded in Kubernetes'
/// vowel-free alphabet (as `controller.ComputeHash` and `rand.SafeEncodeString`).
pub(crate) fn hash(bytes: &[u8], collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 0x811c_9dc5;
    let extra = collision_count.map(i32::to_le_bytes);
    for b in bytes.iter().chain(extra.iter().flatten()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string().bytes().map(|d| ALPHANUMS[usize::from(d) % ALPHANUMS.len()] as char).collect()
}

/// A template without the revision label, as compared and hashed.
fn comparable(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    prune(serde_json::to_value(t).unwrap_or_default()).unwrap_or_default()
}

/// The revision data for a template.
pub(crate) fn data_for(template: &PodTemplateSpec) -> Value {
    let mut t = comparable(template);
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": t } })
}

/// The template a revision holds.
pub(crate) fn template_of(cr: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = cr.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Whether `cr` holds `template`.
pub(crate) fn holds(cr: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(cr).is_some_and(|t| comparable(&t) == comparable(template))
}

/// Revisions to delete beyond `limit`: the oldest, never `keep` (current, update, in use).
pub(crate) fn history_to_delete(revisions: &[ControllerRevision], keep: &[&str], limit: i32) -> Vec<String> {
    let mut old: Vec<&ControllerRevision> =
        revisions.iter().filter(|cr| !keep.contains(&cr.metadata.name.as_deref().unwrap_or_default())).collect();
    let limit = limit.max(0) as usize;
    if old.len() <= limit {
        return vec![];
    }
    old.sort_by_key(|cr| cr.revision);
    old.iter().take(old.len() - limit).filter_map(|cr| cr.metadata.name.clone()).collect()
}

/// The revisions `owner` controls, in revision order.
pub(crate) async fn list(api: &Api<ControllerRevision>, owner: &ObjectMeta) -> crate::Result<Vec<ControllerRevision>> {
    let mut owned: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|cr| pods::controller_ref(&cr.metadata).map(|r| r.uid.as_str()) == owner.uid.as_deref())
        .collect();
    owned.sort_by_key(|cr| cr.revision);
    Ok(owned)
}

/// The revision for `template`: an existing equal one (renumbered as the newest if it is
/// not), or a new one. On a name collision with a different template the collision count
/// goes up and the caller retries.
pub(crate) async fn ensure(
    api: &Api<ControllerRevision>,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
    template: &PodTemplateSpec,
    revisions: &[ControllerRevision],
    collision_count: Option<i32>,
) -> crate::Result<Result<ControllerRevision, i32>> {
    let next = revisions.iter().map(|cr| cr.revision).max().unwrap_or(0) + 1;
    if let Some(existing) = revisions.iter().rev().find(|cr| holds(cr, template)) {
        if existing.revision + 1 == next {
            return Ok(Ok(existing.clone()));
        }
        let mut renumbered = existing.clone();
        renumbered.revision = next;
        return Ok(Ok(api.replace(&existing.name_any(), &PostParams::default(), &renumbered).await?));
    }
    let data = data_for(template);
    let name = format!("{}-{}", owner.name, hash(&serde_json::to_vec(&data).unwrap_or_default(), collision_count));
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision: next,
    };
    match api.create(&PostParams::default(), &cr).await {
        Ok(created) => Ok(Ok(created)),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await?;
            if holds(&existing, template) { Ok(Ok(existing)) } else { Ok(Err(collision_count.unwrap_or(0) + 1)) }
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the named revisions (missing ones are fine).
pub(crate) async fn delete(api: &Api<ControllerRevision>, names: Vec<String>) -> crate::Result<()> {
    for name in names {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
