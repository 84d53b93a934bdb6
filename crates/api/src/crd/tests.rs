//! Tests of reading and validating CustomResourceDefinitions.

use serde_json::{Value, json};

use super::*;

fn crontab() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}},
                {"name": "v1beta1", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        }
    })
}

fn with(mut crd: Value, pointer: &str, value: Value) -> Value {
    if let Some(slot) = crd.pointer_mut(pointer) {
        *slot = value;
    }
    crd
}

#[test]
fn versions_read_resources() {
    let crd = crontab();
    let got = versions(&crd).expect("valid CRD");
    assert_eq!(got.len(), 2);
    let v1 = &got[0];
    assert_eq!(v1.resource.api_version(), "stable.example.com/v1");
    assert_eq!(v1.resource.singular, "crontab");
    assert_eq!(v1.resource.list_kind, "CronTabList");
    assert_eq!(v1.resource.short_names, ["ct"]);
    assert_eq!(v1.resource.subresources, ["status"]);
    assert!(v1.resource.namespaced && v1.served && v1.storage);
    assert!(v1.schema.is_some());
    assert!(!got[1].served);
}

#[test]
fn versions_refuse_incomplete_crds() {
    let check = |crd: Value, expected: CrdError| assert_eq!(versions(&crd), Err(expected));
    check(with(crontab(), "/spec/group", json!("")), CrdError::Missing("spec.group"));
    check(with(crontab(), "/spec/scope", json!("Galaxy")), CrdError::Missing("spec.scope"));
    check(with(crontab(), "/spec/versions", json!({})), CrdError::Missing("spec.versions"));
    check(json!(null), CrdError::Missing("spec.group"));
}

#[test]
fn validate_crd_cases() {
    let check = |crd: Value, expected: &[&str]| {
        let got: Vec<String> = validate_crd(&crd).iter().map(ToString::to_string).collect();
        assert_eq!(got, expected);
    };
    check(crontab(), &[]);
    check(
        with(crontab(), "/metadata/name", json!("crontab")),
        &["metadata.name: Invalid value: \"crontab\": must be spec.names.plural+\".\"+spec.group"],
    );
    check(
        with(with(crontab(), "/spec/group", json!("example")), "/metadata/name", json!("crontabs.example")),
        &["spec.group: Invalid value: \"example\": should be a domain with at least one dot"],
    );
    check(
        with(crontab(), "/spec/scope", json!("Galaxy")),
        &["spec.scope: Unsupported value: \"Galaxy\": supported values: \"Cluster\", \"Namespaced\""],
    );
    check(
        with(crontab(), "/spec/versions/1/storage", json!(true)),
        &[
            "spec.versions: Invalid value: []v1.CustomResourceDefinitionVersion{...2 versions}: must have exactly one version marked as storage version",
        ],
    );
    check(with(crontab(), "/spec/versions/1/name", json!("v1")), &["spec.versions[1].name: Duplicate value: \"v1\""]);
    check(
        with(crontab(), "/spec/versions/1/schema", json!({})),
        &["spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"],
    );
    check(
        with(crontab(), "/spec/versions/0/schema/openAPIV3Schema/properties/spec", json!({"properties": {}})),
        &[
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ],
    );
    check(
        with(crontab(), "/spec/versions", json!([])),
        &["spec.versions: Required value: must have exactly one version marked as storage version"],
    );
    check(
        json!({}),
        &[
            "spec.group: Required value",
            "spec.names.plural: Required value",
            "spec.names.kind: Required value",
            "spec.scope: Required value",
            "spec.versions: Required value: must have exactly one version marked as storage version",
        ],
    );
}
