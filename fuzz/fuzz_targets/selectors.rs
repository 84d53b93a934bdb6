//! Fuzzes label and field selector parsing and matching (`berth_api::selectors`): the
//! input is a `labelSelector` or `fieldSelector` query value, or a `metav1.LabelSelector`
//! object, picked by the first byte. Parsing may fail, never panic; a parsed label
//! selector prints to a string that parses back to a selector matching the same labels.
#![no_main]

use berth_api::registry;
use berth_api::selectors::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn label_sets() -> Vec<Map<String, Value>> {
    [json!({}), json!({"app": "web", "tier": "front"}), json!({"app": "db", "example.com/role": "primary", "x": ""})]
        .into_iter()
        .map(|v| v.as_object().cloned().unwrap_or_default())
        .collect()
}

fn check_label(sel: &LabelSelector) {
    let sets = label_sets();
    let results: Vec<bool> = sets.iter().map(|l| sel.matches(l)).collect();
    if sel.match_nothing {
        assert!(results.iter().all(|m| !m), "a nil selector matched");
        return;
    }
    let printed = sel.to_string();
    let reparsed =
        LabelSelector::parse(&printed).unwrap_or_else(|e| panic!("printed selector {printed:?} does not parse: {e}"));
    let again: Vec<bool> = sets.iter().map(|l| reparsed.matches(l)).collect();
    assert_eq!(results, again, "{printed:?} matches differently after printing");
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 3 {
        0 => {
            if let Ok(sel) = LabelSelector::parse(text) {
                check_label(&sel);
            }
        }
        1 => {
            let Ok(sel) = FieldSelector::parse(text) else { return };
            let pods = registry::find_by_kind("", "v1", "Pod").expect("pods");
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"nodeName": "n1", "restartPolicy": "Always"},
                "status": {"phase": "Running", "podIP": "10.0.0.1"}
            });
            if sel.check_supported(pods).is_ok() {
                sel.matches(pods, &pod).expect("a supported selector matches without error");
            }
            let secrets = registry::find_by_kind("", "v1", "Secret").expect("secrets");
            let _ = sel.matches(secrets, &json!({"type": "Opaque", "metadata": {"name": "s"}}));
        }
        _ => {
            let Ok(v) = serde_json::from_str::<Value>(text) else { return };
            if let Ok(sel) = LabelSelector::from_label_selector(&v) {
                check_label(&sel);
            }
        }
    }
});
