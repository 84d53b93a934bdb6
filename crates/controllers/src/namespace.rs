//! Namespace controller: empties a Terminating namespace, reports how that goes in the
//! namespace's conditions, then removes the `kubernetes` finalizer (through the
//! `namespaces/finalize` subresource) so that the API server removes the namespace.
//!
//! As Kubernetes' namespaced-resources deleter: every namespaced resource that supports
//! list and delete (custom resources included, found by discovery) is deleted with its
//! collection deletion (or one by one), honouring graceful deletion and finalizers; what
//! remains is counted into `NamespaceContentRemaining` and `NamespaceFinalizersRemaining`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::discovery::Resources;

/// The finalizer this controller owns.
const FINALIZER: &str = "kubernetes";

/// How long a discovery result is reused between passes.
const DISCOVERY_TTL: Duration = Duration::from_secs(5);

struct Ctx {
    client: kube::Client,
    discovery: Mutex<Option<(Instant, Arc<Resources>)>>,
}

pub(crate) async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client, discovery: Mutex::new(None) });
    let (reconcile, error_policy) = crate::backoff::wrap("namespace", reconcile);
    Controller::new(namespaces, watcher::Config::default())
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// What one deletion pass found.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Pass {
    /// Discovery failed (the message).
    pub(crate) discovery_failure: Option<String>,
    /// Resources whose content could not be deleted (`resource.group: error`).
    pub(crate) content_failures: Vec<String>,
    /// Remaining objects per `resource.group`.
    pub(crate) remaining: BTreeMap<String, usize>,
    /// Remaining objects per finalizer they carry.
    pub(crate) finalizers: BTreeMap<String, usize>,
}

impl Pass {
    /// True when the namespace is empty and nothing failed: it may be finalized.
    pub(crate) fn done(&self) -> bool {
        self.discovery_failure.is_none() && self.content_failures.is_empty() && self.remaining.is_empty()
    }
}

/// The namespace's deletion conditions after `pass`, as Kubernetes words them (each type
/// always present; `True` means the problem is there).
pub(crate) fn conditions(pass: &Pass, now: &Time) -> Vec<NamespaceCondition> {
    let cond = |type_: &str, failed: Option<(&str, String)>, ok: (&str, &str)| NamespaceCondition {
        type_: type_.to_string(),
        status: if failed.is_some() { "True" } else { "False" }.to_string(),
        reason: Some(failed.as_ref().map(|f| f.0).unwrap_or(ok.0).to_string()),
        message: Some(failed.map(|f| f.1).unwrap_or_else(|| ok.1.to_string())),
        last_transition_time: Some(now.clone()),
    };
    let counted = |m: &BTreeMap<String, usize>, fmt: &dyn Fn(&str, usize) -> String| {
        m.iter().map(|(k, n)| fmt(k, *n)).collect::<Vec<_>>().join(", ")
    };
    vec![
        cond(
            "NamespaceDeletionDiscoveryFailure",
            pass.discovery_failure
                .as_ref()
                .map(|e| ("DiscoveryFailed", format!("Discovery failed for some groups: {e}"))),
            ("ResourcesDiscovered", "All resources successfully discovered"),
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        ),
        cond(
            "NamespaceDeletionContentFailure",
            (!pass.content_failures.is_empty()).then(|| {
                (
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        pass.content_failures.len(),
                        pass.content_failures.join(", ")
                    ),
                )
            }),
            ("ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
        ),
        cond(
            "NamespaceContentRemaining",
            (!pass.remaining.is_empty()).then(|| {
                let list = counted(&pass.remaining, &|r, n| format!("{r} has {n} resource instances"));
                ("SomeResourcesRemain", format!("Some resources are remaining: {list}"))
            }),
            ("ContentRemoved", "All content successfully removed"),
        ),
        cond(
            "NamespaceFinalizersRemaining",
            (!pass.finalizers.is_empty()).then(|| {
                let list = counted(&pass.finalizers, &|f, n| format!("{f} in {n} resource instances"));
                ("SomeFinalizersRemain", format!("Some content in the namespace has finalizers remaining: {list}"))
            }),
            ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
        ),
    ]
}

/// `old` conditions carried over where their status is unchanged (transition times kept).
fn merge_conditions(old: &[NamespaceCondition], new: Vec<NamespaceCondition>) -> Vec<NamespaceCondition> {
    new.into_iter()
        .map(|c| match old.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
            Some(o) if o.reason == c.reason && o.message == c.message => o.clone(),
            Some(o) => NamespaceCondition { last_transition_time: o.last_transition_time.clone(), ..c },
            None => c,
        })
        .collect()
}

impl Ctx {
    async fn resources(&self) -> Result<Arc<Resources>, kube::Error> {
        if let Some((at, r)) = self.discovery.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(r.clone());
        }
        let r = Arc::new(Resources::discover(self.client.clone()).await?);
        *self.discovery.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), r.clone()));
        Ok(r)
    }

    /// Deletes what is left in `namespace` and counts what remains.
    async fn delete_content(&self, namespace: &str) -> Pass {
        let mut pass = Pass::default();
        let resources = match self.resources().await {
            Ok(r) => r,
            Err(e) => {
                pass.discovery_failure = Some(e.to_string());
                return pass;
            }
        };
        for res in resources.all().into_iter().filter(|r| r.namespaced && r.supports(&["list", "delete"])) {
            let label = format!("{}.{}", res.api.plural, res.api.group);
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &res.api);
            let deleted = if res.supports(&["deletecollection"]) {
                api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.map(|_| ())
            } else {
                delete_each(&api).await
            };
            if let Err(e) = deleted {
                pass.content_failures.push(format!("{label}: {e}"));
            }
            match api.list_metadata(&ListParams::default()).await {
                Ok(left) if !left.items.is_empty() => {
                    pass.remaining.insert(label, left.items.len());
                    for item in &left.items {
                        for f in item.metadata.finalizers.iter().flatten() {
                            *pass.finalizers.entry(f.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => pass.content_failures.push(format!("{label}: {e}")),
            }
        }
        pass
    }
}

async fn delete_each(api: &Api<DynamicObject>) -> Result<(), kube::Error> {
    for item in api.list_metadata(&ListParams::default()).await?.items {
        if item.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&item.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let pass = ctx.delete_content(&name).await;
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let old = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let conditions = merge_conditions(&old, conditions(&pass, &now));
    if conditions != old {
        let patch = json!({ "status": { "conditions": conditions } });
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !pass.done() {
        tracing::debug!(namespace = %name, ?pass, "namespace: content remains");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let Some(mut fresh) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let spec = fresh.spec.get_or_insert_with(Default::default);
    spec.finalizers = Some(spec.finalizers.take().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect());
    match api.replace_subresource("finalize", &name, &PostParams::default(), &fresh).await {
        Ok(_) => tracing::debug!(namespace = %name, "namespace: finalized"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time(jiff::Timestamp::UNIX_EPOCH)
    }

    fn by_type(conds: &[NamespaceCondition], t: &str) -> (String, String, String) {
        let c = conds.iter().find(|c| c.type_ == t).expect(t);
        (c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    }

    #[test]
    fn clean_pass_reports_every_condition_false() {
        let conds = conditions(&Pass::default(), &now());
        assert_eq!(conds.len(), 5);
        assert!(conds.iter().all(|c| c.status == "False"));
        assert_eq!(by_type(&conds, "NamespaceContentRemaining").1, "ContentRemoved");
        assert!(Pass::default().done());
    }

    #[test]
    fn remaining_content_and_finalizers_are_counted() {
        let pass = Pass {
            remaining: [("pods.".to_string(), 2), ("widgets.example.com".to_string(), 1)].into(),
            finalizers: [("example.com/keep".to_string(), 1)].into(),
            ..Pass::default()
        };
        assert!(!pass.done());
        let conds = conditions(&pass, &now());
        assert_eq!(
            by_type(&conds, "NamespaceContentRemaining"),
            (
                "True".into(),
                "SomeResourcesRemain".into(),
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
                    .into()
            )
        );
        assert_eq!(
            by_type(&conds, "NamespaceFinalizersRemaining"),
            (
                "True".into(),
                "SomeFinalizersRemain".into(),
                "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
                    .into()
            )
        );
        assert_eq!(by_type(&conds, "NamespaceDeletionContentFailure").0, "False");
    }

    #[test]
    fn failures_are_reported() {
        let pass = Pass {
            discovery_failure: Some("boom".into()),
            content_failures: vec!["pods.: forbidden".into()],
            ..Pass::default()
        };
        assert!(!pass.done());
        let conds = conditions(&pass, &now());
        assert_eq!(by_type(&conds, "NamespaceDeletionDiscoveryFailure").1, "DiscoveryFailed");
        assert_eq!(
            by_type(&conds, "NamespaceDeletionContentFailure").2,
            "Failed to delete all resource types, 1 remaining: pods.: forbidden"
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let old = conditions(&Pass::default(), &now());
        let later = Time(jiff::Timestamp::from_second(100).unwrap());
        assert_eq!(merge_conditions(&old, conditions(&Pass::default(), &later)), old);
        let pass = Pass { remaining: [("pods.".to_string(), 1)].into(), ..Pass::default() };
        let merged = merge_conditions(&old, conditions(&pass, &later));
        let c = merged.iter().find(|c| c.type_ == "NamespaceContentRemaining").unwrap();
        assert_eq!(c.last_transition_time, Some(later));
    }
}
