//! CustomResourceDefinitions: a CRD is Established and its resources are served at
//! once, with schema validation, pruning, defaults, status and scale subresources,
//! printer columns, short names and categories.

use std::path::Path;

use berth_testkit::TestServer;
use serde_json::{Value, json};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
            required: [cronSpec]
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

fn server_with_crd() -> TestServer {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(CRD));
    s.kubectl_ok(&["wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s"]);
    s
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn custom_resources_are_served_with_defaults_pruning_and_columns() {
    let s = server_with_crd();
    let ct = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nightly\nspec:\n  cronSpec: '* * * * */5'\n  image: my-cron:1\n";
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(ct));
    let got = json(&s.kubectl_ok(&["get", "ct", "nightly", "-o", "json"]));
    assert_eq!(got["spec"]["replicas"], 1, "default from the schema: {got}");
    assert_eq!(got["metadata"]["generation"], 1);
    let table = s.kubectl_ok(&["get", "crontabs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS"], "{table}");
    assert!(table.contains("nightly") && table.contains("* * * * */5"), "{table}");
    // The category `all` includes it.
    assert!(s.kubectl_ok(&["get", "all"]).contains("crontab.stable.example.com/nightly"));
    // Unknown fields are pruned (Ignore) or refused (Strict).
    let extra = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: extra\nspec:\n  cronSpec: '* * * * *'\n  bogus: 1\n";
    let err = s.kubectl_err(&["create", "-f", "-"], Some(extra));
    assert!(err.contains("unknown field") && err.contains("bogus"), "{err}");
    s.kubectl_in_ok(&["create", "--validate=false", "-f", "-"], Some(extra));
    let pruned = json(&s.kubectl_ok(&["get", "ct", "extra", "-o", "json"]));
    assert!(pruned["spec"].get("bogus").is_none(), "{pruned}");
}

#[test]
fn custom_resources_are_validated_against_their_schema() {
    let s = server_with_crd();
    let bad = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: bad\nspec:\n  cronSpec: 'every minute'\n  replicas: 50\n";
    let err = s.kubectl_err(&["create", "-f", "-"], Some(bad));
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.replicas") && err.contains("spec.cronSpec"), "{err}");
    let missing = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: bad\nspec:\n  image: x\n";
    let err = s.kubectl_err(&["create", "-f", "-"], Some(missing));
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");
    let wrong_type = json!({ "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": { "name": "t" }, "spec": { "cronSpec": "* * * * *", "replicas": "two" } });
    let (code, v) = s.http_json("POST", "/apis/stable.example.com/v1/namespaces/default/crontabs", Some(&wrong_type));
    assert_eq!(code, 422, "{v}");
    assert_eq!(s.http_json("GET", "/apis/stable.example.com/v1/namespaces/default/crontabs/t", None).0, 404);
}

#[test]
fn status_and_scale_subresources_of_custom_resources() {
    let s = server_with_crd();
    let ct = json!({ "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": { "name": "c" }, "spec": { "cronSpec": "* * * * *", "replicas": 2 } });
    let base = "/apis/stable.example.com/v1/namespaces/default/crontabs";
    assert_eq!(s.http_json("POST", base, Some(&ct)).0, 201);
    let r = s.http(
        "PATCH",
        &format!("{base}/c/status"),
        Some("application/merge-patch+json"),
        br#"{"status":{"replicas":2}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["status"]["replicas"], 2);
    s.kubectl_ok(&["scale", "crontab", "c", "--replicas=5"]);
    let (_, scale) = s.http_json("GET", &format!("{base}/c/scale"), None);
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 2);
    // Strategic merge patch is not for custom resources.
    let r = s.http(
        "PATCH",
        &format!("{base}/c"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(r.status, 415);
}

#[test]
fn invalid_crds_are_refused_and_deleting_a_crd_removes_its_resources() {
    let s = server_with_crd();
    let bad = CRD.replace("name: crontabs.stable.example.com", "name: wrong.stable.example.com");
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("metadata.name"), "{err}");
    // Each problem is reported once: two storage versions, and a schema that is not structural.
    let two_storage = json!({ "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "things.x.io" },
        "spec": { "group": "x.io", "scope": "Namespaced", "names": { "plural": "things", "kind": "Thing" },
                  "versions": [
                      { "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": { "type": "object", "properties": { "spec": {} } } } },
                      { "name": "v2", "served": true, "storage": true, "schema": { "openAPIV3Schema": { "type": "object" } } } ] } });
    let (code, v) = s.http_json("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Some(&two_storage));
    assert_eq!(code, 422, "{v}");
    let fields: Vec<&str> =
        v["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["spec.versions", "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"], "{v}");
    let ct =
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: gone\nspec:\n  cronSpec: '* * * * *'\n";
    s.kubectl_in_ok(&["create", "-f", "-"], Some(ct));
    s.kubectl_ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert_eq!(s.http_json("GET", "/apis/stable.example.com/v1/namespaces/default/crontabs/gone", None).0, 404);
    let out = s.kubectl_ok(&["api-resources"]);
    assert!(!out.contains("crontabs"), "{out}");
    // Re-created, the CRD serves an empty collection: the old objects were deleted with it.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(CRD));
    let gone = berth_testkit::wait_until(std::time::Duration::from_secs(10), || {
        s.http_json("GET", "/apis/stable.example.com/v1/namespaces/default/crontabs", None).1["items"]
            .as_array()
            .is_some_and(|l| l.is_empty())
    });
    assert!(gone, "custom resources outlived their CRD");
}

const RULES_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: pools.rules.example.com
spec:
  group: rules.example.com
  scope: Namespaced
  names: {plural: pools, singular: pool, kind: Pool}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
            - rule: "!has(self.tier) || self.tier != 'legacy'"
              reason: FieldValueForbidden
              fieldPath: .tier
              messageExpression: "'tier ' + self.tier + ' is retired'"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
              tier: {type: string}
              zone:
                type: string
                x-kubernetes-validations:
                - {rule: self == oldSelf, message: zone is immutable}
              size:
                type: string
                anyOf: [{enum: [small, large]}, {pattern: '^custom-'}]
"#;

/// `x-kubernetes-validations` (CEL) and `anyOf` are enforced on custom resources through
/// the API and kubectl; a CRD whose rule does not compile is refused.
#[test]
fn validation_rules_and_junctions_of_a_crd_are_enforced() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(RULES_CRD));
    s.kubectl_ok(&["wait", "--for=condition=Established", "crd/pools.rules.example.com", "--timeout=10s"]);
    let base = "/apis/rules.example.com/v1/namespaces/default/pools";
    let pool = |name: &str, spec: Value| json!({"apiVersion": "rules.example.com/v1", "kind": "Pool", "metadata": {"name": name}, "spec": spec});

    let (code, v) = s.http_json("POST", base, Some(&pool("p", json!({"minReplicas": 3, "maxReplicas": 2}))));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reason"], "Invalid", "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec", "{v}");
    assert!(v["message"].as_str().unwrap().contains("minReplicas must not exceed maxReplicas"), "{v}");
    assert_eq!(s.http_json("GET", &format!("{base}/p"), None).0, 404, "nothing written");

    let (code, v) =
        s.http_json("POST", base, Some(&pool("p", json!({"minReplicas": 1, "maxReplicas": 2, "tier": "legacy"}))));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.tier", "{v}");
    assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueForbidden", "{v}");
    assert!(v["message"].as_str().unwrap().contains("tier legacy is retired"), "{v}");

    let (code, v) =
        s.http_json("POST", base, Some(&pool("p", json!({"minReplicas": 1, "maxReplicas": 2, "size": "medium"}))));
    assert_eq!(code, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("spec.size must validate at least one schema (anyOf)"), "{v}");

    // A valid pool; its zone may not change afterwards (a transition rule), kubectl shows why.
    let ok = "apiVersion: rules.example.com/v1\nkind: Pool\nmetadata:\n  name: p\nspec:\n  minReplicas: 1\n  maxReplicas: 2\n  zone: a\n  size: custom-9\n";
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(ok));
    let err = s.kubectl_err(&["patch", "pool", "p", "--type=merge", "-p", r#"{"spec":{"zone":"b"}}"#], None);
    assert!(err.contains("spec.zone") && err.contains("zone is immutable"), "{err}");
    s.kubectl_ok(&["patch", "pool", "p", "--type=merge", "-p", r#"{"spec":{"maxReplicas":5}}"#]);
    let got = json(&s.kubectl_ok(&["get", "pool", "p", "-o", "json"]));
    assert_eq!((got["spec"]["zone"].clone(), got["spec"]["maxReplicas"].clone()), (json!("a"), json!(5)), "{got}");

    // A rule that does not compile is refused with the CRD's field path.
    let broken = RULES_CRD
        .replace("pools.rules.example.com", "brokens.rules.example.com")
        .replace("{plural: pools, singular: pool, kind: Pool}", "{plural: brokens, singular: broken, kind: Broken}")
        .replace("self.minReplicas <= self.maxReplicas", "self.minReplicas <=");
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&broken));
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule")
            && err.contains("compilation failed"),
        "{err}"
    );
}
