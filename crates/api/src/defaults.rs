//! Defaulting: the values Kubernetes fills in for fields a user left out, per built-in
//! kind, including the pod specs embedded in workload templates, and the few values the
//! Kubernetes API server sets on create (Job selectors, Namespace finalizers, Pod phase).

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;

/// A Secret's write-only `stringData` goes into `data`, base64-encoded, over any value of
/// the same key there, and is not stored (Kubernetes' v1 conversion does this). A
/// `stringData` that is not a map of strings is left for validation to refuse.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(o) = obj.as_object_mut() else { return };
    let strings = |v: &Value| v.as_object().is_some_and(|m| m.values().all(Value::is_string));
    if !o.get("stringData").is_some_and(strings) || !o.get("data").is_none_or(|d| d.is_object() || d.is_null()) {
        return;
    }
    let Some(Value::Object(given)) = o.remove("stringData") else { return };
    let data = o.entry("data").or_insert_with(|| json!({}));
    if data.is_null() {
        *data = json!({});
    }
    let Some(data) = data.as_object_mut() else { return };
    for (key, value) in given {
        let text = value.as_str().unwrap_or_default();
        data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

/// Fills in Kubernetes' defaults for `obj` of resource `res` (a no-op for kinds without
/// defaults and for custom resources, whose schema defaults are applied elsewhere).
/// Called on create and update; `metadata.uid` is already set. Includes the values
/// Kubernetes' admission plugins set on every Pod (see [`apply_scheme`]).
pub fn apply(res: &ResourceInfo, obj: &mut Value) {
    apply_with(res, obj, true);
}

/// The defaults Kubernetes applies when it decodes a request, without the Pod fields its
/// admission plugins set (ServiceAccount, Priority, DefaultTolerationSeconds): what the
/// creator's managedFields entry covers, as Kubernetes records it before admission.
pub fn apply_scheme(res: &ResourceInfo, obj: &mut Value) {
    apply_with(res, obj, false);
}

fn apply_with(res: &ResourceInfo, obj: &mut Value, admission: bool) {
    if !obj.is_object() || res.definition.is_empty() {
        return;
    }
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => pod(obj, admission),
        ("", "PodTemplate") => template(obj, "/template"),
        ("", "ReplicationController") => replication_controller(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => {
            set(obj, "type", json!("Opaque"));
            fold_string_data(obj);
        }
        ("", "Node") => node(obj),
        ("", "PersistentVolume") => persistent_volume(obj),
        ("", "PersistentVolumeClaim") => {
            set(at(obj, "/spec"), "volumeMode", json!("Filesystem"));
            set(at(obj, "/status"), "phase", json!("Pending"));
        }
        ("", "Endpoints") => {
            for subset in items(obj, "/subsets") {
                for port in items(subset, "/ports") {
                    set(port, "protocol", json!("TCP"));
                }
            }
        }
        ("", "LimitRange") => limit_range(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => {
            set(at(obj, "/spec"), "replicas", json!(1));
            template(obj, "/spec/template");
        }
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps", "DaemonSet") => daemonset(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cronjob(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj, res.version == "v2"),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj),
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in items(obj, "/ports") {
                set(port, "protocol", json!("TCP"));
                set(port, "name", json!(""));
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            set(obj, "reclaimPolicy", json!("Delete"));
            set(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => csi_driver(obj),
        ("scheduling.k8s.io", "PriorityClass") => set(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            // ServiceAccount subjects keep the empty group, which the JSON form omits.
            for subject in items(obj, "/subjects") {
                if matches!(subject.get("kind").and_then(Value::as_str), Some("User" | "Group")) {
                    set(subject, "apiGroup", json!("rbac.authorization.k8s.io"));
                }
            }
        }
        (
            "admissionregistration.k8s.io",
            kind @ ("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"),
        ) => webhooks(obj, kind == "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => admission_policy(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        _ => {}
    }
}

// ---- helpers ---------------------------------------------------------------------------

/// Sets `key` of the object `v` to `value` unless it already holds a non-null value.
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        match map.get(key) {
            Some(existing) if !existing.is_null() => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

/// The object at JSON pointer `path` of `v`, created (as `{}`) along the way when absent
/// or null. When a non-object value is in the way, that value is returned: [`set`],
/// [`put`] and [`items`] do nothing on it, so malformed input is left alone.
fn at<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    let mut cur = v;
    for key in path.split('/').filter(|k| !k.is_empty()) {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else { return cur };
        let entry = map.entry(key.to_string()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        cur = entry;
    }
    cur
}

/// Sets `key` of the object `v` to `value`, replacing what was there (no-op on non-objects).
fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

/// The items of the array at `path` (empty when absent or not an array).
fn items<'a>(v: &'a mut Value, path: &str) -> std::slice::IterMut<'a, Value> {
    match v.pointer_mut(path) {
        Some(Value::Array(list)) => list.iter_mut(),
        _ => [].iter_mut(),
    }
}

fn present(v: &Value, path: &str) -> bool {
    v.pointer(path).is_some_and(|x| !x.is_null())
}

// ---- pods -------------------------------------------------------------------------------

/// Defaults a pod template at `path` (when present): its pod spec.
fn template(obj: &mut Value, path: &str) {
    if let Some(spec) = obj.pointer_mut(&format!("{path}/spec"))
        && spec.is_object()
    {
        pod_spec(spec);
    } else if present(obj, path) {
        pod_spec(at(obj, &format!("{path}/spec")));
    }
}

/// The image pull policy Kubernetes picks: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    let has_digest = image.contains('@');
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    set(p, "timeoutSeconds", json!(1));
    set(p, "periodSeconds", json!(10));
    set(p, "successThreshold", json!(1));
    set(p, "failureThreshold", json!(3));
    handler(p);
}

fn handler(h: &mut Value) {
    if let Some(get) = h.get_mut("httpGet")
        && get.is_object()
    {
        set(get, "path", json!("/"));
        set(get, "scheme", json!("HTTP"));
    }
}

fn container(c: &mut Value, host_network: bool) {
    if !c.is_object() {
        return;
    }
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    set(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    for port in items(c, "/ports") {
        set(port, "protocol", json!("TCP"));
        if host_network && let Some(cp) = port.get("containerPort").cloned() {
            set(port, "hostPort", cp);
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(key) {
            probe(p);
        }
    }
    for key in ["postStart", "preStop"] {
        if let Some(h) = c.pointer_mut(&format!("/lifecycle/{key}")) {
            handler(h);
        }
    }
}

/// Walks `v` setting `apiVersion: v1` on every `fieldRef` and `divisor: "0"` on every
/// `resourceFieldRef` (env, envFrom and downward API volumes).
fn field_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "fieldRef" && child.is_object() {
                    set(child, "apiVersion", json!("v1"));
                } else if k == "resourceFieldRef" && child.is_object() {
                    set(child, "divisor", json!("0"));
                } else {
                    field_refs(child);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(field_refs),
        _ => {}
    }
}

fn volume(v: &mut Value) {
    const MODE_0644: i64 = 0o644;
    if !v.is_object() {
        return;
    }
    if !crate::validation::volume_source_keys().any(|s| present(v, &format!("/{s}"))) {
        set(v, "emptyDir", json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key)
            && src.is_object()
        {
            set(src, "defaultMode", json!(MODE_0644));
        }
    }
    if let Some(hp) = v.get_mut("hostPath")
        && hp.is_object()
    {
        set(hp, "type", json!(""));
    }
    if let Some(iscsi) = v.get_mut("iscsi")
        && iscsi.is_object()
    {
        set(iscsi, "iscsiInterface", json!("default"));
    }
}

/// The pod spec defaults shared by pods and templates.
fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    set(spec, "schedulerName", json!("default-scheduler"));
    if let Some(sa) = spec.get("serviceAccountName").filter(|s| s.as_str().is_some_and(|s| !s.is_empty())).cloned() {
        set(spec, "serviceAccount", sa);
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["/containers", "/initContainers", "/ephemeralContainers"] {
        for c in items(spec, key) {
            container(c, host_network);
        }
    }
    for v in items(spec, "/volumes") {
        volume(v);
    }
    field_refs(spec);
}

/// The Pod's quality-of-service class, from its containers' requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let relevant = |m: Option<&Map<String, Value>>| {
            m.map(|m| m.iter().filter(|(k, _)| *k == "cpu" || *k == "memory").count()).unwrap_or(0)
        };
        if relevant(requests) + relevant(limits) > 0 {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res));
            if limit.is_none() || request.is_some_and(|r| Some(r) != limit) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn pod(obj: &mut Value, admission: bool) {
    let spec = at(obj, "/spec");
    pod_spec(spec);
    set(spec, "enableServiceLinks", json!(true));
    if admission {
        pod_admission(spec);
    }
    // requests default to limits, per resource
    for key in ["/containers", "/initContainers"] {
        for c in items(spec, key) {
            let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = at(c, "/resources/requests");
            for (name, q) in limits {
                set(requests, &name, q);
            }
        }
    }
    let qos = qos_class(spec);
    let status = at(obj, "/status");
    set(status, "phase", json!("Pending"));
    set(status, "qosClass", json!(qos));
}

/// What Kubernetes' admission plugins set on every Pod: priority (Priority), the service
/// account (ServiceAccount) and the not-ready/unreachable tolerations (DefaultTolerationSeconds).
fn pod_admission(spec: &mut Value) {
    if !present(spec, "/priorityClassName") {
        set(spec, "priority", json!(0));
    }
    set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set(spec, "serviceAccountName", json!("default"));
    set(spec, "serviceAccount", json!("default"));
    let tolerations = at(spec, "/tolerations");
    if tolerations.as_object().is_some_and(Map::is_empty) {
        *tolerations = json!([]);
    }
    if let Some(list) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let tolerated = list.iter().any(|t| {
                let k = t.get("key").and_then(Value::as_str);
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
                (k == Some(key) || (k.is_none() && t.get("operator").and_then(Value::as_str) == Some("Exists")))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !tolerated {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

// ---- workloads ---------------------------------------------------------------------------

fn replication_controller(obj: &mut Value) {
    let labels =
        obj.pointer("/spec/template/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned();
    if let Some(labels) = labels {
        let spec = at(obj, "/spec");
        if spec.get("selector").and_then(Value::as_object).is_none_or(Map::is_empty) {
            put(spec, "selector", labels.clone());
        }
        let meta = at(obj, "/metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
            put(meta, "labels", labels);
        }
    }
    set(at(obj, "/spec"), "replicas", json!(1));
    template(obj, "/spec/template");
}

fn deployment(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "replicas", json!(1));
    let strategy = at(spec, "/strategy");
    set(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = at(strategy, "/rollingUpdate");
        set(ru, "maxUnavailable", json!("25%"));
        set(ru, "maxSurge", json!("25%"));
    }
    set(spec, "revisionHistoryLimit", json!(10));
    set(spec, "progressDeadlineSeconds", json!(600));
    template(obj, "/spec/template");
}

fn statefulset(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "replicas", json!(1));
    set(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = at(spec, "/updateStrategy");
    if !present(strategy, "/type") {
        put(strategy, "type", json!("RollingUpdate"));
        at(strategy, "/rollingUpdate");
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && let Some(ru) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object())
    {
        set(ru, "partition", json!(0));
    }
    set(spec, "revisionHistoryLimit", json!(10));
    let retention = at(spec, "/persistentVolumeClaimRetentionPolicy");
    set(retention, "whenDeleted", json!("Retain"));
    set(retention, "whenScaled", json!("Retain"));
    for claim in items(spec, "/volumeClaimTemplates") {
        set(at(claim, "/spec"), "volumeMode", json!("Filesystem"));
        set(at(claim, "/status"), "phase", json!("Pending"));
    }
    template(obj, "/spec/template");
}

fn daemonset(obj: &mut Value) {
    let spec = at(obj, "/spec");
    let strategy = at(spec, "/updateStrategy");
    set(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = at(strategy, "/rollingUpdate");
        set(ru, "maxUnavailable", json!(1));
        set(ru, "maxSurge", json!(0));
    }
    set(spec, "revisionHistoryLimit", json!(10));
    template(obj, "/spec/template");
}

fn job(obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let spec = at(obj, "/spec");
    if !present(spec, "/completions") && !present(spec, "/parallelism") {
        put(spec, "completions", json!(1));
        put(spec, "parallelism", json!(1));
    }
    set(spec, "parallelism", json!(1));
    let backoff = if present(spec, "/backoffLimitPerIndex") { i64::from(i32::MAX) } else { 6 };
    set(spec, "backoffLimit", json!(backoff));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let replacement = if present(spec, "/podFailurePolicy") { "Failed" } else { "TerminatingOrFailed" };
    set(spec, "podReplacementPolicy", json!(replacement));
    for rule in items(spec, "/podFailurePolicy/rules") {
        for cond in items(rule, "/onPodConditions") {
            set(cond, "status", json!("True"));
        }
    }
    // The selector and pod labels the API server generates for a Job on create.
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_empty() && !present(spec, "/selector") {
        put(spec, "selector", json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
        let labels = at(spec, "/template/metadata/labels");
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            set(labels, key, json!(value));
        }
    }
    let template_labels =
        obj.pointer("/spec/template/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned();
    if let Some(labels) = template_labels {
        let meta = at(obj, "/metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
            put(meta, "labels", labels);
        }
    }
    template(obj, "/spec/template");
}

fn cronjob(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "concurrencyPolicy", json!("Allow"));
    set(spec, "suspend", json!(false));
    set(spec, "successfulJobsHistoryLimit", json!(3));
    set(spec, "failedJobsHistoryLimit", json!(1));
    template(obj, "/spec/jobTemplate/spec/template");
}

fn hpa(obj: &mut Value, v2: bool) {
    let spec = at(obj, "/spec");
    set(spec, "minReplicas", json!(1));
    if !v2 {
        return;
    }
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        put(
            spec,
            "metrics",
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        let up = at(behavior, "/scaleUp");
        set(up, "stabilizationWindowSeconds", json!(0));
        set(up, "selectPolicy", json!("Max"));
        set(
            up,
            "policies",
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        let down = at(behavior, "/scaleDown");
        set(down, "stabilizationWindowSeconds", json!(300));
        set(down, "selectPolicy", json!("Max"));
        set(down, "policies", json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]));
    }
}

// ---- other kinds -------------------------------------------------------------------------

fn service(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "type", json!("ClusterIP"));
    set(spec, "sessionAffinity", json!("None"));
    let type_ = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        set(at(spec, "/sessionAffinityConfig/clientIP"), "timeoutSeconds", json!(10800));
    }
    for port in items(spec, "/ports") {
        set(port, "protocol", json!("TCP"));
        if let Some(p) = port.get("port").cloned() {
            set(port, "targetPort", p);
        }
    }
    if type_ == "NodePort" || type_ == "LoadBalancer" {
        set(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if type_ == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if type_ != "ExternalName" {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        set(spec, "ipFamilies", json!(["IPv4"]));
        if let Some(ip) = spec.get("clusterIP").filter(|ip| ip.as_str().is_some_and(|s| !s.is_empty())).cloned() {
            set(spec, "clusterIPs", json!([ip]));
        }
    }
}

fn namespace(obj: &mut Value) {
    if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string) {
        put(at(obj, "/metadata/labels"), "kubernetes.io/metadata.name", json!(name));
    }
    set(at(obj, "/spec"), "finalizers", json!(["kubernetes"]));
    set(at(obj, "/status"), "phase", json!("Active"));
}

fn node(obj: &mut Value) {
    if let Some(capacity) = obj.pointer("/status/capacity").filter(|c| c.is_object()).cloned() {
        set(at(obj, "/status"), "allocatable", capacity);
    }
}

fn persistent_volume(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set(spec, "volumeMode", json!("Filesystem"));
    if let Some(hp) = spec.get_mut("hostPath").filter(|h| h.is_object()) {
        set(hp, "type", json!(""));
    }
    set(at(obj, "/status"), "phase", json!("Pending"));
}

fn limit_range(obj: &mut Value) {
    for item in items(obj, "/spec/limits") {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_object).cloned().unwrap_or_default();
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, q) in &max {
            default.entry(k.clone()).or_insert_with(|| q.clone());
        }
        let mut request = get(item, "defaultRequest");
        for (k, q) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| q.clone());
        }
        if !default.is_empty() {
            put(item, "default", Value::Object(default));
        }
        if !request.is_empty() {
            put(item, "defaultRequest", Value::Object(request));
        }
    }
}

fn network_policy(obj: &mut Value) {
    let spec = at(obj, "/spec");
    for key in ["/ingress", "/egress"] {
        for rule in items(spec, key) {
            for port in items(rule, "/ports") {
                set(port, "protocol", json!("TCP"));
            }
        }
    }
    if !present(spec, "/policyTypes") {
        let mut types = vec![json!("Ingress")];
        if present(spec, "/egress") {
            types.push(json!("Egress"));
        }
        put(spec, "policyTypes", Value::Array(types));
    }
}

fn csi_driver(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "attachRequired", json!(true));
    set(spec, "podInfoOnMount", json!(false));
    set(spec, "storageCapacity", json!(false));
    set(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    set(spec, "requiresRepublish", json!(false));
    set(spec, "seLinuxMount", json!(false));
    set(spec, "volumeLifecycleModes", json!(["Persistent"]));
}

fn webhooks(obj: &mut Value, mutating: bool) {
    for hook in items(obj, "/webhooks") {
        set(hook, "failurePolicy", json!("Fail"));
        set(hook, "matchPolicy", json!("Equivalent"));
        set(hook, "namespaceSelector", json!({}));
        set(hook, "objectSelector", json!({}));
        set(hook, "timeoutSeconds", json!(10));
        if mutating {
            set(hook, "reinvocationPolicy", json!("Never"));
        }
        for rule in items(hook, "/rules") {
            set(rule, "scope", json!("*"));
        }
        if let Some(svc) = hook.pointer_mut("/clientConfig/service").filter(|s| s.is_object()) {
            set(svc, "port", json!(443));
        }
    }
}

/// A ValidatingAdmissionPolicy's defaults (as Kubernetes' `SetDefaults_ValidatingAdmissionPolicySpec`).
fn admission_policy(obj: &mut Value) {
    let spec = at(obj, "/spec");
    set(spec, "failurePolicy", json!("Fail"));
    if let Some(m) = spec.get_mut("matchConstraints").filter(|m| m.is_object()) {
        set(m, "matchPolicy", json!("Equivalent"));
        set(m, "namespaceSelector", json!({}));
        set(m, "objectSelector", json!({}));
        for list in ["/resourceRules", "/excludeResourceRules"] {
            for rule in items(m, list) {
                set(rule, "scope", json!("*"));
            }
        }
    }
}

fn crd(obj: &mut Value) {
    let spec = at(obj, "/spec");
    let names = at(spec, "/names");
    if let Some(kind) = names.get("kind").and_then(Value::as_str).map(str::to_string) {
        set(names, "singular", json!(kind.to_ascii_lowercase()));
        set(names, "listKind", json!(format!("{kind}List")));
    }
    set(at(spec, "/conversion"), "strategy", json!("None"));
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::registry::find_builtin;

    /// Defaults `input` as `group/version/plural` and compares with `expected`.
    fn check(gvr: &str, input: Value, expected: Value) {
        let parts: Vec<&str> = gvr.split('/').collect();
        let res = find_builtin(parts[0], parts[1], parts[2]).expect("resource");
        let mut obj = input;
        apply(res, &mut obj);
        assert_eq!(obj, expected, "\nactual:   {obj}\nexpected: {expected}");
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        check(
            "/v1/secrets",
            json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "admin", "c": "s3cret"}}),
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "YWRtaW4=", "c": "czNjcmV0"}}),
        );
        check("/v1/secrets", json!({"stringData": {"k": ""}}), json!({"type": "Opaque", "data": {"k": ""}}));
        // A wrong type stays for validation to refuse.
        check("/v1/secrets", json!({"stringData": {"k": 1}}), json!({"type": "Opaque", "stringData": {"k": 1}}));
    }

    fn template_spec_defaults(containers: Value) -> Value {
        json!({
            "containers": containers,
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30
        })
    }

    fn nginx_defaulted(image: &str, policy: &str) -> Value {
        json!({"name": "c", "image": image, "imagePullPolicy": policy,
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
    }

    #[test]
    fn pull_policy() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:1@sha256:abcd", "IfNotPresent"),
            ("", "Always"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pods() {
        check(
            "/v1/pods",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                "ports": [{"containerPort": 80}],
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "1"}},
                "livenessProbe": {"httpGet": {"port": 80}}}]}}),
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "c", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}}],
                    "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
                    "livenessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                        "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30, "enableServiceLinks": true,
                "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
                "serviceAccountName": "default", "serviceAccount": "default",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
                "status": {"phase": "Pending", "qosClass": "Burstable"}}),
        );
    }

    #[test]
    fn pod_details() {
        let res = find_builtin("", "v1", "pods").expect("pods");
        let run = |spec: Value| {
            let mut obj = json!({"spec": spec});
            apply(res, &mut obj);
            obj
        };
        let o = run(
            json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        assert_eq!(o["status"]["qosClass"], "Guaranteed");
        let o = run(
            json!({"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never", "priorityClassName": "high",
            "tolerations": [{"operator": "Exists"}], "hostNetwork": true}),
        );
        assert_eq!(o["status"]["qosClass"], "BestEffort");
        assert_eq!(o["spec"]["restartPolicy"], "Never");
        assert!(o["spec"].get("priority").is_none());
        assert_eq!(o["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let o = run(
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53, "protocol": "UDP"}]}],
            "hostNetwork": true, "serviceAccountName": "robot",
            "volumes": [{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}}, {"name": "c", "configMap": {"name": "m", "defaultMode": 256}},
                {"name": "d", "downwardAPI": {"items": [{"path": "p", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}),
        );
        assert_eq!(
            o["spec"]["containers"][0]["ports"][0],
            json!({"containerPort": 53, "protocol": "UDP", "hostPort": 53})
        );
        assert_eq!(o["spec"]["serviceAccount"], "robot");
        assert_eq!(o["spec"]["volumes"][0], json!({"name": "a", "emptyDir": {}}));
        assert_eq!(o["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(o["spec"]["volumes"][2]["configMap"]["defaultMode"], 256);
        assert_eq!(o["spec"]["volumes"][3]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"], "v1");
        // malformed input never panics
        for bad in [
            json!({"spec": "x"}),
            json!({"spec": {"containers": "x"}}),
            json!({"spec": {"containers": [1, null]}}),
            json!({"spec": {"volumes": [{"secret": 3}]}}),
        ] {
            let mut o = bad;
            apply(res, &mut o);
        }
        for (gvr, bad) in [
            ("apps/v1/deployments", json!({"spec": {"strategy": "x", "template": []}})),
            ("batch/v1/jobs", json!({"metadata": "x", "spec": {"template": {"metadata": 3}}})),
            ("/v1/namespaces", json!({"metadata": {"name": "n", "labels": "x"}, "spec": 1, "status": []})),
            ("/v1/services", json!({"spec": {"ports": [1, "x", {"port": 80}]}})),
            ("/v1/limitranges", json!({"spec": {"limits": [{"type": "Container", "max": 3}]}})),
        ] {
            let parts: Vec<&str> = gvr.split('/').collect();
            let res = find_builtin(parts[0], parts[1], parts[2]).expect("resource");
            let mut o = bad.clone();
            apply(res, &mut o);
        }
        let mut not_object = json!([1]);
        apply(res, &mut not_object);
        assert_eq!(not_object, json!([1]));
    }

    #[test]
    fn deployments() {
        check(
            "apps/v1/deployments",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {"spec": template_spec_defaults(json!([nginx_defaulted("nginx", "Always")]))}}}),
        );
        check(
            "apps/v1/deployments",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
            json!({"spec": {"replicas": 0, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, "strategy": {"type": "Recreate"}}}),
        );
    }

    #[test]
    fn other_workloads() {
        check("apps/v1/replicasets", json!({"spec": {}}), json!({"spec": {"replicas": 1}}));
        check(
            "apps/v1/statefulsets",
            json!({"spec": {"serviceName": "s"}}),
            json!({"spec": {"serviceName": "s", "replicas": 1, "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, "revisionHistoryLimit": 10,
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}}}),
        );
        check(
            "apps/v1/statefulsets",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "volumeClaimTemplates": [{"metadata": {"name": "d"}}]}}),
            json!({"spec": {"replicas": 1, "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "OnDelete"},
                "revisionHistoryLimit": 10, "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}]}}),
        );
        check(
            "apps/v1/daemonsets",
            json!({}),
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}, "revisionHistoryLimit": 10}}),
        );
        check(
            "/v1/replicationcontrollers",
            json!({"metadata": {"name": "r"}, "spec": {"template": {"metadata": {"labels": {"app": "a"}}}}}),
            json!({"metadata": {"name": "r", "labels": {"app": "a"}}, "spec": {"replicas": 1, "selector": {"app": "a"},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "schedulerName": "default-scheduler", "securityContext": {}, "terminationGracePeriodSeconds": 30}}}}),
        );
        check(
            "/v1/podtemplates",
            json!({"template": {"spec": {"containers": [{"name": "c", "image": "nginx:latest"}]}}}),
            json!({"template": {"spec": template_spec_defaults(json!([nginx_defaulted("nginx:latest", "Always")]))}}),
        );
    }

    #[test]
    fn jobs() {
        let containers = json!([nginx_defaulted("busybox:1", "IfNotPresent")]);
        let mut spec = template_spec_defaults(containers.clone());
        put(&mut spec, "restartPolicy", json!("Never"));
        check(
            "batch/v1/jobs",
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1"}], "restartPolicy": "Never"}}}}),
            json!({"metadata": {"name": "pi", "uid": "u-1", "labels": {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"}},
                "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": false,
                    "podReplacementPolicy": "TerminatingOrFailed",
                    "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
                    "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"}},
                        "spec": spec}}}),
        );
        check(
            "batch/v1/jobs",
            json!({"metadata": {"name": "j", "labels": {"mine": "x"}}, "spec": {"parallelism": 3, "manualSelector": true, "selector": {"matchLabels": {"a": "b"}}, "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}}),
            json!({"metadata": {"name": "j", "labels": {"mine": "x"}}, "spec": {"parallelism": 3, "manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
                "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": false, "podReplacementPolicy": "Failed",
                "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}}}),
        );
        check(
            "batch/v1/cronjobs",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1"}], "restartPolicy": "Never"}}}}}}),
            json!({"spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "suspend": false, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
        );
    }

    #[test]
    fn services() {
        check(
            "/v1/services",
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}], "clusterIP": "10.0.0.1"}}),
            json!({"spec": {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        check(
            "/v1/services",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}}),
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true, "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}}),
        );
        check(
            "/v1/services",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
            json!({"spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}}),
        );
    }

    #[test]
    fn cluster_kinds() {
        check(
            "/v1/namespaces",
            json!({"metadata": {"name": "dev"}}),
            json!({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        );
        check("/v1/secrets", json!({}), json!({"type": "Opaque"}));
        check("/v1/secrets", json!({"type": "kubernetes.io/tls"}), json!({"type": "kubernetes.io/tls"}));
        check("/v1/configmaps", json!({"data": {}}), json!({"data": {}}));
        check(
            "/v1/persistentvolumes",
            json!({"spec": {"hostPath": {"path": "/d"}}}),
            json!({"spec": {"hostPath": {"path": "/d", "type": ""}, "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
        );
        check(
            "/v1/persistentvolumeclaims",
            json!({"spec": {}}),
            json!({"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
        );
        check(
            "/v1/nodes",
            json!({"status": {"capacity": {"cpu": "2"}}}),
            json!({"status": {"capacity": {"cpu": "2"}, "allocatable": {"cpu": "2"}}}),
        );
        check(
            "storage.k8s.io/v1/storageclasses",
            json!({"provisioner": "p"}),
            json!({"provisioner": "p", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
        );
        check(
            "scheduling.k8s.io/v1/priorityclasses",
            json!({"value": 5}),
            json!({"value": 5, "preemptionPolicy": "PreemptLowerPriority"}),
        );
        check(
            "rbac.authorization.k8s.io/v1/rolebindings",
            json!({"subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
            json!({"subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        check(
            "networking.k8s.io/v1/networkpolicies",
            json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
            json!({"spec": {"egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}], "policyTypes": ["Ingress", "Egress"]}}),
        );
        check("networking.k8s.io/v1/networkpolicies", json!({}), json!({"spec": {"policyTypes": ["Ingress"]}}));
        check(
            "discovery.k8s.io/v1/endpointslices",
            json!({"ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80, "protocol": "TCP", "name": ""}]}),
        );
        check(
            "/v1/limitranges",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}, "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}}]}}),
        );
    }

    #[test]
    fn autoscaling_and_extensions() {
        check("autoscaling/v1/horizontalpodautoscalers", json!({"spec": {}}), json!({"spec": {"minReplicas": 1}}));
        check(
            "autoscaling/v2/horizontalpodautoscalers",
            json!({"spec": {"minReplicas": 2, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
            json!({"spec": {"minReplicas": 2,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}}}),
        );
        check(
            "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            json!({"webhooks": [{"name": "w", "clientConfig": {"service": {"name": "s", "namespace": "n"}}, "rules": [{"operations": ["CREATE"]}]}]}),
            json!({"webhooks": [{"name": "w", "clientConfig": {"service": {"name": "s", "namespace": "n", "port": 443}},
                "rules": [{"operations": ["CREATE"], "scope": "*"}], "failurePolicy": "Fail", "matchPolicy": "Equivalent",
                "namespaceSelector": {}, "objectSelector": {}, "timeoutSeconds": 10, "reinvocationPolicy": "Never"}]}),
        );
        check(
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            json!({"spec": {"names": {"kind": "Widget", "plural": "widgets"}}}),
            json!({"spec": {"names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"}, "conversion": {"strategy": "None"}}}),
        );
    }
}
