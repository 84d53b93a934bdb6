//! Tests of protobuf decoding and encoding: bodies built with k8s-pb's prost types in the
//! envelope kubectl sends, checked against the JSON form; bad input must give errors.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

use super::*;

/// A body as kubectl sends it: the magic, then a runtime.Unknown holding the object.
fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    envelope(api_version, kind, object.encode_to_vec())
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Decodes `body`, compares with `expect`, and checks that encoding the JSON back and
/// decoding again gives the same JSON.
fn check(body: &[u8], expect: Value) {
    assert!(is_protobuf(body));
    let got = decode(body).unwrap();
    assert_eq!(got, expect, "\n got: {got:#}\nwant: {expect:#}");
    let again = decode(&encode(&got).unwrap()).unwrap();
    assert_eq!(again, expect, "round trip");
}

fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// ObjectMeta as Go writes it: every non-pointer field present, empty or zero.
fn object_meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| (k.to_string(), Quantity { string: s(v) })).collect()
}

#[test]
fn deployment() {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx:1.27"),
        image_pull_policy: s(""),
        stdin: Some(false),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            host_port: Some(0),
            protocol: s("TCP"),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m")]),
            requests: quantities(&[("memory", "128Mi")]),
            ..Default::default()
        }),
        env: vec![
            core::EnvVar { name: s("A"), value: s("1"), ..Default::default() },
            core::EnvVar {
                name: s("POD"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector { api_version: s("v1"), field_path: s("metadata.name") }),
                    ..Default::default()
                }),
            },
        ],
        ..Default::default()
    };
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web", &[("app", "web")])),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(object_meta("", &[("app", "web")])),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    host_ipc: Some(false),
                    termination_grace_period_seconds: Some(0),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy::default()),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    check(
        &body("apps/v1", "Deployment", &deployment),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {
                                "limits": {"cpu": "500m"},
                                "requests": {"memory": "128Mi"}
                            },
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "POD", "valueFrom": {"fieldRef": {
                                    "apiVersion": "v1", "fieldPath": "metadata.name"}}}
                            ]
                        }]
                    }
                },
                "strategy": {}
            },
            "status": {}
        }),
    );
}

#[test]
fn config_map() {
    let config_map = core::ConfigMap {
        metadata: Some(object_meta("settings", &[])),
        data: [("a".to_string(), "1".to_string()), ("empty".to_string(), String::new())].into(),
        binary_data: [("bin".to_string(), vec![0u8, 1, 2, 255])].into(),
        immutable: Some(false),
    };
    check(
        &body("v1", "ConfigMap", &config_map),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
            "immutable": false
        }),
    );
}

/// What a decode of `body` must fail with (the error's message).
fn check_err(body: &[u8], expect: &str) {
    let err = decode(body).unwrap_err().to_string();
    assert!(err.contains(expect), "want {expect:?}, got {err:?}");
}

#[test]
fn bad_bodies() {
    let good = body("v1", "ConfigMap", &core::ConfigMap::default());
    let meta_with = |raw: Vec<u8>| {
        // ConfigMap.metadata (field 1) holding `raw`.
        let mut out = vec![0x0a, raw.len() as u8];
        out.extend(raw);
        envelope("v1", "ConfigMap", out)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "missing the k8s"),
        (b"k8s".to_vec(), "missing the k8s"),
        (b"{\"kind\":\"Pod\"}".to_vec(), "missing the k8s"),
        (b"k8s\x01\x0a\x00".to_vec(), "missing the k8s"),
        (b"k8s\0".to_vec(), "lacks apiVersion or kind"),
        ([&MAGIC[..], &[0xff; 11]].concat(), "malformed varint"),
        ([&MAGIC[..], &[0x12, 0x05, 0x01]].concat(), "truncated"),
        // A length claiming 2^62 bytes.
        ([&MAGIC[..], &[0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]].concat(), "truncated"),
        ([&MAGIC[..], &[0x0b]].concat(), "wire type 3"),
        ([&MAGIC[..], &[0x00, 0x00]].concat(), "field number 0"),
        (
            body("example.com/v1", "Widget", &core::ConfigMap::default()),
            "no protobuf message for example.com/v1, Kind=Widget",
        ),
        (body("v1", "Deployment", &core::ConfigMap::default()), "no protobuf message"),
        (envelope("", "ConfigMap", vec![]), "lacks apiVersion or kind"),
        // metadata.name as a varint
        (meta_with(vec![0x08, 0x01]), "field name: unexpected wire type Varint"),
        // metadata.name not UTF-8
        (meta_with(vec![0x0a, 0x02, 0xc3, 0x28]), "not valid UTF-8"),
        // metadata.creationTimestamp in year 10000
        (meta_with(vec![0x42, 0x07, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x08]), "invalid time"),
        // metadata.labels entry cut short
        (meta_with(vec![0x5a, 0x03, 0x0a, 0x05, 0x61]), "truncated"),
        (
            {
                let mut unknown = Unknown::decode(&good[4..]).unwrap();
                unknown.content_encoding = s("gzip");
                [&MAGIC[..], &unknown.encode_to_vec()].concat()
            },
            "unsupported protobuf envelope encoding \"gzip\"",
        ),
        (
            {
                let mut unknown = Unknown::decode(&good[4..]).unwrap();
                unknown.content_type = s("application/json");
                [&MAGIC[..], &unknown.encode_to_vec()].concat()
            },
            "unsupported protobuf envelope encoding",
        ),
    ];
    for (body, expect) in cases {
        check_err(&body, expect);
    }
}

#[test]
fn every_truncation_is_an_error_or_a_prefix_message() {
    let deployment = apps::Deployment {
        metadata: Some(object_meta("web", &[("app", "web")])),
        spec: Some(apps::DeploymentSpec { replicas: Some(3), ..Default::default() }),
        status: None,
    };
    let full = body("apps/v1", "Deployment", &deployment);
    for len in 0..full.len() {
        // Must not panic; a cut inside any field must be an error.
        let _ = decode(&full[..len]);
    }
    // Cutting the last byte cuts inside the envelope's last field.
    assert!(decode(&full[..full.len() - 1]).is_err());
}

#[test]
fn every_kind_decodes_an_empty_object() {
    let tables = table::tables().unwrap();
    let mut n = 0;
    for (api_version, kind, _) in tables.all_kinds() {
        let expect = json!({"apiVersion": api_version, "kind": kind});
        check(&envelope(api_version, kind, vec![]), expect);
        n += 1;
    }
    assert!(n > 150, "only {n} kinds");
}

/// Removes members whose value is null: Go writes a zero `metav1.Time` as
/// `"creationTimestamp": null`, which the decoder leaves out.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Bodies captured from kubectl 1.33's `create` commands (`scripts/capture-kubectl-protobuf.py`)
/// decode to the JSON kubectl itself prints for the same command with `--dry-run=client -o json`.
#[test]
fn kubectl_create_bodies() {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!("testdata/", $name, ".pb"))[..],
                include_str!(concat!("testdata/", $name, ".json")),
            )
        };
    }
    let fixtures = [
        fixture!("deployment"),
        fixture!("configmap"),
        fixture!("secret"),
        fixture!("namespace"),
        fixture!("service"),
        fixture!("job"),
        fixture!("cronjob"),
        fixture!("role"),
        fixture!("rolebinding"),
        fixture!("clusterrole"),
        fixture!("serviceaccount"),
        fixture!("quota"),
        fixture!("priorityclass"),
        fixture!("pdb"),
        fixture!("ingress"),
        fixture!("service-externalname"),
        fixture!("service-nodeport"),
        fixture!("clusterrolebinding"),
    ];
    for (name, body, json_text) in fixtures {
        let expect = without_nulls(serde_json::from_str(json_text).unwrap());
        let got = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expect, "{name}\n got: {got:#}\nwant: {expect:#}");
        // Our encoding of it decodes to the same object.
        assert_eq!(decode(&encode(&got).unwrap()).unwrap(), expect, "{name} round trip");
    }
}

fn int_or_string(v: Value) -> Option<IntOrString> {
    Some(match v {
        Value::String(text) => IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some(text) },
        other => IntOrString { r#type: Some(0), int_val: other.as_i64().map(|i| i as i32), str_val: s("") },
    })
}

fn time(seconds: i64, nanos: i32) -> Option<meta::Time> {
    Some(meta::Time { seconds: Some(seconds), nanos: Some(nanos) })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn container(name: &str, image: &str) -> core::Container {
    core::Container { name: s(name), image: s(image), ..Default::default() }
}

/// Kinds kubectl creates, built as Go would write them, with the JSON they must decode to.
#[test]
fn kinds() {
    use k8s_pb::api::{batch::v1 as batch, networking::v1 as net, policy::v1 as policy};
    use k8s_pb::api::{rbac::v1 as rbac, scheduling::v1 as scheduling};

    let cases: Vec<(Vec<u8>, Value)> = vec![
        (
            body(
                "v1",
                "Secret",
                &core::Secret {
                    metadata: Some(object_meta("creds", &[])),
                    data: [("password".to_string(), b"s3cr3t".to_vec())].into(),
                    string_data: [("user".to_string(), "admin".to_string())].into(),
                    r#type: s("Opaque"),
                    immutable: None,
                },
            ),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                "data": {"password": "czNjcjN0"}, "stringData": {"user": "admin"},
                "type": "Opaque"}),
        ),
        (
            body(
                "v1",
                "Service",
                &core::Service {
                    metadata: Some(object_meta("web", &[])),
                    spec: Some(core::ServiceSpec {
                        ports: vec![
                            core::ServicePort {
                                name: s("http"),
                                protocol: s("TCP"),
                                port: Some(80),
                                target_port: int_or_string(json!(8080)),
                                node_port: Some(0),
                                ..Default::default()
                            },
                            core::ServicePort {
                                name: s("tls"),
                                app_protocol: s(""),
                                port: Some(443),
                                target_port: int_or_string(json!("https")),
                                ..Default::default()
                            },
                        ],
                        cluster_ip: s(""),
                        r#type: s("NodePort"),
                        ..Default::default()
                    }),
                    status: None,
                },
            ),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "tls", "appProtocol": "", "port": 443, "targetPort": "https"}
            ]}}),
        ),
        (
            body(
                "v1",
                "Namespace",
                &core::Namespace {
                    metadata: Some(object_meta("team-a", &[])),
                    spec: Some(core::NamespaceSpec { finalizers: strings(&["kubernetes"]) }),
                    status: Some(core::NamespaceStatus { phase: s("Active"), conditions: vec![] }),
                },
            ),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ),
        (
            body(
                "v1",
                "ServiceAccount",
                &core::ServiceAccount {
                    metadata: Some(object_meta("robot", &[])),
                    secrets: vec![core::ObjectReference { name: s("token"), namespace: s(""), ..Default::default() }],
                    automount_service_account_token: Some(false),
                    ..Default::default()
                },
            ),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"},
                "secrets": [{"name": "token"}], "automountServiceAccountToken": false}),
        ),
        (
            body(
                "batch/v1",
                "CronJob",
                &batch::CronJob {
                    metadata: Some(object_meta("tick", &[])),
                    spec: Some(batch::CronJobSpec {
                        schedule: s("*/5 * * * *"),
                        time_zone: s("Etc/UTC"),
                        starting_deadline_seconds: Some(0),
                        concurrency_policy: s("Forbid"),
                        suspend: Some(false),
                        job_template: Some(batch::JobTemplateSpec {
                            metadata: Some(object_meta("", &[])),
                            spec: Some(batch::JobSpec {
                                backoff_limit: Some(0),
                                template: Some(core::PodTemplateSpec {
                                    metadata: None,
                                    spec: Some(core::PodSpec {
                                        containers: vec![container("tick", "busybox")],
                                        restart_policy: s("OnFailure"),
                                        ..Default::default()
                                    }),
                                }),
                                ..Default::default()
                            }),
                        }),
                        ..Default::default()
                    }),
                    status: None,
                },
            ),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC",
                    "startingDeadlineSeconds": 0, "concurrencyPolicy": "Forbid",
                    "suspend": false, "jobTemplate": {"metadata": {}, "spec": {
                        "backoffLimit": 0, "template": {"spec": {
                            "containers": [{"name": "tick", "image": "busybox"}],
                            "restartPolicy": "OnFailure"}}}}}}),
        ),
        (
            body(
                "rbac.authorization.k8s.io/v1",
                "Role",
                &rbac::Role {
                    metadata: Some(object_meta("reader", &[])),
                    rules: vec![rbac::PolicyRule {
                        verbs: strings(&["get", "list"]),
                        api_groups: strings(&[""]),
                        resources: strings(&["pods"]),
                        ..Default::default()
                    }],
                },
            ),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "reader"},
                "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
        ),
        (
            body(
                "scheduling.k8s.io/v1",
                "PriorityClass",
                &scheduling::PriorityClass {
                    metadata: Some(object_meta("high", &[])),
                    value: Some(1000),
                    global_default: Some(false),
                    description: s("important"),
                    preemption_policy: s("Never"),
                },
            ),
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "high"}, "value": 1000, "description": "important",
                "preemptionPolicy": "Never"}),
        ),
        (
            body(
                "policy/v1",
                "PodDisruptionBudget",
                &policy::PodDisruptionBudget {
                    metadata: Some(object_meta("web", &[])),
                    spec: Some(policy::PodDisruptionBudgetSpec {
                        min_available: int_or_string(json!("50%")),
                        selector: Some(meta::LabelSelector {
                            match_expressions: vec![meta::LabelSelectorRequirement {
                                key: s("tier"),
                                operator: s("In"),
                                values: strings(&["web", "api"]),
                            }],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    status: None,
                },
            ),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "web"}, "spec": {"minAvailable": "50%", "selector": {
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["web", "api"]}]}}}),
        ),
        (
            body(
                "networking.k8s.io/v1",
                "Ingress",
                &net::Ingress {
                    metadata: Some(object_meta("web", &[])),
                    spec: Some(net::IngressSpec {
                        ingress_class_name: s(""),
                        rules: vec![net::IngressRule {
                            host: s("example.com"),
                            ingress_rule_value: Some(net::IngressRuleValue {
                                http: Some(net::HttpIngressRuleValue {
                                    paths: vec![net::HttpIngressPath {
                                        path: s("/"),
                                        path_type: s("Prefix"),
                                        backend: Some(net::IngressBackend {
                                            service: Some(net::IngressServiceBackend {
                                                name: s("web"),
                                                port: Some(net::ServiceBackendPort { name: s(""), number: Some(80) }),
                                            }),
                                            resource: None,
                                        }),
                                    }],
                                }),
                            }),
                        }],
                        ..Default::default()
                    }),
                    status: None,
                },
            ),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web"}, "spec": {"ingressClassName": "", "rules": [{
                    "host": "example.com", "http": {"paths": [{"path": "/",
                        "pathType": "Prefix", "backend": {"service": {"name": "web",
                            "port": {"number": 80}}}}]}}]}}),
        ),
    ];
    for (body, expect) in cases {
        check(&body, expect);
    }
}

/// The well-known messages: Time, MicroTime, FieldsV1, RawExtension, inline structs,
/// negative int32s, and apiextensions' JSON and `JSONSchemaPropsOr*` unions.
#[test]
fn well_known_messages() {
    use k8s_pb::api::coordination::v1 as coordination;
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    use k8s_pb::apimachinery::pkg::runtime::RawExtension;

    let mut pod_meta = object_meta("p", &[]);
    pod_meta.creation_timestamp = time(1_700_000_000, 5);
    pod_meta.deletion_timestamp = time(1_700_000_060, 0);
    pod_meta.owner_references = vec![meta::OwnerReference {
        api_version: s("apps/v1"),
        kind: s("ReplicaSet"),
        name: s("rs"),
        uid: s("u1"),
        controller: Some(true),
        block_owner_deletion: None,
    }];
    pod_meta.managed_fields = vec![meta::ManagedFieldsEntry {
        manager: s("kubectl"),
        operation: s("Update"),
        api_version: s("v1"),
        time: time(1_700_000_000, 0),
        fields_type: s("FieldsV1"),
        fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:metadata":{}}"#.to_vec()) }),
        subresource: s(""),
    }];
    let pod = core::Pod {
        metadata: Some(pod_meta),
        spec: Some(core::PodSpec {
            containers: vec![container("c", "i")],
            priority: Some(-5),
            security_context: Some(core::PodSecurityContext { supplemental_groups: vec![1, 2], ..Default::default() }),
            volumes: vec![
                core::Volume {
                    name: s("cfg"),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference { name: s("settings") }),
                            default_mode: Some(420),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: s("scratch"),
                    volume_source: Some(core::VolumeSource {
                        empty_dir: Some(core::EmptyDirVolumeSource {
                            medium: s(""),
                            size_limit: Some(Quantity { string: s("1Gi") }),
                        }),
                        ..Default::default()
                    }),
                },
            ],
            ..Default::default()
        }),
        status: None,
    };
    let lease = coordination::Lease {
        metadata: Some(object_meta("l", &[])),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-a"),
            lease_duration_seconds: Some(15),
            renew_time: Some(meta::MicroTime { seconds: Some(1_700_000_000), nanos: Some(123_456_789) }),
            ..Default::default()
        }),
    };
    let revision = apps::ControllerRevision {
        metadata: Some(object_meta("r", &[])),
        data: Some(RawExtension { raw: Some(br#"{"spec":{"x":1}}"#.to_vec()) }),
        revision: Some(3),
    };
    let props = |kind: &str| ext::JsonSchemaProps { r#type: s(kind), ..Default::default() };
    let schema = ext::JsonSchemaProps {
        properties: [
            (
                "replicas".to_string(),
                ext::JsonSchemaProps { minimum: Some(0.0), maximum: Some(1.5), ..props("integer") },
            ),
            (
                "tags".to_string(),
                ext::JsonSchemaProps {
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(props("string"))),
                        j_son_schemas: vec![],
                    })),
                    ..props("array")
                },
            ),
            (
                "labels".to_string(),
                ext::JsonSchemaProps {
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: Some(Box::new(props("string"))),
                    })),
                    ..props("object")
                },
            ),
            (
                "free".to_string(),
                ext::JsonSchemaProps {
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(false),
                        schema: None,
                    })),
                    default: Some(ext::Json { raw: Some(br#"{"a":1}"#.to_vec()) }),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        required: strings(&["replicas"]),
        ..props("object")
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(object_meta("widgets.example.com", &[])),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(schema) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };

    let cases: Vec<(Vec<u8>, Value)> = vec![
        (
            body("v1", "Pod", &pod),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "p",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "deletionTimestamp": "2023-11-14T22:14:20Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": "u1", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "apiVersion": "v1", "time": "2023-11-14T22:13:20Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
            }, "spec": {
                "containers": [{"name": "c", "image": "i"}],
                "priority": -5,
                "securityContext": {"supplementalGroups": [1, 2]},
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}
                ]
            }}),
        ),
        (
            body("coordination.k8s.io/v1", "Lease", &lease),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "l"}, "spec": {"holderIdentity": "node-a",
                    "leaseDurationSeconds": 15,
                    "renewTime": "2023-11-14T22:13:20.123456Z"}}),
        ),
        (
            body("apps/v1", "ControllerRevision", &revision),
            json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": "r"}, "data": {"spec": {"x": 1}}, "revision": 3}),
        ),
        (
            body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"}, "spec": {
                "group": "example.com", "scope": "Namespaced", "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object", "required": ["replicas"], "properties": {
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 1.5},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "labels": {"type": "object",
                                "additionalProperties": {"type": "string"}},
                            "free": {"x-kubernetes-preserve-unknown-fields": true,
                                "additionalProperties": false, "default": {"a": 1}}
                        }}}}]}}),
        ),
    ];
    for (body, expect) in cases {
        check(&body, expect);
    }
}

/// Packed repeated scalars (proto3 style) decode like unpacked ones.
#[test]
fn packed_repeated_scalars() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct PackedSecurityContext {
        #[prost(int64, repeated, packed = "true", tag = "4")]
        supplemental_groups: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct PodSpec {
        #[prost(message, optional, tag = "14")]
        security_context: Option<PackedSecurityContext>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Pod {
        #[prost(message, optional, tag = "2")]
        spec: Option<PodSpec>,
    }
    let pod = Pod {
        spec: Some(PodSpec { security_context: Some(PackedSecurityContext { supplemental_groups: vec![1, 300, -1] }) }),
    };
    check(
        &body("v1", "Pod", &pod),
        json!({"apiVersion": "v1", "kind": "Pod",
            "spec": {"securityContext": {"supplementalGroups": [1, 300, -1]}}}),
    );
}

/// Recursive messages nested beyond [`MAX_DEPTH`] are refused, decoding and encoding.
#[test]
fn over_deep_nesting_is_refused() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let mut props = ext::JsonSchemaProps::default();
    let mut json_props = json!({});
    for _ in 0..MAX_DEPTH + 10 {
        props = ext::JsonSchemaProps { not: Some(Box::new(props)), ..Default::default() };
        json_props = json!({"not": json_props});
    }
    let crd = ext::CustomResourceDefinition {
        spec: Some(ext::CustomResourceDefinitionSpec {
            versions: vec![ext::CustomResourceDefinitionVersion {
                schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(props) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    check_err(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd), "nested deeper than 100");
    let object = json!({"apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {"versions": [{"schema": {"openAPIV3Schema": json_props}}]}});
    let err = encode(&object).unwrap_err();
    assert!(matches!(err, ProtobufError::TooDeep { limit: MAX_DEPTH }), "{err}");
}

#[test]
fn encode_rejects_bad_objects() {
    for (object, expect) in [
        (json!({"kind": "Pod"}), "lacks apiVersion or kind"),
        (json!({"apiVersion": "v1", "kind": "Nope"}), "no protobuf message"),
        (json!({"apiVersion": "v1", "kind": "Pod", "spec": []}), "field spec: expected an object"),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"priority": 1u64 << 40}}),
            "field spec.priority: expected a 32-bit integer",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"k": "not base64!"}}),
            "field data.k: expected a base64 string",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "yesterday"}}),
            "expected an RFC 3339 time",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": 1}]}}),
            "field spec.containers[0].name: expected a string",
        ),
    ] {
        let err = encode(&object).unwrap_err().to_string();
        assert!(err.contains(expect), "want {expect:?}, got {err:?}");
    }
}

proptest::proptest! {
    /// Arbitrary bytes, as a whole body or as the object inside a valid envelope, give an
    /// object or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode(&[&MAGIC[..], &raw].concat());
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("v1", "Pod"),
        ] {
            if let Ok(object) = decode(&envelope(api_version, kind, raw.clone())) {
                // Whatever decodes re-encodes.
                proptest::prop_assert!(encode(&object).is_ok());
            }
        }
    }
}

/// Fields the tables do not know (a newer client's additions) are skipped, whatever their
/// wire type, as Go's decoder does.
#[test]
fn unknown_fields_are_skipped() {
    let config_map = core::ConfigMap { data: [("a".to_string(), "1".to_string())].into(), ..Default::default() };
    let mut raw = config_map.encode_to_vec();
    // field 99 varint, field 100 fixed64, field 101 bytes, field 102 fixed32
    raw.extend([0x98, 0x06, 0x01]);
    raw.extend([0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    raw.extend([0xaa, 0x06, 0x02, 0xff, 0xff]);
    raw.extend([0xb5, 0x06, 1, 2, 3, 4]);
    check(&envelope("v1", "ConfigMap", raw), json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}));
}
