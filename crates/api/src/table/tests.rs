//! Tests of the Table printers: column headers, row cells and human durations.

use serde_json::{Value, json};

use super::*;
use crate::registry::{builtin, find_builtin};

const NOW: &str = "2025-01-01T12:00:00Z";

fn resource(gvr: &str) -> &'static ResourceInfo {
    let parts: Vec<&str> = gvr.split('/').collect();
    find_builtin(parts[0], parts[1], parts[2]).expect("resource")
}

fn now() -> Timestamp {
    NOW.parse().expect("timestamp")
}

/// The headers of `gvr`, wide ones marked with `*`.
fn check_columns(gvr: &str, expected: &str) {
    let names: Vec<String> = columns(resource(gvr))
        .iter()
        .map(|c| if c.priority == 1 { format!("*{}", c.name) } else { c.name.clone() })
        .collect();
    assert_eq!(names.join(" | "), expected, "{gvr}");
}

/// The row of `obj` as `gvr` must equal `expected`.
fn check(gvr: &str, obj: Value, expected: Value) {
    let cells = row(resource(gvr), &obj, now());
    assert_eq!(Value::Array(cells), expected, "{gvr}");
}

fn meta(name: &str, age_secs: i64) -> Value {
    let created = now().checked_sub(jiff::SignedDuration::from_secs(age_secs)).expect("time");
    json!({"name": name, "namespace": "default", "creationTimestamp": created.to_string()})
}

fn ago(secs: i64) -> String {
    now().checked_sub(jiff::SignedDuration::from_secs(secs)).expect("time").to_string()
}

#[test]
fn durations() {
    let cases: &[(i64, &str)] = &[
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (310, "5m10s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 4 * 60, "3h4m"),
        (5 * 3600, "5h"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (45 * 86400, "45d"),
        (729 * 86400, "729d"),
        (2 * 365 * 86400 + 30 * 86400, "2y30d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400 + 100 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(*secs), *want, "{secs}");
    }
}

#[test]
fn headers() {
    check_columns(
        "/v1/pods",
        "Name | Ready | Status | Restarts | Age | *IP | *Node | *Nominated Node | *Readiness Gates",
    );
    check_columns(
        "apps/v1/deployments",
        "Name | Ready | Up-to-date | Available | Age | *Containers | *Images | *Selector",
    );
    check_columns("apps/v1/statefulsets", "Name | Ready | Age | *Containers | *Images");
    check_columns("/v1/services", "Name | Type | Cluster-IP | External-IP | Port(s) | Age | *Selector");
    check_columns(
        "batch/v1/cronjobs",
        "Name | Schedule | Timezone | Suspend | Active | Last Schedule | Age | *Containers | *Images | *Selector",
    );
    check_columns(
        "/v1/events",
        "Last Seen | Type | Reason | Object | *Subobject | *Source | Message | *First Seen | *Count | *Name",
    );
    check_columns("rbac.authorization.k8s.io/v1/clusterroles", "Name | Created At");
    check_columns("apiextensions.k8s.io/v1/customresourcedefinitions", "Name | Created At");
    check_columns("coordination.k8s.io/v1/leases", "Name | Holder | Age");
    check_columns("scheduling.k8s.io/v1/priorityclasses", "Name | Value | Global-Default | Age | PreemptionPolicy");
    let cols = columns(resource("/v1/pods"));
    assert_eq!((cols[0].format, cols[1].format, cols[0].type_), ("name", "", "string"));
    let mut custom = resource("/v1/configmaps").clone();
    custom.definition.clear();
    let cols = columns(&custom);
    assert_eq!(
        cols.iter().map(|c| (c.name.as_str(), c.type_)).collect::<Vec<_>>(),
        [("Name", "string"), ("Age", "date")]
    );
}

#[test]
fn every_resource_has_matching_rows() {
    let odd = [json!({}), json!(null), json!([]), json!({"metadata": 3, "spec": "x", "status": [1]})];
    for res in builtin() {
        let cols = columns(res);
        assert!(!cols.is_empty(), "{}", res.plural);
        let names = cols.iter().filter(|c| c.format == "name").count();
        assert_eq!(names, if res.kind == "VolumeAttachment" { 2 } else { 1 }, "{}", res.plural);
        for obj in &odd {
            assert_eq!(row(res, obj, now()).len(), cols.len(), "{} {obj}", res.plural);
        }
    }
}

fn pod(status: Value) -> Value {
    json!({"metadata": meta("web", 300), "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}, "status": status})
}

fn check_pod(obj: Value, ready: &str, status: &str, restarts: &str) {
    let cells = row(resource("/v1/pods"), &obj, now());
    assert_eq!(
        (cells[1].as_str(), cells[2].as_str(), cells[3].as_str()),
        (Some(ready), Some(status), Some(restarts)),
        "{obj}"
    );
}

#[test]
fn pod_rows() {
    check(
        "/v1/pods",
        pod(json!({"phase": "Pending"})),
        json!(["web", "0/2", "Pending", "0", "5m", "<none>", "n1", "<none>", "<none>"]),
    );
    let running = |ready: bool| json!({"name": "a", "ready": ready, "restartCount": 0, "state": {"running": {}}});
    check_pod(
        pod(json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running(true), running(true)]})),
        "2/2",
        "Running",
        "0",
    );
    check_pod(
        pod(
            json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}, running(false)]}),
        ),
        "0/2",
        "ContainerCreating",
        "0",
    );
    check_pod(
        pod(json!({"phase": "Running", "containerStatuses": [
            {"restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}},
            running(true)]})),
        "1/2",
        "CrashLoopBackOff",
        "3 (2m ago)",
    );
    check_pod(
        pod(json!({"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}, {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
        "0/2",
        "Completed",
        "0",
    );
    check_pod(
        pod(
            json!({"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 2}}}, {"state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
        ),
        "0/2",
        "ExitCode:2",
        "0",
    );
    check_pod(
        pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
            {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}, running(true)]})),
        "1/2",
        "NotReady",
        "0",
    );
    let mut init = pod(json!({"phase": "Pending", "initContainerStatuses": [
        {"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"running": {}}}]}));
    init["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
    check_pod(init.clone(), "0/2", "Init:1/2", "0");
    init["status"]["initContainerStatuses"][1] =
        json!({"name": "i2", "state": {"waiting": {"reason": "ErrImagePull"}}});
    check_pod(init.clone(), "0/2", "Init:ErrImagePull", "0");
    init["status"]["initContainerStatuses"][1] =
        json!({"name": "i2", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}});
    check_pod(init, "0/2", "Init:Error", "0");
    let mut sidecar = pod(json!({"phase": "Running", "initContainerStatuses": [
        {"name": "s", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
        "containerStatuses": [running(true), running(true)]}));
    sidecar["spec"]["initContainers"] = json!([{"name": "s", "restartPolicy": "Always"}]);
    check_pod(sidecar, "3/3", "Running", "1");
    let mut deleting = pod(json!({"phase": "Running", "containerStatuses": [running(true), running(true)]}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    check_pod(deleting.clone(), "2/2", "Terminating", "0");
    deleting["status"]["reason"] = json!("NodeLost");
    check_pod(deleting, "2/2", "Unknown", "0");
    check_pod(
        pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
        "0/2",
        "SchedulingGated",
        "0",
    );
    let mut gated = pod(json!({"phase": "Running", "podIPs": [{"ip": "10.1.1.1"}], "nominatedNodeName": "n2",
        "conditions": [{"type": "www.example.com/gate", "status": "True"}]}));
    gated["spec"]["readinessGates"] = json!([{"conditionType": "www.example.com/gate"}, {"conditionType": "other"}]);
    let cells = row(resource("/v1/pods"), &gated, now());
    assert_eq!(cells[5..], [json!("10.1.1.1"), json!("n1"), json!("n2"), json!("1/2")]);
}

#[test]
fn workload_rows() {
    let template =
        json!({"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}});
    check(
        "apps/v1/deployments",
        json!({"metadata": meta("web", 3 * 86400), "spec": {"replicas": 3, "selector": {"matchLabels": {"b": "2", "a": "1"}}, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
        json!(["web", "2/3", 3, 2, "3d", "web,log", "nginx,busybox", "a=1,b=2"]),
    );
    check(
        "apps/v1/replicasets",
        json!({"metadata": meta("web-1", 30), "spec": {"replicas": 2, "selector": {"matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}]}},
            "status": {"replicas": 2}}),
        json!(["web-1", 2, 2, 0, "30s", "", "", "t in (x,y)"]),
    );
    check(
        "apps/v1/statefulsets",
        json!({"metadata": meta("db", 90), "spec": {"replicas": 3}, "status": {"readyReplicas": 1}}),
        json!(["db", "1/3", "90s", "", ""]),
    );
    check(
        "apps/v1/daemonsets",
        json!({"metadata": meta("agent", 60), "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}}),
        json!(["agent", 2, 2, 1, 2, 1, "os=linux", "60s", "", "", "<none>"]),
    );
    check(
        "/v1/replicationcontrollers",
        json!({"metadata": meta("rc", 5), "spec": {"replicas": 1, "selector": {"app": "x"}}}),
        json!(["rc", 1, 0, 0, "5s", "", "", "app=x"]),
    );
    check(
        "batch/v1/jobs",
        json!({"metadata": meta("pi", 600), "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}},
            "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(590), "conditions": [{"type": "Complete", "status": "True"}]}}),
        json!(["pi", "Complete", "1/1", "10s", "10m", "", "", "batch.kubernetes.io/controller-uid=u"]),
    );
    check(
        "batch/v1/jobs",
        json!({"metadata": meta("par", 60), "spec": {"parallelism": 3}, "status": {"startTime": ago(60)}}),
        json!(["par", "Running", "0/1 of 3", "60s", "60s", "", "", "<none>"]),
    );
    check(
        "batch/v1/cronjobs",
        json!({"metadata": meta("tick", 7200), "spec": {"schedule": "*/1 * * * *", "suspend": false},
            "status": {"active": [{}], "lastScheduleTime": ago(30)}}),
        json!(["tick", "*/1 * * * *", "<none>", "False", 1, "30s", "120m", "", "", "<none>"]),
    );
}

#[test]
fn service_and_network_rows() {
    check(
        "/v1/services",
        json!({"metadata": meta("web", 60), "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "dns"}}}),
        json!(["web", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "60s", "k8s-app=dns"]),
    );
    check(
        "/v1/services",
        json!({"metadata": meta("lb", 60), "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
        json!(["lb", "LoadBalancer", "10.0.0.1", "<pending>", "80:30080/TCP", "60s", "<none>"]),
    );
    check(
        "/v1/services",
        json!({"metadata": meta("ext", 60), "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        json!(["ext", "ExternalName", "<none>", "example.com", "<none>", "60s", "<none>"]),
    );
    check(
        "networking.k8s.io/v1/ingresses",
        json!({"metadata": meta("ing", 60), "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.com"}, {}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        json!(["ing", "nginx", "a.com", "1.2.3.4", "80, 443", "60s"]),
    );
    check(
        "networking.k8s.io/v1/ingresses",
        json!({"metadata": meta("ing", 60), "spec": {"rules": [{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}]}}),
        json!(["ing", "<none>", "a,b,c + 1 more...", "", "80", "60s"]),
    );
    check(
        "/v1/endpoints",
        json!({"metadata": meta("web", 60), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
        json!(["web", "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...", "60s"]),
    );
    check("/v1/endpoints", json!({"metadata": meta("none", 60)}), json!(["none", "<none>", "60s"]));
    check(
        "discovery.k8s.io/v1/endpointslices",
        json!({"metadata": meta("web-abc", 60), "addressType": "IPv4", "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}]}),
        json!(["web-abc", "IPv4", "80", "10.0.0.1", "60s"]),
    );
    check(
        "networking.k8s.io/v1/networkpolicies",
        json!({"metadata": meta("deny", 60), "spec": {"podSelector": {}}}),
        json!(["deny", "<none>", "60s"]),
    );
}

#[test]
fn cluster_rows() {
    check(
        "/v1/nodes",
        json!({"metadata": {"name": "n1", "creationTimestamp": ago(86400 * 10), "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"},
                "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}),
        json!([
            "n1",
            "Ready,SchedulingDisabled",
            "control-plane,master",
            "10d",
            "v1.33.0",
            "192.168.1.2",
            "<none>",
            "Debian",
            "<unknown>",
            "<unknown>"
        ]),
    );
    check(
        "/v1/nodes",
        json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        json!(["n2", "NotReady", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]),
    );
    check(
        "/v1/namespaces",
        json!({"metadata": meta("dev", 5), "status": {"phase": "Active"}}),
        json!(["dev", "Active", "5s"]),
    );
    check(
        "/v1/secrets",
        json!({"metadata": meta("s", 5), "type": "Opaque", "data": {"a": "", "b": ""}}),
        json!(["s", "Opaque", 2, "5s"]),
    );
    check(
        "/v1/configmaps",
        json!({"metadata": meta("c", 5), "data": {"a": ""}, "binaryData": {"b": ""}}),
        json!(["c", 2, "5s"]),
    );
    check("/v1/serviceaccounts", json!({"metadata": meta("default", 5)}), json!(["default", 0, "5s"]));
    check(
        "rbac.authorization.k8s.io/v1/clusterroles",
        json!({"metadata": {"name": "admin", "creationTimestamp": "2024-01-01T00:00:00Z"}}),
        json!(["admin", "2024-01-01T00:00:00Z"]),
    );
    check(
        "rbac.authorization.k8s.io/v1/rolebindings",
        json!({"metadata": meta("rb", 5), "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "Group", "name": "devs"}]}),
        json!(["rb", "Role/r", "5s", "bob", "devs", "ns/sa"]),
    );
    check(
        "coordination.k8s.io/v1/leases",
        json!({"metadata": meta("l", 5), "spec": {"holderIdentity": "me"}}),
        json!(["l", "me", "5s"]),
    );
    check(
        "scheduling.k8s.io/v1/priorityclasses",
        json!({"metadata": meta("high", 5), "value": 1000, "preemptionPolicy": "Never"}),
        json!(["high", 1000, false, "5s", "Never"]),
    );
    check(
        "storage.k8s.io/v1/storageclasses",
        json!({"metadata": {"name": "std", "creationTimestamp": ago(5), "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "p"}),
        json!(["std (default)", "p", "Delete", "Immediate", false, "5s"]),
    );
    check(
        "/v1/persistentvolumes",
        json!({"metadata": meta("pv1", 5), "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "c"}, "storageClassName": "std", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}}),
        json!(["pv1", "1Gi", "RWO,RWX", "Retain", "Bound", "ns/c", "std", "<unset>", "", "5s", "Filesystem"]),
    );
    check(
        "/v1/persistentvolumeclaims",
        json!({"metadata": meta("c", 5), "spec": {"volumeName": "pv1", "storageClassName": "std"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}),
        json!(["c", "Bound", "pv1", "1Gi", "RWO", "std", "<unset>", "5s", "<unset>"]),
    );
    check(
        "/v1/resourcequotas",
        json!({"metadata": meta("q", 5), "spec": {"hard": {"pods": "10", "limits.cpu": "2"}}, "status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"}}}),
        json!(["q", "pods: 1/10", "limits.cpu: 0/2", "5s"]),
    );
    check(
        "apps/v1/controllerrevisions",
        json!({"metadata": {"name": "ds-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]}, "revision": 2}),
        json!(["ds-1", "daemonset.apps/ds", 2, "<unknown>"]),
    );
    check(
        "policy/v1/poddisruptionbudgets",
        json!({"metadata": meta("p", 5), "spec": {"minAvailable": "50%"}}),
        json!(["p", "50%", "N/A", 0, "5s"]),
    );
    check(
        "admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({"metadata": meta("w", 5), "webhooks": [{}, {}]}),
        json!(["w", 2, "5s"]),
    );
}

#[test]
fn event_and_hpa_rows() {
    check(
        "/v1/events",
        json!({"metadata": meta("web.1", 60), "type": "Normal", "reason": "Scheduled", "message": " assigned \n",
            "involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "default-scheduler"},
            "firstTimestamp": ago(60), "lastTimestamp": ago(30), "count": 2}),
        json!(["30s", "Normal", "Scheduled", "pod/web", "", "default-scheduler", "assigned", "60s", 2, "web.1"]),
    );
    check(
        "events.k8s.io/v1/events",
        json!({"metadata": meta("e", 60), "type": "Warning", "reason": "BackOff", "note": "again",
            "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"}, "reportingController": "kubelet", "reportingInstance": "n1",
            "eventTime": ago(60), "series": {"count": 5, "lastObservedTime": ago(10)}}),
        json!(["10s", "Warning", "BackOff", "pod/web", "spec.containers{web}", "kubelet, n1", "again", "60s", 5, "e"]),
    );
    check(
        "autoscaling/v2/horizontalpodautoscalers",
        json!({"metadata": meta("web", 60), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 20}}}]}}),
        json!(["web", "Deployment/web", "cpu: 20%/50%, memory: <unknown>/100Mi", "1", 5, 2, "60s"]),
    );
    check(
        "autoscaling/v1/horizontalpodautoscalers",
        json!({"metadata": meta("web", 60), "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}}),
        json!(["web", "Deployment/web", "cpu: <unknown>/80%", "<unset>", 3, 0, "60s"]),
    );
}
