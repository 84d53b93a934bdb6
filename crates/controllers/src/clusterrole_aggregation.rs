//! ClusterRole aggregation controller (Kubernetes' `clusterrole-aggregation`): the `rules`
//! of every ClusterRole with an `aggregationRule` are the rules of the ClusterRoles its
//! selectors match (sorted by name, without duplicates, never itself). Any ClusterRole
//! change re-evaluates every aggregated role, so chains (admin ← edit ← view) settle.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

use crate::selector;

/// The rules `role` should hold, from `all` ClusterRoles; `None` without an aggregationRule.
pub(crate) fn aggregated_rules(role: &ClusterRole, all: &[&ClusterRole]) -> Option<Vec<PolicyRule>> {
    let selectors = role.aggregation_rule.as_ref()?.cluster_role_selectors.clone().unwrap_or_default();
    let mut matched: Vec<&&ClusterRole> = all
        .iter()
        .filter(|other| other.name_any() != role.name_any())
        .filter(|other| selectors.iter().any(|s| selector::matches(s, other.metadata.labels.as_ref())))
        .collect();
    matched.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in matched {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

pub(crate) async fn run(client: kube::Client) {
    let api: Api<ClusterRole> = Api::all(client);
    let (reader, writer) = reflector::store();
    let mut events =
        reflector(writer, watcher(api.clone(), watcher::Config::default())).backoff(crate::backoff::watch()).boxed();
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    let mut listed = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "clusterrole-aggregation: watch error");
                    continue;
                }
                None => return,
            },
            _ = resync.tick() => {}
        }
        if !listed {
            continue;
        }
        let roles = reader.state();
        let all: Vec<&ClusterRole> = roles.iter().map(|r| r.as_ref()).collect();
        for role in &all {
            let Some(rules) = aggregated_rules(role, &all) else { continue };
            if role.rules.clone().unwrap_or_default() == rules {
                continue;
            }
            let mut updated = (*role).clone();
            updated.rules = Some(rules);
            match api.replace(&role.name_any(), &PostParams::default(), &updated).await {
                Ok(_) => tracing::debug!(role = %role.name_any(), "aggregated ClusterRole rules"),
                // A newer version is on its way through the watch: it is re-evaluated then.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(e) => tracing::warn!(role = %role.name_any(), error = %e, "aggregating ClusterRole rules"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(value: serde_json::Value) -> ClusterRole {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn aggregates_matching_roles_by_name_without_duplicates() {
        let view = role(json!({
            "metadata": { "name": "view" },
            "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "agg": "view" } }] },
            "rules": [{ "apiGroups": ["x"], "resources": ["stale"], "verbs": ["get"] }],
        }));
        let b = role(json!({
            "metadata": { "name": "b", "labels": { "agg": "view" } },
            "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }],
        }));
        let a = role(json!({
            "metadata": { "name": "a", "labels": { "agg": "view" } },
            "rules": [
                { "apiGroups": [""], "resources": ["services"], "verbs": ["get"] },
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] },
            ],
        }));
        let other = role(json!({
            "metadata": { "name": "c", "labels": { "agg": "edit" } },
            "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"] }],
        }));
        let all = [&view, &b, &a, &other];
        let rules = aggregated_rules(&view, &all).unwrap();
        let resources: Vec<String> = rules.iter().map(|r| r.resources.clone().unwrap().join(",")).collect();
        assert_eq!(resources, ["services", "pods"]);
        assert_eq!(aggregated_rules(&a, &all), None);
    }
}
