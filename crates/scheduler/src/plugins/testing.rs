//! Builders for the data-driven plugin tests: nodes, pods, a cache, and the feasible set
//! or normalized scores one plugin gives.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::cache::{Cache, PodInfo};
use crate::framework::{Plugin, Prepared};

/// A node: `opts` may hold `labels`, `taints`, `unschedulable`, `allocatable`, `images`.
/// Allocatable defaults to 4 CPUs, 8 GiB, 110 pods; `kubernetes.io/hostname` is set.
pub(crate) fn node(name: &str, opts: Value) -> Arc<Node> {
    let mut labels = json!({"kubernetes.io/hostname": name});
    if let Some(l) = opts.get("labels").and_then(Value::as_object) {
        for (k, v) in l {
            labels[k] = v.clone();
        }
    }
    let allocatable = opts.get("allocatable").cloned().unwrap_or(json!({"cpu": "4", "memory": "8Gi", "pods": "110"}));
    let v = json!({"metadata": {"name": name, "labels": labels},
        "spec": {"taints": opts.get("taints").cloned().unwrap_or(json!([])),
                 "unschedulable": opts.get("unschedulable").cloned().unwrap_or(json!(false))},
        "status": {"allocatable": allocatable, "images": opts.get("images").cloned().unwrap_or(json!([]))}});
    Arc::new(serde_json::from_value(v).expect("node"))
}

fn pod_value(name: &str, labels: Value, mut spec: Value) -> Pod {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels}, "spec": spec}))
        .expect("pod")
}

/// The pod being scheduled, `p`, with no labels.
pub(crate) fn pod(spec: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod_value("p", json!({}), spec)))
}

/// The pod being scheduled, with labels.
pub(crate) fn labelled(labels: Value, spec: Value) -> PodInfo {
    PodInfo::new(Arc::new(pod_value("p", labels, spec)))
}

/// A pod already bound to `node`.
pub(crate) fn bound(name: &str, node: &str, mut spec: Value) -> Arc<PodInfo> {
    spec["nodeName"] = json!(node);
    Arc::new(PodInfo::new(Arc::new(pod_value(name, json!({}), spec))))
}

/// A labelled pod already bound to `node`.
pub(crate) fn bound_labelled(name: &str, node: &str, labels: Value, mut spec: Value) -> Arc<PodInfo> {
    spec["nodeName"] = json!(node);
    Arc::new(PodInfo::new(Arc::new(pod_value(name, labels, spec))))
}

/// A cache holding `nodes` and `pods`.
pub(crate) fn cache_of(nodes: Vec<Arc<Node>>, pods: Vec<Arc<PodInfo>>) -> Cache {
    let mut c = Cache::new();
    for n in nodes {
        c.upsert_node(n);
    }
    for p in pods {
        c.add_pod(p);
    }
    c
}

/// Names of the nodes `plugin` lets `pod` onto (pre-filter rejections give none).
pub(crate) fn feasible_in(
    plugin: &dyn Plugin,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<PodInfo>>,
    pod: &PodInfo,
) -> Vec<String> {
    let cache = cache_of(nodes, pods);
    let Ok(prepared) = plugin.pre_filter(pod, &cache) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cache
        .nodes()
        .iter()
        .filter(|n| n.node.is_some())
        .filter(|n| prepared.skip || plugin.filter(pod, &prepared, n).is_ok())
        .map(|n| n.name.clone())
        .collect();
    names.sort();
    names
}

/// Like [`feasible_in`] with no pods.
pub(crate) fn feasible(plugin: &dyn Plugin, nodes: &[Arc<Node>], pod: &PodInfo) -> Vec<String> {
    feasible_in(plugin, nodes.to_vec(), Vec::new(), pod)
}

/// The reasons `plugin` gives for each rejected node, sorted by node.
pub(crate) fn reasons(
    plugin: &dyn Plugin,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<PodInfo>>,
    pod: &PodInfo,
) -> Vec<(String, String)> {
    let cache = cache_of(nodes, pods);
    let prepared = match plugin.pre_filter(pod, &cache) {
        Ok(p) => p,
        Err(r) => return vec![("*".into(), r.reasons.join(", "))],
    };
    let mut out: Vec<(String, String)> = cache
        .nodes()
        .iter()
        .filter_map(|n| plugin.filter(pod, &prepared, n).err().map(|r| (n.name.clone(), r.reasons.join(", "))))
        .collect();
    out.sort();
    out
}

/// Normalized scores `plugin` gives each node, sorted by node name.
pub(crate) fn scores(
    plugin: &dyn Plugin,
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<PodInfo>>,
    pod: &PodInfo,
) -> Vec<(String, i64)> {
    let cache = cache_of(nodes, pods);
    let mut feasible: Vec<_> = cache.nodes().iter().filter(|n| n.node.is_some()).collect();
    feasible.sort_by(|a, b| a.name.cmp(&b.name));
    let prepared: Prepared = plugin.pre_score(pod, &cache, &feasible);
    let mut s: Vec<i64> =
        feasible.iter().map(|n| if prepared.skip { 0 } else { plugin.score(pod, &prepared, n) }).collect();
    if !prepared.skip {
        plugin.normalize(pod, &mut s);
    }
    feasible.iter().map(|n| n.name.clone()).zip(s).collect()
}
