//! What a Service's Endpoints and EndpointSlices should hold, from its pods: pure
//! functions over typed objects (as Kubernetes' endpoints and endpointslice controllers).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Most endpoints in one EndpointSlice (kube-controller-manager's `--max-endpoints-per-slice` default).
pub(crate) const MAX_PER_SLICE: usize = 100;
/// `kubernetes.io/service-name`.
pub(crate) const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`.
pub(crate) const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of slices made from Services' pods.
pub(crate) const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The managed-by value of slices mirrored from manual Endpoints.
pub(crate) const MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
/// Label on Endpoints that mirroring skips (set on the ones the endpoints controller writes).
pub(crate) const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// True when `pod` carries the selector's labels.
pub(crate) fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// True when the pod's `Ready` condition is `True`.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod belongs in endpoints at all (Kubernetes' `ShouldPodBeInEndpoints`):
/// it has an IP, is not terminal for good, and (unless `include_terminating`) is not terminating.
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    if status.pod_ip.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = status.phase.as_deref().unwrap_or("");
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always") {
        "Never" => phase != "Failed" && phase != "Succeeded",
        "OnFailure" => phase != "Succeeded",
        _ => true,
    }
}

/// The pod's port for a Service port: a number as is, a name looked up in its containers.
pub(crate) fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            })
        }
    }
}

/// One pod's ports for the Service, as (name, port, protocol, appProtocol); `None` when a
/// port cannot be resolved on this pod (then the pod is left out for that port).
fn pod_ports(svc: &Service, pod: &Pod) -> Vec<SlicePort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    ports
        .iter()
        .filter_map(|p| {
            resolve_port(pod, p).map(|n| SlicePort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The pod's hostname in the Service's DNS, when its subdomain is the Service.
fn hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.is_some() && spec.subdomain == svc.metadata.name).then(|| spec.hostname.clone()).flatten()
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

/// A subset being built: ports, ready and not-ready addresses.
type SubsetParts = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);

/// The Endpoints object's subsets for `svc` over `pods` (pods already selected).
pub(crate) fn endpoint_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let headless_no_ports = svc
        .spec
        .as_ref()
        .is_some_and(|s| s.cluster_ip.as_deref() == Some("None") && s.ports.as_ref().is_none_or(Vec::is_empty));
    // Subsets grouped by the pods' resolved port lists.
    let mut groups: BTreeMap<String, SubsetParts> = BTreeMap::new();
    for pod in pods.iter().filter(|p| should_be_in_endpoints(p, false)) {
        let ports = pod_ports(svc, pod);
        if ports.is_empty() && !headless_no_ports {
            continue;
        }
        let ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or_default(),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let address = EndpointAddress {
            ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
            hostname: hostname(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let entry = groups.entry(key).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if pod_ready(pod) || publish_not_ready(svc) {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Most addresses an Endpoints object holds (Kubernetes' `maxCapacity`).
pub(crate) const MAX_ENDPOINTS: usize = 1000;
/// Annotation on an Endpoints object whose addresses were cut to [`MAX_ENDPOINTS`].
pub(crate) const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Cuts `subsets` to [`MAX_ENDPOINTS`] addresses as Kubernetes' `truncateEndpoints` does:
/// not-ready addresses go first; when the ready ones alone are too many, every not-ready one
/// goes and each subset keeps its share (rounded up) of the ready ones. True when it cut.
pub(crate) fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS;
    let (max, total) = if cut_ready { (MAX_ENDPOINTS, ready) } else { (MAX_ENDPOINTS - ready, not_ready) };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let list = if cut_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let here = count(list);
        let share = (here * max).div_ceil(total.max(1)).min(room);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        room -= count(list);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        if cut_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// The Endpoints object the endpoints controller writes for `svc` (at most [`MAX_ENDPOINTS`]
/// addresses, annotated [`OVER_CAPACITY`] `truncated` when there were more).
pub(crate) fn endpoints(svc: &Service, pods: &[&Pod]) -> Endpoints {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SKIP_MIRROR.into(), "true".into());
    let mut subsets = endpoint_subsets(svc, pods);
    let truncated = truncate(&mut subsets);
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: truncated.then(|| [(OVER_CAPACITY.to_string(), "truncated".to_string())].into()),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// The content of one EndpointSlice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SliceContent {
    /// Ports, as the slice lists them.
    pub(crate) ports: Vec<SlicePort>,
    /// At most [`MAX_PER_SLICE`] endpoints, sorted by address.
    pub(crate) endpoints: Vec<Endpoint>,
}

/// The IPv4 EndpointSlices' contents for `svc` over `pods`: endpoints grouped by resolved
/// ports, at most [`MAX_PER_SLICE`] per slice; terminating pods included with their conditions;
/// one empty placeholder when there are no endpoints.
pub(crate) fn slices(svc: &Service, pods: &[&Pod]) -> Vec<SliceContent> {
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| should_be_in_endpoints(p, true)) {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        let ports = pod_ports(svc, pod);
        let has_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|p| !p.is_empty());
        if ports.is_empty() && has_ports {
            continue;
        }
        let serving = publish_not_ready(svc) || pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish_not_ready(svc) || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Endpoint::default()
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups.entry(key).or_insert_with(|| (ports, Vec::new())).1.push(endpoint);
    }
    let mut contents = chunk(groups.into_values());
    if contents.is_empty() {
        // A Service with a selector always has a slice: with no endpoints, an empty
        // placeholder (as Kubernetes' EndpointSlice controller keeps one).
        contents.push(SliceContent { ports: Vec::new(), endpoints: Vec::new() });
    }
    contents
}

/// Slices mirrored from a selector-less Service's manual Endpoints (as the
/// endpointslicemirroring controller): addresses ready, notReadyAddresses not ready.
pub(crate) fn mirrored(ep: &Endpoints) -> Vec<SliceContent> {
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<SlicePort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let entry = groups.entry(key).or_insert_with(|| (ports, Vec::new()));
        let tagged = subset.addresses.iter().flatten().map(|a| (a, true));
        for (addr, ready) in tagged.chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false))) {
            if addr.ip.parse::<std::net::Ipv4Addr>().is_err() {
                continue;
            }
            entry.1.push(Endpoint {
                addresses: vec![addr.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                hostname: addr.hostname.clone(),
                node_name: addr.node_name.clone(),
                target_ref: addr.target_ref.clone(),
                ..Endpoint::default()
            });
        }
    }
    chunk(groups.into_values())
}

fn chunk(groups: impl Iterator<Item = (Vec<SlicePort>, Vec<Endpoint>)>) -> Vec<SliceContent> {
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        endpoints.dedup_by(|a, b| a.addresses == b.addresses);
        for part in endpoints.chunks(MAX_PER_SLICE) {
            out.push(SliceContent { ports: ports.clone(), endpoints: part.to_vec() });
        }
    }
    out
}

/// What to write so that the `existing` slices (one service, one manager) hold `desired`:
/// slices to update in place (existing index, content), contents to create, indexes to delete.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SlicePlan {
    /// (index into existing, new content) for slices whose content changes.
    pub(crate) update: Vec<(usize, SliceContent)>,
    /// New slices.
    pub(crate) create: Vec<SliceContent>,
    /// Indexes into existing of slices no longer needed.
    pub(crate) delete: Vec<usize>,
}

/// Pairs desired contents with existing slices: unchanged ones are kept, changed ones are
/// reused in order, the rest created or deleted.
pub(crate) fn plan_slices(existing: &[EndpointSlice], desired: Vec<SliceContent>) -> SlicePlan {
    let content_of =
        |s: &EndpointSlice| SliceContent { ports: s.ports.clone().unwrap_or_default(), endpoints: s.endpoints.clone() };
    let mut free: Vec<usize> = Vec::new();
    let mut wanted: Vec<Option<SliceContent>> = desired.into_iter().map(Some).collect();
    for (i, slice) in existing.iter().enumerate() {
        let have = content_of(slice);
        match wanted.iter_mut().find(|w| w.as_ref() == Some(&have)) {
            Some(w) => *w = None,
            None => free.push(i),
        }
    }
    let mut plan = SlicePlan::default();
    let mut free = free.into_iter();
    for content in wanted.into_iter().flatten() {
        match free.next() {
            Some(i) => plan.update.push((i, content)),
            None => plan.create.push(content),
        }
    }
    plan.delete = free.collect();
    plan
}

/// The controller reference to `kind` `name` (a Service, or mirrored Endpoints).
pub(crate) fn controller_ref(kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new or updated slice of `svc` with `content`, managed by `manager`.
pub(crate) fn slice_object(
    svc: &Service,
    manager: &str,
    owner: OwnerReference,
    base: Option<&EndpointSlice>,
    content: SliceContent,
) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), manager.into());
    let metadata = match base {
        Some(b) => ObjectMeta { labels: Some(labels), ..b.metadata.clone() },
        None => ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
    };
    let ports = (!content.ports.is_empty()).then_some(content.ports);
    EndpointSlice { metadata, address_type: "IPv4".into(), endpoints: content.endpoints, ports }
}

#[cfg(test)]
mod tests;
