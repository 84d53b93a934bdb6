//! Resource arithmetic: Kubernetes quantities as integers, a node's allocatable, and a
//! pod's effective requests (containers, init containers, sidecars and overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU requested by a container without a CPU request, for scoring only (100m, as Kubernetes).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory requested by a container without a memory request, for scoring only (200 MB, as Kubernetes).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of resources: CPU in millicores, the rest in their base unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Pod count (allocatable `pods`; one per pod when requested).
    pub pods: i64,
    /// Extended and other scalar resources (`nvidia.com/gpu`, `hugepages-2Mi`), by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a resource list (`requests`, `allocatable`, `overhead`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, parse_for(name, &q.0));
        }
        r
    }

    /// The amount of one resource by its Kubernetes name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    /// Sets one resource by its Kubernetes name.
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            "pods" => self.pods = value,
            other => {
                self.scalar.insert(other.to_string(), value);
            }
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Sets each resource to the larger of `self` and `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

/// A node's allocatable resources (capacity when allocatable is absent).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list = status.and_then(|s| s.allocatable.as_ref()).or_else(|| status.and_then(|s| s.capacity.as_ref()));
    list.map(Resources::from_list).unwrap_or_default()
}

/// A pod's requests and its requests with defaults for unset CPU/memory (used by scores).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// What the pod needs, as NodeResourcesFit checks it (`pods` is 1).
    pub requests: Resources,
    /// CPU for scoring: unset container requests count as 100m.
    pub non_zero_milli_cpu: i64,
    /// Memory for scoring: unset container requests count as 200 MB.
    pub non_zero_memory: i64,
}

fn container_requests(c: &Container) -> Resources {
    c.resources.as_ref().and_then(|r| r.requests.as_ref()).map(Resources::from_list).unwrap_or_default()
}

/// The effective requests of a pod, as Kubernetes computes them: the sum of the containers
/// plus restartable init containers (sidecars), at least the largest regular init
/// container (with the sidecars started before it), plus the pod overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut sum = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    for c in &spec.containers {
        let r = container_requests(c);
        nz_cpu += if has_request(c, "cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST };
        nz_mem += if has_request(c, "memory") { r.memory } else { DEFAULT_MEMORY_REQUEST };
        sum.add(&r);
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    let (mut init_nz_cpu, mut init_nz_mem, mut sidecar_nz_cpu, mut sidecar_nz_mem) = (0i64, 0i64, 0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let c_cpu = if has_request(c, "cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST };
        let c_mem = if has_request(c, "memory") { r.memory } else { DEFAULT_MEMORY_REQUEST };
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecar_nz_cpu += c_cpu;
            sidecar_nz_mem += c_mem;
            init_max.max_with(&sidecars);
            init_nz_cpu = init_nz_cpu.max(sidecar_nz_cpu);
            init_nz_mem = init_nz_mem.max(sidecar_nz_mem);
        } else {
            let mut with_sidecars = r.clone();
            with_sidecars.add(&sidecars);
            init_max.max_with(&with_sidecars);
            init_nz_cpu = init_nz_cpu.max(c_cpu + sidecar_nz_cpu);
            init_nz_mem = init_nz_mem.max(c_mem + sidecar_nz_mem);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_max);
    nz_cpu = (nz_cpu + sidecar_nz_cpu).max(init_nz_cpu);
    nz_mem = (nz_mem + sidecar_nz_mem).max(init_nz_mem);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        sum.add(&o);
        nz_cpu += o.milli_cpu;
        nz_mem += o.memory;
    }
    sum.pods = 1;
    PodRequests { requests: sum, non_zero_milli_cpu: nz_cpu, non_zero_memory: nz_mem }
}

fn has_request(c: &Container, name: &str) -> bool {
    c.resources.as_ref().and_then(|r| r.requests.as_ref()).is_some_and(|r| r.contains_key(name))
}

/// Parses a quantity for the named resource: millicores for `cpu`, base units (rounded up) otherwise.
pub fn parse_for(name: &str, s: &str) -> i64 {
    // The API server validated the quantity; the same parser reads it here.
    let v = berth_api::validation::parse_quantity(s).unwrap_or(0.0);
    let scaled = if name == "cpu" { v * 1000.0 } else { v };
    // Tiny float noise (0.1 * 1000) must not round up to the next unit.
    let rounded = (scaled - 1e-9).ceil();
    if rounded >= i64::MAX as f64 { i64::MAX } else { rounded.max(0.0) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        for (name, q, want) in [
            ("cpu", "100m", 100),
            ("cpu", "1", 1000),
            ("cpu", "1.5", 1500),
            ("cpu", "0.1", 100),
            ("memory", "1Gi", 1 << 30),
            ("memory", "1k", 1000),
            ("memory", "1e3", 1000),
            ("memory", "128974848", 128974848),
            ("nvidia.com/gpu", "2", 2),
            ("memory", "junk", 0),
        ] {
            assert_eq!(parse_for(name, q), want, "{name}={q}");
        }
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    #[test]
    fn pod_requests_follow_kubernetes() {
        // containers sum; a larger init container wins; overhead adds.
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"cpu": "10m"}
        }));
        let r = pod_requests(&s);
        assert_eq!(r.requests.milli_cpu, 1010);
        assert_eq!(r.requests.memory, 1 << 30);
        assert_eq!(r.requests.get("nvidia.com/gpu"), 1);
        assert_eq!(r.requests.pods, 1);
        // b has no memory request: scoring counts 200 MB for it.
        assert_eq!(r.non_zero_memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
        // A sidecar runs beside the containers and the later init containers.
        let s = spec(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "500m"}}}]
        }));
        assert_eq!(pod_requests(&s).requests.milli_cpu, 800);
        let s = spec(json!({"containers": [{"name": "a"}]}));
        let r = pod_requests(&s);
        assert_eq!(r.requests.milli_cpu, 0);
        assert_eq!(r.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
    }
}
