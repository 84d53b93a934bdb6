//! The columns and cells of every built-in kind's printer, and the defaults for kinds
//! without one (`Name`, `Created At`) and for custom resources (`Name`, `Age`).

use serde_json::{Value, json};

use super::{AGE, CREATED_AT, Ctx, NAME, Spec, container_cells, format_labels, format_selector};
use crate::registry::ResourceInfo;

const CONTAINERS: Spec = ("Containers", "string", 1, "Names of the containers of the pod template");
const IMAGES: Spec = ("Images", "string", 1, "Images of the containers of the pod template");
const SELECTOR: Spec = ("Selector", "string", 1, "Label selector of the pods");

const DEFAULT: &[Spec] = &[NAME, CREATED_AT];
const CUSTOM: &[Spec] = &[NAME, ("Age", "date", 0, "Time since the object was created")];

/// Which printer serves a resource.
fn printer(res: &ResourceInfo) -> &str {
    if res.definition.is_empty() {
        return "custom";
    }
    match (res.group.as_str(), res.kind.as_str()) {
        (_, "Event") => "Event",
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => "Binding",
        ("rbac.authorization.k8s.io", _) | ("apiextensions.k8s.io", _) => "default",
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding") => &res.kind,
        ("admissionregistration.k8s.io", _) => "Webhooks",
        ("authentication.k8s.io" | "authorization.k8s.io", _) | ("", "Binding") => "default",
        (_, kind) => kind,
    }
}

/// The column specs of `res`.
pub(super) fn specs(res: &ResourceInfo) -> &'static [Spec] {
    match printer(res) {
        "Pod" => &[
            NAME,
            ("Ready", "string", 0, "Ready containers out of all containers"),
            ("Status", "string", 0, "The pod's status as kubectl summarises it"),
            ("Restarts", "string", 0, "Container restarts, with the time of the last one"),
            AGE,
            ("IP", "string", 1, "The pod's IP address"),
            ("Node", "string", 1, "The node the pod runs on"),
            ("Nominated Node", "string", 1, "The node the scheduler nominated by preemption"),
            ("Readiness Gates", "string", 1, "Readiness gates met out of all"),
        ],
        "Deployment" => &[
            NAME,
            ("Ready", "string", 0, "Ready replicas out of desired"),
            ("Up-to-date", "string", 0, "Replicas running the current template"),
            ("Available", "string", 0, "Replicas available to users"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" | "ReplicationController" => &[
            NAME,
            ("Desired", "integer", 0, "Desired replicas"),
            ("Current", "integer", 0, "Existing replicas"),
            ("Ready", "integer", 0, "Ready replicas"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "StatefulSet" => &[NAME, ("Ready", "string", 0, "Ready replicas out of desired"), AGE, CONTAINERS, IMAGES],
        "DaemonSet" => &[
            NAME,
            ("Desired", "integer", 0, "Nodes that should run the daemon pod"),
            ("Current", "integer", 0, "Nodes running the daemon pod"),
            ("Ready", "integer", 0, "Nodes with a ready daemon pod"),
            ("Up-to-date", "integer", 0, "Nodes running the current template"),
            ("Available", "integer", 0, "Nodes with an available daemon pod"),
            ("Node Selector", "string", 0, "Labels a node must have to run the pod"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Job" => &[
            NAME,
            ("Status", "string", 0, "Status of the job"),
            ("Completions", "string", 0, "Succeeded pods out of desired completions"),
            ("Duration", "string", 0, "Time the job ran"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "CronJob" => &[
            NAME,
            ("Schedule", "string", 0, "The cron schedule"),
            ("Timezone", "string", 0, "Time zone of the schedule"),
            ("Suspend", "boolean", 0, "Whether new runs are suspended"),
            ("Active", "integer", 0, "Running jobs"),
            ("Last Schedule", "string", 0, "Time since the job was last scheduled"),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Service" => &[
            NAME,
            ("Type", "string", 0, "Type of the service"),
            ("Cluster-IP", "string", 0, "Cluster IP address"),
            ("External-IP", "string", 0, "External addresses"),
            ("Port(s)", "string", 0, "Ports served"),
            AGE,
            ("Selector", "string", 1, "Labels of the pods served"),
        ],
        "Ingress" => &[
            NAME,
            ("Class", "string", 0, "Ingress class"),
            ("Hosts", "string", 0, "Hosts the rules match"),
            ("Address", "string", 0, "Load balancer addresses"),
            ("Ports", "string", 0, "Ports opened"),
            AGE,
        ],
        "IngressClass" => &[
            NAME,
            ("Controller", "string", 0, "Controller implementing the class"),
            ("Parameters", "string", 0, "Parameters object of the class"),
            AGE,
        ],
        "NetworkPolicy" => &[NAME, ("Pod-Selector", "string", 0, "Pods the policy applies to"), AGE],
        "Endpoints" => &[NAME, ("Endpoints", "string", 0, "Endpoint addresses and ports"), AGE],
        "EndpointSlice" => &[
            NAME,
            ("AddressType", "string", 0, "Type of the addresses"),
            ("Ports", "string", 0, "Ports of the slice"),
            ("Endpoints", "string", 0, "Endpoint addresses"),
            AGE,
        ],
        "Node" => &[
            NAME,
            ("Status", "string", 0, "Readiness of the node"),
            ("Roles", "string", 0, "Roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet version"),
            ("Internal-IP", "string", 1, "Internal address"),
            ("External-IP", "string", 1, "External address"),
            ("OS-Image", "string", 1, "Operating system image"),
            ("Kernel-Version", "string", 1, "Kernel version"),
            ("Container-Runtime", "string", 1, "Container runtime version"),
        ],
        "Event" => &[
            ("Last Seen", "string", 0, "Time since the event was last seen"),
            ("Type", "string", 0, "Type of the event"),
            ("Reason", "string", 0, "Reason of the event"),
            ("Object", "string", 0, "Object the event is about"),
            ("Subobject", "string", 1, "Part of the object the event is about"),
            ("Source", "string", 1, "Component that reported the event"),
            ("Message", "string", 0, "Message of the event"),
            ("First Seen", "string", 1, "Time since the event was first seen"),
            ("Count", "string", 1, "Times the event was seen"),
            ("Name", "string", 1, "Name of the event"),
        ],
        "Namespace" => &[NAME, ("Status", "string", 0, "Phase of the namespace"), AGE],
        "Secret" => {
            &[NAME, ("Type", "string", 0, "Type of the secret"), ("Data", "string", 0, "Number of data keys"), AGE]
        }
        "ConfigMap" => &[NAME, ("Data", "string", 0, "Number of data keys"), AGE],
        "ServiceAccount" => &[NAME, ("Secrets", "string", 0, "Number of secrets"), AGE],
        "PersistentVolume" => &[
            NAME,
            ("Capacity", "string", 0, "Storage capacity"),
            ("Access Modes", "string", 0, "Access modes"),
            ("Reclaim Policy", "string", 0, "What happens to the volume when released"),
            ("Status", "string", 0, "Phase of the volume"),
            ("Claim", "string", 0, "Claim bound to the volume"),
            ("StorageClass", "string", 0, "Storage class of the volume"),
            ("VolumeAttributesClass", "string", 0, "Volume attributes class"),
            ("Reason", "string", 0, "Reason of the phase"),
            AGE,
            ("VolumeMode", "string", 1, "Block or filesystem volume"),
        ],
        "PersistentVolumeClaim" => &[
            NAME,
            ("Status", "string", 0, "Phase of the claim"),
            ("Volume", "string", 0, "Volume bound to the claim"),
            ("Capacity", "string", 0, "Storage capacity"),
            ("Access Modes", "string", 0, "Access modes"),
            ("StorageClass", "string", 0, "Storage class of the claim"),
            ("VolumeAttributesClass", "string", 0, "Volume attributes class"),
            AGE,
            ("VolumeMode", "string", 1, "Block or filesystem volume"),
        ],
        "HorizontalPodAutoscaler" => &[
            NAME,
            ("Reference", "string", 0, "Object scaled"),
            ("Targets", "string", 0, "Current and target metric values"),
            ("MinPods", "string", 0, "Lower replica limit"),
            ("MaxPods", "string", 0, "Upper replica limit"),
            ("Replicas", "string", 0, "Current replicas"),
            AGE,
        ],
        "PodDisruptionBudget" => &[
            NAME,
            ("Min Available", "string", 0, "Pods that must stay available"),
            ("Max Unavailable", "string", 0, "Pods that may be unavailable"),
            ("Allowed Disruptions", "integer", 0, "Pods that may be disrupted now"),
            AGE,
        ],
        "ControllerRevision" => &[
            NAME,
            ("Controller", "string", 0, "Owner of the revision"),
            ("Revision", "string", 0, "Revision number"),
            AGE,
        ],
        "PodTemplate" => &[
            NAME,
            ("Containers", "string", 0, "Names of the containers"),
            ("Images", "string", 0, "Images of the containers"),
            ("Pod Labels", "string", 0, "Labels of the pod template"),
        ],
        "ResourceQuota" => &[
            NAME,
            ("Request", "string", 0, "Used and hard request quotas"),
            ("Limit", "string", 0, "Used and hard limit quotas"),
            AGE,
        ],
        "LimitRange" => DEFAULT,
        "Binding" => &[
            NAME,
            ("Role", "string", 0, "Role referred to"),
            AGE,
            ("Users", "string", 1, "Users bound"),
            ("Groups", "string", 1, "Groups bound"),
            ("ServiceAccounts", "string", 1, "Service accounts bound"),
        ],
        "Lease" => &[NAME, ("Holder", "string", 0, "Current holder of the lease"), AGE],
        "PriorityClass" => &[
            NAME,
            ("Value", "integer", 0, "Priority value"),
            ("Global-Default", "boolean", 0, "Whether the class is the default"),
            AGE,
            ("PreemptionPolicy", "string", 0, "Whether pods of the class preempt others"),
        ],
        "RuntimeClass" => &[NAME, ("Handler", "string", 0, "Runtime handler"), AGE],
        "StorageClass" => &[
            NAME,
            ("Provisioner", "string", 0, "Volume provisioner"),
            ("ReclaimPolicy", "string", 0, "Reclaim policy of provisioned volumes"),
            ("VolumeBindingMode", "string", 0, "When volumes are bound"),
            ("AllowVolumeExpansion", "string", 0, "Whether volumes may grow"),
            AGE,
        ],
        "CSIDriver" => &[
            NAME,
            ("AttachRequired", "boolean", 0, "Whether volumes need attaching"),
            ("PodInfoOnMount", "boolean", 0, "Whether pod information is passed on mount"),
            ("StorageCapacity", "boolean", 0, "Whether storage capacity is reported"),
            ("TokenRequests", "string", 0, "Audiences of service account tokens passed"),
            ("RequiresRepublish", "boolean", 0, "Whether volumes are republished periodically"),
            ("Modes", "string", 0, "Volume lifecycle modes"),
            AGE,
        ],
        "CSINode" => &[NAME, ("Drivers", "integer", 0, "Number of drivers on the node"), AGE],
        "VolumeAttachment" => &[
            NAME,
            ("Attacher", "string", 0, "Driver attaching the volume"),
            ("PV", "string", 0, "Volume attached"),
            ("Node", "string", 0, "Node attached to"),
            ("Attached", "boolean", 0, "Whether the volume is attached"),
            AGE,
        ],
        "Webhooks" => &[NAME, ("Webhooks", "integer", 0, "Number of webhooks"), AGE],
        "ValidatingAdmissionPolicy" => &[
            NAME,
            ("Validations", "integer", 0, "Number of validations"),
            ("ParamKind", "string", 0, "Kind of the policy's params"),
            AGE,
        ],
        "ValidatingAdmissionPolicyBinding" => &[
            NAME,
            ("PolicyName", "string", 0, "Policy bound"),
            ("ParamRef", "string", 0, "Params of the binding"),
            AGE,
        ],
        "CertificateSigningRequest" => &[
            NAME,
            AGE,
            ("SignerName", "string", 0, "Signer asked to sign"),
            ("Requestor", "string", 0, "User who asked"),
            ("RequestedDuration", "string", 0, "Requested validity"),
            ("Condition", "string", 0, "Approval and issue conditions"),
        ],
        "custom" => CUSTOM,
        _ => DEFAULT,
    }
}

fn or(s: &str, fallback: &str) -> String {
    if s.is_empty() { fallback.to_string() } else { s.to_string() }
}

fn bool_cell(v: &Value, unset: Option<&str>) -> Value {
    match (v.as_bool(), unset) {
        (Some(b), _) => json!(b),
        (None, Some(text)) => json!(text),
        (None, None) => json!(false),
    }
}

/// The `<kind>/<name>` of an object reference, lower-cased kind.
fn object_ref(kind: &str, name: &str) -> String {
    if name.is_empty() { kind.to_ascii_lowercase() } else { format!("{}/{name}", kind.to_ascii_lowercase()) }
}

fn template_cells(ctx: &Ctx<'_>, template_spec: &str) -> (Value, Value) {
    container_cells(ctx.get(template_spec))
}

fn list_addresses(items: &[Value], max: usize) -> String {
    let mut shown: Vec<&str> = items.iter().take(max).map(|s| s.as_str().unwrap_or_default()).collect();
    shown.retain(|s| !s.is_empty());
    let mut out = shown.join(",");
    if items.len() > max {
        out = format!("{out} + {} more...", items.len() - max);
    }
    out
}

fn load_balancer(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.list("/status/loadBalancer/ingress")
        .iter()
        .filter_map(|i| {
            let ip = i.get("ip").and_then(Value::as_str).unwrap_or_default();
            let host = i.get("hostname").and_then(Value::as_str).unwrap_or_default();
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect()
}

fn access_modes(modes: &[Value]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (mode, short) in
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
    {
        if modes.iter().any(|m| m.as_str() == Some(mode)) {
            out.push(short);
        }
    }
    out.join(",")
}

/// The cells of `res`'s printer for the object in `ctx`.
pub(super) fn cells(res: &ResourceInfo, ctx: &Ctx<'_>) -> Vec<Value> {
    match printer(res) {
        "Pod" => super::pod::cells(ctx),
        "Deployment" => {
            let (names, images) = template_cells(ctx, "/spec/template/spec");
            vec![
                ctx.name(),
                json!(format!("{}/{}", ctx.int("/status/readyReplicas"), ctx.int("/spec/replicas"))),
                json!(ctx.int("/status/updatedReplicas")),
                json!(ctx.int("/status/availableReplicas")),
                ctx.age(),
                names,
                images,
                json!(format_selector(ctx.get("/spec/selector"))),
            ]
        }
        kind @ ("ReplicaSet" | "ReplicationController") => {
            let (names, images) = template_cells(ctx, "/spec/template/spec");
            let selector = if kind == "ReplicaSet" {
                format_selector(ctx.get("/spec/selector"))
            } else {
                format_labels(ctx.map("/spec/selector"))
            };
            vec![
                ctx.name(),
                json!(ctx.int("/spec/replicas")),
                json!(ctx.int("/status/replicas")),
                json!(ctx.int("/status/readyReplicas")),
                ctx.age(),
                names,
                images,
                json!(selector),
            ]
        }
        "StatefulSet" => {
            let (names, images) = template_cells(ctx, "/spec/template/spec");
            vec![
                ctx.name(),
                json!(format!("{}/{}", ctx.int("/status/readyReplicas"), ctx.int("/spec/replicas"))),
                ctx.age(),
                names,
                images,
            ]
        }
        "DaemonSet" => {
            let (names, images) = template_cells(ctx, "/spec/template/spec");
            vec![
                ctx.name(),
                json!(ctx.int("/status/desiredNumberScheduled")),
                json!(ctx.int("/status/currentNumberScheduled")),
                json!(ctx.int("/status/numberReady")),
                json!(ctx.int("/status/updatedNumberScheduled")),
                json!(ctx.int("/status/numberAvailable")),
                json!(format_labels(ctx.map("/spec/template/spec/nodeSelector"))),
                ctx.age(),
                names,
                images,
                json!(format_selector(ctx.get("/spec/selector"))),
            ]
        }
        "Job" => job(ctx),
        "CronJob" => {
            let (names, images) = template_cells(ctx, "/spec/jobTemplate/spec/template/spec");
            let last = ctx.get("/status/lastScheduleTime");
            vec![
                ctx.name(),
                json!(ctx.str("/spec/schedule")),
                json!(or(ctx.str("/spec/timeZone"), "<none>")),
                json!(match ctx.get("/spec/suspend").as_bool() {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                }),
                json!(ctx.list("/status/active").len()),
                json!(if last.is_null() { "<none>".to_string() } else { ctx.since(last) }),
                ctx.age(),
                names,
                images,
                json!(format_selector(ctx.get("/spec/jobTemplate/spec/selector"))),
            ]
        }
        "Service" => service(ctx),
        "Ingress" => {
            let rules = ctx.list("/spec/rules");
            let hosts: Vec<Value> =
                rules.iter().map(|r| r.get("host").cloned().unwrap_or(Value::String(String::new()))).collect();
            let hosts = list_addresses(&hosts, 3);
            let hosts = if hosts.is_empty() || hosts.starts_with(" + ") { format!("*{hosts}") } else { hosts };
            vec![
                ctx.name(),
                json!(or(ctx.str("/spec/ingressClassName"), "<none>")),
                json!(hosts),
                json!(load_balancer(ctx).join(",")),
                json!(if ctx.list("/spec/tls").is_empty() { "80" } else { "80, 443" }),
                ctx.age(),
            ]
        }
        "IngressClass" => {
            let params = ctx.get("/spec/parameters");
            let params = if params.is_object() {
                let kind = params.get("kind").and_then(Value::as_str).unwrap_or_default();
                let group = params.get("apiGroup").and_then(Value::as_str).unwrap_or_default();
                let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
                let kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
                format!("{kind}/{name}")
            } else {
                "<none>".to_string()
            };
            vec![ctx.name(), json!(ctx.str("/spec/controller")), json!(params), ctx.age()]
        }
        "NetworkPolicy" => vec![ctx.name(), json!(format_selector(ctx.get("/spec/podSelector"))), ctx.age()],
        "Endpoints" => vec![ctx.name(), json!(endpoints(ctx)), ctx.age()],
        "EndpointSlice" => {
            let ports: Vec<String> = ctx
                .list("/ports")
                .iter()
                .map(|p| p.get("port").and_then(Value::as_i64).map_or("<unset>".to_string(), |n| n.to_string()))
                .collect();
            let addresses: Vec<Value> = ctx
                .list("/endpoints")
                .iter()
                .flat_map(|e| e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default())
                .collect();
            vec![
                ctx.name(),
                json!(ctx.str("/addressType")),
                json!(if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") }),
                json!(or(&list_addresses(&addresses, 3), "<unset>")),
                ctx.age(),
            ]
        }
        "Node" => node(ctx),
        "Event" => event(res, ctx),
        "Namespace" => vec![ctx.name(), json!(ctx.str("/status/phase")), ctx.age()],
        "Secret" => {
            let n = ctx.map("/data").map_or(0, |m| m.len());
            vec![ctx.name(), json!(ctx.str("/type")), json!(n), ctx.age()]
        }
        "ConfigMap" => {
            let n = ctx.map("/data").map_or(0, |m| m.len()) + ctx.map("/binaryData").map_or(0, |m| m.len());
            vec![ctx.name(), json!(n), ctx.age()]
        }
        "ServiceAccount" => vec![ctx.name(), json!(ctx.list("/secrets").len()), ctx.age()],
        "PersistentVolume" => {
            let claim = ctx.get("/spec/claimRef");
            let claim = if claim.is_object() {
                format!(
                    "{}/{}",
                    claim.get("namespace").and_then(Value::as_str).unwrap_or_default(),
                    claim.get("name").and_then(Value::as_str).unwrap_or_default()
                )
            } else {
                String::new()
            };
            let phase = if ctx.get("/metadata/deletionTimestamp").is_null() {
                ctx.str("/status/phase").to_string()
            } else {
                "Terminating".to_string()
            };
            vec![
                ctx.name(),
                json!(ctx.str("/spec/capacity/storage")),
                json!(access_modes(ctx.list("/spec/accessModes"))),
                json!(ctx.str("/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(ctx.str("/spec/storageClassName")),
                json!(or(ctx.str("/spec/volumeAttributesClassName"), "<unset>")),
                json!(ctx.str("/status/reason")),
                ctx.age(),
                json!(or(ctx.str("/spec/volumeMode"), "<unset>")),
            ]
        }
        "PersistentVolumeClaim" => {
            let bound = !ctx.str("/spec/volumeName").is_empty();
            let phase = if ctx.get("/metadata/deletionTimestamp").is_null() {
                ctx.str("/status/phase").to_string()
            } else {
                "Terminating".to_string()
            };
            vec![
                ctx.name(),
                json!(phase),
                json!(ctx.str("/spec/volumeName")),
                json!(if bound { ctx.str("/status/capacity/storage") } else { "" }),
                json!(if bound { access_modes(ctx.list("/status/accessModes")) } else { String::new() }),
                json!(ctx.str("/spec/storageClassName")),
                json!(or(ctx.str("/status/currentVolumeAttributesClassName"), "<unset>")),
                ctx.age(),
                json!(or(ctx.str("/spec/volumeMode"), "<unset>")),
            ]
        }
        "HorizontalPodAutoscaler" => hpa(res, ctx),
        "PodDisruptionBudget" => {
            let show = |path: &str| match ctx.get(path) {
                Value::Null => "N/A".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![
                ctx.name(),
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                json!(ctx.int("/status/disruptionsAllowed")),
                ctx.age(),
            ]
        }
        "ControllerRevision" => {
            let owner = ctx
                .list("/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true));
            let controller = owner.map_or("<none>".to_string(), |o| {
                let api_version = o.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
                let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or_default();
                let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
                let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                if group.is_empty() { format!("{kind}/{name}") } else { format!("{kind}.{group}/{name}") }
            });
            vec![ctx.name(), json!(controller), json!(ctx.int("/revision")), ctx.age()]
        }
        "PodTemplate" => {
            let (names, images) = template_cells(ctx, "/template/spec");
            vec![ctx.name(), names, images, json!(format_labels(ctx.map("/template/metadata/labels")))]
        }
        "ResourceQuota" => {
            let hard = ctx.map("/status/hard").or(ctx.map("/spec/hard"));
            let mut keys: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
            keys.sort();
            let (mut requests, mut limits) = (Vec::new(), Vec::new());
            for key in keys {
                let used = ctx.get(&format!("/status/used/{}", key.replace('~', "~0").replace('/', "~1")));
                let used = used.as_str().map_or_else(|| "0".to_string(), str::to_string);
                let hard_value = hard.and_then(|h| h.get(key)).and_then(Value::as_str).unwrap_or_default();
                let text = format!("{key}: {used}/{hard_value}");
                if key.starts_with("limits.") { limits.push(text) } else { requests.push(text) }
            }
            vec![ctx.name(), json!(requests.join(", ")), json!(limits.join(", ")), ctx.age()]
        }
        "Binding" => {
            let kind = ctx.str("/roleRef/kind");
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut accounts = Vec::new();
            for s in ctx.list("/subjects") {
                let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                match s.get("kind").and_then(Value::as_str) {
                    Some("User") => users.push(name.to_string()),
                    Some("Group") => groups.push(name.to_string()),
                    Some("ServiceAccount") => accounts
                        .push(format!("{}/{name}", s.get("namespace").and_then(Value::as_str).unwrap_or_default())),
                    _ => {}
                }
            }
            vec![
                ctx.name(),
                json!(format!("{kind}/{}", ctx.str("/roleRef/name"))),
                ctx.age(),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(accounts.join(", ")),
            ]
        }
        "Lease" => vec![ctx.name(), json!(ctx.str("/spec/holderIdentity")), ctx.age()],
        "PriorityClass" => vec![
            ctx.name(),
            json!(ctx.int("/value")),
            bool_cell(ctx.get("/globalDefault"), None),
            ctx.age(),
            json!(or(ctx.str("/preemptionPolicy"), "<unset>")),
        ],
        "RuntimeClass" => vec![ctx.name(), json!(ctx.str("/handler")), ctx.age()],
        "StorageClass" => {
            let annotations = ctx.map("/metadata/annotations");
            let is_default =
                ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
                    .iter()
                    .any(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"));
            let name = ctx.str("/metadata/name");
            let name = if is_default { format!("{name} (default)") } else { name.to_string() };
            vec![
                json!(name),
                json!(ctx.str("/provisioner")),
                json!(or(ctx.str("/reclaimPolicy"), "Delete")),
                json!(or(ctx.str("/volumeBindingMode"), "Immediate")),
                json!(ctx.get("/allowVolumeExpansion").as_bool().unwrap_or(false)),
                ctx.age(),
            ]
        }
        "CSIDriver" => {
            let audiences: Vec<&str> = ctx
                .list("/spec/tokenRequests")
                .iter()
                .filter_map(|t| t.get("audience").and_then(Value::as_str))
                .collect();
            let modes: Vec<&str> = ctx.list("/spec/volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
            vec![
                ctx.name(),
                bool_cell(ctx.get("/spec/attachRequired"), None),
                bool_cell(ctx.get("/spec/podInfoOnMount"), None),
                bool_cell(ctx.get("/spec/storageCapacity"), None),
                json!(or(&audiences.join(","), "<unset>")),
                bool_cell(ctx.get("/spec/requiresRepublish"), None),
                json!(modes.join(",")),
                ctx.age(),
            ]
        }
        "CSINode" => vec![ctx.name(), json!(ctx.list("/spec/drivers").len()), ctx.age()],
        "VolumeAttachment" => vec![
            ctx.name(),
            json!(ctx.str("/spec/attacher")),
            json!(ctx.str("/spec/source/persistentVolumeName")),
            json!(ctx.str("/spec/nodeName")),
            json!(ctx.get("/status/attached").as_bool().unwrap_or(false)),
            ctx.age(),
        ],
        "Webhooks" => vec![ctx.name(), json!(ctx.list("/webhooks").len()), ctx.age()],
        "ValidatingAdmissionPolicy" => {
            let kind = ctx.get("/spec/paramKind");
            let param_kind =
                match (kind.get("apiVersion").and_then(Value::as_str), kind.get("kind").and_then(Value::as_str)) {
                    (Some(v), Some(k)) => format!("{v}/{k}"),
                    _ => "<unset>".to_string(),
                };
            vec![ctx.name(), json!(ctx.list("/spec/validations").len()), json!(param_kind), ctx.age()]
        }
        "ValidatingAdmissionPolicyBinding" => {
            let pr = ctx.get("/spec/paramRef");
            let name = pr.get("name").and_then(Value::as_str).unwrap_or("");
            let namespace = pr.get("namespace").and_then(Value::as_str).unwrap_or("");
            let param_ref = match (name, pr.get("selector").filter(|s| s.is_object())) {
                ("", Some(sel)) => crate::selectors::LabelSelector::from_label_selector(sel)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| "<error>".to_string()),
                ("", None) => "<unset>".to_string(),
                (n, _) if namespace.is_empty() => format!("*/{n}"),
                (n, _) => format!("{namespace}/{n}"),
            };
            vec![ctx.name(), json!(ctx.str("/spec/policyName")), json!(param_ref), ctx.age()]
        }
        "CertificateSigningRequest" => {
            let mut conditions: Vec<&str> =
                ctx.list("/status/conditions").iter().filter_map(|c| c.get("type").and_then(Value::as_str)).collect();
            // As Kubernetes' printer: a signed request also reads "Issued".
            if ctx.get("/status/certificate").as_str().is_some_and(|c| !c.is_empty()) {
                conditions.push("Issued");
            }
            let mut condition = conditions.join(",");
            if condition.is_empty() {
                condition = "Pending".to_string();
            }
            let duration =
                ctx.get("/spec/expirationSeconds").as_i64().map_or("<none>".to_string(), super::human_duration);
            vec![
                ctx.name(),
                ctx.age(),
                json!(ctx.str("/spec/signerName")),
                json!(ctx.str("/spec/username")),
                json!(duration),
                json!(condition),
            ]
        }
        "custom" => vec![ctx.name(), ctx.age()],
        _ => vec![ctx.name(), json!(ctx.str("/metadata/creationTimestamp"))],
    }
}

fn job(ctx: &Ctx<'_>) -> Vec<Value> {
    let has = |t: &str| {
        ctx.list("/status/conditions").iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some(t) && c.get("status").and_then(Value::as_str) == Some("True")
        })
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !ctx.get("/metadata/deletionTimestamp").is_null() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = ctx.int("/status/succeeded");
    let completions = match ctx.get("/spec/completions").as_i64() {
        Some(n) => format!("{succeeded}/{n}"),
        None => {
            let parallelism = ctx.int("/spec/parallelism");
            if parallelism > 1 { format!("{succeeded}/1 of {parallelism}") } else { format!("{succeeded}/1") }
        }
    };
    let parse = |p: &str| ctx.str(p).parse::<jiff::Timestamp>().ok();
    let duration = match (parse("/status/startTime"), parse("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => super::human_duration(ctx.now.duration_since(start).as_secs()),
        (Some(start), Some(end)) => super::human_duration(end.duration_since(start).as_secs()),
    };
    let (names, images) = template_cells(ctx, "/spec/template/spec");
    vec![
        ctx.name(),
        json!(status),
        json!(completions),
        json!(duration),
        ctx.age(),
        names,
        images,
        json!(format_selector(ctx.get("/spec/selector"))),
    ]
}

fn service(ctx: &Ctx<'_>) -> Vec<Value> {
    let type_ = or(ctx.str("/spec/type"), "ClusterIP");
    let external: Vec<String> =
        ctx.list("/spec/externalIPs").iter().filter_map(Value::as_str).map(str::to_string).collect();
    let external_cell = match type_.as_str() {
        "ClusterIP" | "NodePort" => or(&external.join(","), "<none>"),
        "LoadBalancer" => {
            let lb = load_balancer(ctx);
            if !external.is_empty() {
                external.iter().chain(lb.iter()).cloned().collect::<Vec<_>>().join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => ctx.str("/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = ctx
        .list("/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or_default();
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        ctx.name(),
        json!(type_),
        json!(or(ctx.str("/spec/clusterIP"), "<none>")),
        json!(external_cell),
        json!(or(&ports.join(","), "<none>")),
        ctx.age(),
        json!(format_labels(ctx.map("/spec/selector"))),
    ]
}

fn endpoints(ctx: &Ctx<'_>) -> String {
    let subsets = ctx.list("/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let ports = subset.get("ports").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let addresses = subset.get("addresses").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for port in ports {
            let port = port.get("port").and_then(Value::as_i64).unwrap_or_default();
            for address in addresses {
                let ip = address.get("ip").and_then(Value::as_str).unwrap_or_default();
                if list.len() < 3 {
                    list.push(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") });
                }
                count += 1;
            }
        }
    }
    let text = list.join(",");
    if count > 3 {
        format!("{text} + {} more...", count - 3)
    } else if text.is_empty() {
        "<none>".to_string()
    } else {
        text
    }
}

fn node(ctx: &Ctx<'_>) -> Vec<Value> {
    let mut status = Vec::new();
    if let Some(ready) =
        ctx.list("/status/conditions").iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    {
        status.push(if ready.get("status").and_then(Value::as_str) == Some("True") { "Ready" } else { "NotReady" });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if ctx.get("/spec/unschedulable").as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    for (key, value) in ctx.map("/metadata/labels").into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.push(role.to_string());
        } else if key == "kubernetes.io/role"
            && let Some(v) = value.as_str().filter(|v| !v.is_empty())
        {
            roles.push(v.to_string());
        }
    }
    roles.sort();
    roles.dedup();
    let address = |kind: &str| {
        ctx.list("/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map_or("<none>".to_string(), str::to_string)
    };
    vec![
        ctx.name(),
        json!(status.join(",")),
        json!(or(&roles.join(","), "<none>")),
        ctx.age(),
        json!(ctx.str("/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or(ctx.str("/status/nodeInfo/osImage"), "<unknown>")),
        json!(or(ctx.str("/status/nodeInfo/kernelVersion"), "<unknown>")),
        json!(or(ctx.str("/status/nodeInfo/containerRuntimeVersion"), "<unknown>")),
    ]
}

fn event(res: &ResourceInfo, ctx: &Ctx<'_>) -> Vec<Value> {
    // events.k8s.io/v1 names the core fields differently
    let new_api = res.group == "events.k8s.io";
    let field = |core: &str, new: &str| if new_api { ctx.get(new) } else { ctx.get(core) };
    let first_ts = field("/firstTimestamp", "/deprecatedFirstTimestamp");
    let first = if first_ts.is_null() { ctx.since(ctx.get("/eventTime")) } else { ctx.since(first_ts) };
    let last_ts = field("/lastTimestamp", "/deprecatedLastTimestamp");
    let mut last = if last_ts.is_null() { first.clone() } else { ctx.since(last_ts) };
    let mut count = field("/count", "/deprecatedCount").as_i64().unwrap_or_default();
    if ctx.get("/series").is_object() {
        last = ctx.since(ctx.get("/series/lastObservedTime"));
        count = ctx.int("/series/count");
    } else if count == 0 {
        count = 1;
    }
    let object = field("/involvedObject", "/regarding");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = object.get("name").and_then(Value::as_str).unwrap_or_default();
    let source = field("/source", "/deprecatedSource");
    let component = source.get("component").and_then(Value::as_str).unwrap_or_default();
    let host = source.get("host").and_then(Value::as_str).unwrap_or_default();
    let (component, host) = if component.is_empty() {
        let controller = if new_api { "/reportingController" } else { "/reportingComponent" };
        (ctx.str(controller), ctx.str("/reportingInstance"))
    } else {
        (component, host)
    };
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    let message = field("/message", "/note").as_str().unwrap_or_default().trim().to_string();
    vec![
        json!(last),
        json!(ctx.str("/type")),
        json!(ctx.str("/reason")),
        json!(object_ref(kind, name)),
        json!(object.get("fieldPath").and_then(Value::as_str).unwrap_or_default()),
        json!(source),
        json!(message),
        json!(first),
        json!(count),
        ctx.name(),
    ]
}

fn hpa(res: &ResourceInfo, ctx: &Ctx<'_>) -> Vec<Value> {
    let reference = format!("{}/{}", ctx.str("/spec/scaleTargetRef/kind"), ctx.str("/spec/scaleTargetRef/name"));
    let mut targets: Vec<String> = Vec::new();
    if res.version == "v1" {
        let target = ctx.get("/spec/targetCPUUtilizationPercentage").as_i64().unwrap_or(80);
        let current = ctx
            .get("/status/currentCPUUtilizationPercentage")
            .as_i64()
            .map_or("<unknown>".to_string(), |n| format!("{n}%"));
        targets.push(format!("cpu: {current}/{target}%"));
    } else {
        let statuses = ctx.list("/status/currentMetrics");
        for (i, metric) in ctx.list("/spec/metrics").iter().enumerate() {
            let status = statuses.get(i);
            let quantity = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let text = match metric.get("type").and_then(Value::as_str).unwrap_or_default() {
                kind @ ("Resource" | "ContainerResource") => {
                    let key = if kind == "Resource" { "resource" } else { "containerResource" };
                    let spec = metric.get(key).unwrap_or(&Value::Null);
                    let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
                    let current = status.and_then(|s| s.get(key)).and_then(|r| r.get("current"));
                    if let Some(avg) = quantity(spec.pointer("/target/averageValue")) {
                        let cur = quantity(current.and_then(|c| c.get("averageValue"))).unwrap_or("<unknown>".into());
                        format!("{name}: {cur}/{avg}")
                    } else {
                        let cur = current
                            .and_then(|c| c.get("averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".to_string(), |n| format!("{n}%"));
                        let target = spec
                            .pointer("/target/averageUtilization")
                            .and_then(Value::as_i64)
                            .map_or("<auto>".to_string(), |n| format!("{n}%"));
                        format!("{name}: {cur}/{target}")
                    }
                }
                kind @ ("Pods" | "Object" | "External") => {
                    let key = match kind {
                        "Pods" => "pods",
                        "Object" => "object",
                        _ => "external",
                    };
                    let spec = metric.get(key).unwrap_or(&Value::Null);
                    let current = status.and_then(|s| s.get(key)).and_then(|r| r.get("current"));
                    let target = quantity(spec.pointer("/target/value"))
                        .or_else(|| quantity(spec.pointer("/target/averageValue")))
                        .unwrap_or_default();
                    let average =
                        spec.pointer("/target/averageValue").is_some() && spec.pointer("/target/value").is_none();
                    let cur = if average {
                        quantity(current.and_then(|c| c.get("averageValue")))
                    } else {
                        quantity(current.and_then(|c| c.get("value")))
                    }
                    .unwrap_or("<unknown>".into());
                    if average && kind != "Pods" { format!("{cur}/{target} (avg)") } else { format!("{cur}/{target}") }
                }
                _ => "<unknown type>".to_string(),
            };
            targets.push(text);
        }
    }
    let targets = if targets.is_empty() {
        "<none>".to_string()
    } else if targets.len() > 2 {
        format!("{} + {} more...", targets[..2].join(", "), targets.len() - 2)
    } else {
        targets.join(", ")
    };
    let min = ctx.get("/spec/minReplicas").as_i64().map_or("<unset>".to_string(), |n| n.to_string());
    vec![
        ctx.name(),
        json!(reference),
        json!(targets),
        json!(min),
        json!(ctx.int("/spec/maxReplicas")),
        json!(ctx.int("/status/currentReplicas")),
        ctx.age(),
    ]
}
