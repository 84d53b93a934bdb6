//! Fuzzes the patch path of the API server on a fixed Deployment: the first byte picks
//! a JSON patch, a merge patch, a strategic merge patch or a server-side apply
//! configuration (`berth_api::patch`, `berth_api::apply`); the rest is the patch body,
//! decoded as the server decodes it. Every outcome is Ok or a typed error, never a panic;
//! a patched object then goes through the Deployment's field checks and validation.
#![no_main]

use std::sync::LazyLock;

use berth_api::registry::{self, ResourceInfo};
use berth_api::schema::{self, Node};
use berth_apiserver::codec;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NOW: &str = "2026-01-01T00:00:00Z";

static LIVE: LazyLock<Value> = LazyLock::new(|| {
    let mut obj = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "uid": "0b3c6a3e-0000-4000-8000-000000000001",
            "resourceVersion": "7", "generation": 1, "creationTimestamp": NOW,
            "labels": {"app": "web"}, "annotations": {"note": "x"}, "finalizers": ["example.com/f"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "side", "image": "busybox", "args": ["sleep", "1d"]}
                    ],
                    "volumes": [{"name": "v", "emptyDir": {}}]
                }
            }
        }
    });
    let (info, schema) = deployment();
    berth_api::defaults::apply(info, &mut obj);
    // Give the live object an owner of its fields, as a server-side apply would.
    match berth_api::apply::apply(schema, None, &obj, "before", false, NOW, "apps/v1") {
        Ok(applied) => applied,
        Err(_) => obj,
    }
});

fn deployment() -> (&'static ResourceInfo, Node<'static>) {
    let info = registry::find_by_kind("apps", "v1", "Deployment").expect("deployments");
    (info, schema::definition(&info.definition).expect("deployment schema"))
}

fuzz_target!(|data: &[u8]| {
    let [mode, force, body @ ..] = data else { return };
    let (info, schema) = deployment();
    let live = &*LIVE;
    let decoded = if mode % 4 == 3 { codec::decode_yaml(body) } else { codec::decode_json(body) };
    let patch = match decoded {
        Ok(v) => v,
        Err(e) => {
            assert!((400..500).contains(&e.code), "patch decode error must be 4xx, got {}: {e:?}", e.code);
            return;
        }
    };
    let patched = match mode % 4 {
        0 => {
            let mut out = live.clone();
            berth_api::patch::json_patch(&mut out, &patch).map(|()| out).ok()
        }
        1 => patch.is_object().then(|| {
            let mut out = live.clone();
            berth_api::patch::merge_patch(&mut out, &patch);
            out
        }),
        2 => berth_api::patch::strategic_merge_patch(schema, live, &patch).ok(),
        _ => {
            let mut applied = patch;
            if let Some(m) = applied.as_object_mut() {
                m.entry("apiVersion").or_insert_with(|| json!("apps/v1"));
                m.entry("kind").or_insert_with(|| json!("Deployment"));
            }
            let first = berth_api::apply::apply(schema, Some(live), &applied, "fuzz", force % 2 == 1, NOW, "apps/v1");
            if let Ok(first) = &first {
                let _ = berth_api::apply::apply(schema, Some(first), &applied, "other", false, NOW, "apps/v1");
            }
            first.ok()
        }
    };
    let Some(mut obj) = patched else { return };
    if !obj.is_object() {
        return;
    }
    let _ = berth_api::fields::prune_unknown(schema, &mut obj);
    if !berth_api::fields::check_types(schema, &obj).is_empty() {
        return;
    }
    berth_api::defaults::apply(info, &mut obj);
    let _ = berth_api::validation::validate(info, &obj, Some(live));
});
