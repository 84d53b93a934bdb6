//! Fuzzes request-body decoding as the API server's write path does it: the body
//! (JSON, YAML or Kubernetes protobuf, picked by the first input byte) goes through
//! `codec::decode_object`, then the checks a create or update applies before the store
//! (duplicate and unknown fields, field types, defaulting, validation) for a kind picked
//! by the second byte. A decode failure must be a 4xx `Status`; a panic is a finding.
#![no_main]

use std::sync::LazyLock;

use berth_api::registry::{self, ResourceInfo};
use berth_api::schema::{self, Node};
use berth_apiserver::codec::{self, BodyType};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// A custom resource's structural schema: typed fields, a list-map, an int-or-string,
/// and a subtree that preserves unknown fields.
static CRD_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 0},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
                        }
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            }
        }
    })
});

static CRD_INFO: LazyLock<ResourceInfo> = LazyLock::new(|| ResourceInfo {
    group: "example.com".into(),
    version: "v1".into(),
    kind: "Widget".into(),
    list_kind: "WidgetList".into(),
    plural: "widgets".into(),
    singular: "widget".into(),
    short_names: vec![],
    categories: vec![],
    namespaced: true,
    subresources: vec!["status".into()],
    verbs: vec!["create".into(), "get".into(), "update".into(), "patch".into()],
    definition: String::new(),
});

fn kind(selector: u8) -> (&'static ResourceInfo, Node<'static>) {
    let builtin = |group: &str, kind: &str| {
        let info = registry::find_by_kind(group, "v1", kind).expect("built-in kind");
        (info, schema::definition(&info.definition).expect("built-in schema"))
    };
    match selector % 4 {
        0 => builtin("", "Pod"),
        1 => builtin("apps", "Deployment"),
        2 => builtin("", "ConfigMap"),
        _ => (&*CRD_INFO, Node::new(&CRD_SCHEMA)),
    }
}

fuzz_target!(|data: &[u8]| {
    let [media, which, body @ ..] = data else { return };
    let media = match media % 3 {
        0 => BodyType::Json,
        1 => BodyType::Yaml,
        _ => BodyType::Protobuf,
    };
    let mut obj = match codec::decode_object(media, body) {
        Ok(obj) => obj,
        Err(e) => {
            assert!((400..500).contains(&e.code), "decode error must be a 4xx Status, got {}: {e:?}", e.code);
            return;
        }
    };
    assert!(obj.is_object(), "decode_object returned a non-object");
    if media == BodyType::Yaml {
        let _ = codec::yaml_duplicate_keys(body);
    }
    if media == BodyType::Json {
        let _ = berth_api::fields::duplicate_fields(body);
    }
    let (info, schema) = kind(*which);
    // The type-meta check rejects a mismatch with a 400; set what the URL names instead,
    // so every body reaches the kind's checks.
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    if obj.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return;
    }
    let _ = berth_api::fields::prune_unknown(schema, &mut obj);
    if info.definition.is_empty() {
        let _ = berth_api::validation::validate_metadata(info, &obj, None);
        return;
    }
    if !berth_api::fields::check_types(schema, &obj).is_empty() {
        return;
    }
    berth_api::defaults::apply(info, &mut obj);
    let _ = berth_api::validation::validate(info, &obj, None);
    let _ = berth_api::validation::validate(info, &obj, Some(&obj));
    let _ = serde_json::to_vec(&obj).expect("a decoded object serializes");
});
