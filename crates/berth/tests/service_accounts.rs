//! ServiceAccount tokens end to end on the real `berth server`: `kubectl create token`
//! (audiences, durations, bound objects), the TokenRequest API's bad input, bearer
//! authentication with those tokens (expired, forged, wrong-audience and revoked ones get
//! 401), TokenReview, OIDC discovery, and the ServiceAccount admission plugin.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_apiserver::serviceaccount_token::{Claims, KubernetesClaim, Ref, TokenIssuer};
use berth_testkit::{Credentials, TestServer, wait_until};
use common::whoami;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn server() -> TestServer {
    TestServer::start(Path::new(BIN))
}

/// Waits for the serviceaccount controller's `default` account in `ns`.
fn wait_default_sa(s: &TestServer, ns: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || s.kubectl(&["get", "sa", "default", "-n", ns]).status.success()),
        "no default ServiceAccount in {ns}"
    );
}

fn token_review(s: &TestServer, token: &str, audiences: &[&str]) -> Value {
    let mut review =
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": { "token": token } });
    if !audiences.is_empty() {
        review["spec"]["audiences"] = json!(audiences);
    }
    let (code, body) = s.http_json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&review));
    assert_eq!(code, 201, "{body}");
    body["status"].clone()
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn kubectl_create_token_authenticates_as_the_service_account() {
    let s = server();
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["create", "serviceaccount", "dev", "-n", "team-a"]);
    let uid = s.kubectl_ok(&["get", "sa", "dev", "-n", "team-a", "-o", "jsonpath={.metadata.uid}"]);
    let token = s.kubectl_ok(&["create", "token", "dev", "-n", "team-a"]).trim().to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:team-a:dev");
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert_eq!(claims["kubernetes.io"]["serviceaccount"], json!({ "name": "dev", "uid": uid }));
    let user = whoami(&s, &token).expect("the token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:team-a:dev");
    assert_eq!(user["uid"], uid.as_str());
    assert_eq!(
        user["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"])
    );
    assert!(user["extra"]["authentication.kubernetes.io/credential-id"][0].as_str().unwrap().starts_with("JTI="));
    // kubectl works with it too (a kubeconfig with only the CA and the token).
    let ca = s.dir.path().join("sa-ca.crt");
    std::fs::write(&ca, s.kubeconfig().ca_pem).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["--kubeconfig", "/dev/null", "--server", &s.url, "--certificate-authority"])
        .arg(&ca)
        .args(["--token", &token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:serviceaccount:team-a:dev", "{out:?}");

    // --duration and --audience.
    let long = s.kubectl_ok(&["create", "token", "dev", "-n", "team-a", "--duration", "2h"]);
    let c = claims_of(long.trim());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 7200);
    let vault = s.kubectl_ok(&["create", "token", "dev", "-n", "team-a", "--audience", "vault"]).trim().to_string();
    assert_eq!(claims_of(&vault)["aud"], json!(["vault"]));
    // A token for another audience is not a credential for the API ...
    assert_eq!(whoami(&s, &vault), Err(401));
    // ... but TokenReview accepts it for that audience.
    let review = token_review(&s, &vault, &["vault"]);
    assert_eq!(review["authenticated"], true, "{review}");
    assert_eq!(review["audiences"], json!(["vault"]));
    assert_eq!(review["user"]["username"], "system:serviceaccount:team-a:dev");
    assert_eq!(token_review(&s, &vault, &[])["authenticated"], false);
    let review = token_review(&s, &token, &[]);
    assert_eq!(review["authenticated"], true, "{review}");
    assert_eq!(review["audiences"], json!([ISSUER]));
    // The node token reviews as the node agent.
    let node_token = std::fs::read_to_string(s.dir.path().join("token")).unwrap();
    let review = token_review(&s, node_token.trim(), &[]);
    assert_eq!(review["user"]["username"], "system:node-agent", "{review}");
    let review = token_review(&s, "garbage", &[]);
    assert_eq!(review["authenticated"], false);
    assert!(review["error"].as_str().unwrap().contains("invalid bearer token"), "{review}");

    // Deleting the ServiceAccount revokes its tokens; a new one of the same name does not revive them.
    s.kubectl_ok(&["delete", "sa", "dev", "-n", "team-a"]);
    s.kubectl_ok(&["create", "serviceaccount", "dev", "-n", "team-a"]);
    assert!(wait_until(Duration::from_secs(30), || whoami(&s, &token) == Err(401)));
    let fresh = s.kubectl_ok(&["create", "token", "dev", "-n", "team-a"]);
    assert!(whoami(&s, fresh.trim()).is_ok());
}

#[test]
fn token_request_refuses_bad_input() {
    let s = server();
    wait_default_sa(&s, "default");
    let post = |sa: &str, body: Value| {
        s.http_json("POST", &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"), Some(&body))
    };
    let tr = |spec: Value| json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec });
    let (code, body) = post("nope", tr(json!({})));
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "serviceaccounts \"nope\" not found");
    let (code, body) = post("default", tr(json!({ "expirationSeconds": 599 })));
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("may not specify a duration less than 10 minutes"), "{body}");
    let (code, body) = post("default", tr(json!({ "expirationSeconds": "soon" })));
    assert_eq!(code, 400, "{body}");
    let (code, body) = post("default", tr(json!({ "audiences": "one" })));
    assert_eq!(code, 400, "{body}");
    let (code, body) =
        post("default", tr(json!({ "boundObjectRef": { "kind": "ConfigMap", "apiVersion": "v1", "name": "x" } })));
    assert_eq!(code, 400, "{body}");
    let (code, body) =
        post("default", tr(json!({ "boundObjectRef": { "kind": "Pod", "apiVersion": "v1", "name": "absent" } })));
    assert_eq!(code, 404, "{body}");
    let (code, body) = post("default", json!({ "apiVersion": "v1", "kind": "Pod" }));
    assert_eq!(code, 400, "{body}");
    let r =
        s.http("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", Some("application/json"), b"{nope");
    assert_eq!(r.status, 400);
    // Only POST.
    let (code, _) = s.http_json("GET", "/api/v1/namespaces/default/serviceaccounts/default/token", None);
    assert_eq!(code, 405);
    // The minimum is accepted and the answer says when the token expires.
    let (code, body) = post("default", tr(json!({ "expirationSeconds": 600 })));
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["expirationSeconds"], 600);
    assert!(body["status"]["expirationTimestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    // Discovery lists the subresource, so kubectl finds it.
    let (_, list) = s.http_json("GET", "/api/v1", None);
    let token = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "serviceaccounts/token").cloned();
    assert_eq!(token.unwrap()["kind"], "TokenRequest");
}

#[test]
fn expired_forged_and_foreign_tokens_get_401() {
    let s = server();
    wait_default_sa(&s, "default");
    let uid = s.kubectl_ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = |iss: &str, exp: i64| Claims {
        iss: iss.into(),
        sub: "system:serviceaccount:default:default".into(),
        aud: vec![ISSUER.into()],
        exp,
        iat: now - 7200,
        nbf: now - 7200,
        jti: "test".into(),
        kubernetes: KubernetesClaim {
            namespace: "default".into(),
            serviceaccount: Ref { name: "default".into(), uid: uid.clone() },
            ..KubernetesClaim::default()
        },
    };
    // Signed with the server's own key: valid until it expires.
    let key = std::fs::read_to_string(s.dir.path().join("tls/service.key")).unwrap();
    let ours = TokenIssuer::new(&key, ISSUER, &[]).unwrap();
    let valid = ours.sign(&claims(ISSUER, now + 600)).unwrap();
    assert_eq!(whoami(&s, &valid).unwrap()["username"], "system:serviceaccount:default:default");
    assert_eq!(whoami(&s, &ours.sign(&claims(ISSUER, now - 1)).unwrap()), Err(401));
    // Signed with another key.
    let other_pki = tempfile::tempdir().unwrap();
    let other_key = berth_pki::Pki::load_or_create(other_pki.path()).unwrap().service_account_key_pem().unwrap();
    let forger = TokenIssuer::new(&other_key, ISSUER, &[]).unwrap();
    assert_eq!(whoami(&s, &forger.sign(&claims(ISSUER, now + 600)).unwrap()), Err(401));
    assert_eq!(whoami(&s, &forger.sign(&claims("https://elsewhere", now + 600)).unwrap()), Err(401));
    // Tampered with: the payload of one token with the signature of another.
    let real = s.kubectl_ok(&["create", "token", "default"]);
    let parts: Vec<&str> = real.trim().split('.').collect();
    let other: Vec<&str> = valid.split('.').collect();
    assert_eq!(whoami(&s, &format!("{}.{}.{}", parts[0], other[1], parts[2])), Err(401));
    assert_eq!(whoami(&s, "a.b.c"), Err(401));
}

#[test]
fn tokens_bound_to_a_pod_or_secret_die_with_it() {
    let s = server();
    wait_default_sa(&s, "default");
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "holder" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] } });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/default/pods", Some(&pod));
    assert_eq!(code, 201, "{body}");
    let pod_uid = body["metadata"]["uid"].as_str().unwrap().to_string();
    let token = s
        .kubectl_ok(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "holder"])
        .trim()
        .to_string();
    assert_eq!(claims_of(&token)["kubernetes.io"]["pod"], json!({ "name": "holder", "uid": pod_uid }));
    let user = whoami(&s, &token).unwrap();
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-name"], json!(["holder"]));
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod_uid]));
    // A wrong uid in the reference is a conflict.
    let out = s.kubectl_err(
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "holder",
            "--bound-object-uid",
            "0000",
        ],
        None,
    );
    assert!(out.contains("does not match the UID in record"), "{out}");
    s.kubectl_ok(&["delete", "pod", "holder", "--grace-period=0", "--force"]);
    assert!(wait_until(Duration::from_secs(30), || whoami(&s, &token) == Err(401)));

    s.kubectl_ok(&["create", "secret", "generic", "anchor", "--from-literal=a=b"]);
    let token = s
        .kubectl_ok(&["create", "token", "default", "--bound-object-kind", "Secret", "--bound-object-name", "anchor"])
        .trim()
        .to_string();
    assert!(whoami(&s, &token).is_ok());
    s.kubectl_ok(&["delete", "secret", "anchor"]);
    assert!(wait_until(Duration::from_secs(30), || whoami(&s, &token) == Err(401)));
}

#[test]
fn oidc_discovery_serves_the_issuer_and_its_keys() {
    let s = server();
    let (code, doc) = s.http_json("GET", "/.well-known/openid-configuration", None);
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));
    let (code, jwks) = s.http_json("GET", "/openid/v1/jwks", None);
    assert_eq!(code, 200, "{jwks}");
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    wait_default_sa(&s, "default");
    let token = s.kubectl_ok(&["create", "token", "default"]);
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim().split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["alg"], "ES256");
    // Authenticated users only.
    let anonymous = s.client_as(Credentials::Anonymous);
    assert_eq!(anonymous.request("GET", "/openid/v1/jwks", None, b"").unwrap().status, 401);
    // A service account may read them.
    assert_eq!(
        s.client_as(Credentials::Bearer(token.trim().into()))
            .request("GET", "/openid/v1/jwks", None, b"")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_custom_issuer_and_audiences_are_honoured() {
    let s = TestServer::start_with(
        Path::new(BIN),
        &["--service-account-issuer", "https://issuer.example", "--api-audiences", "berth,other"],
    );
    wait_default_sa(&s, "default");
    let token = s.kubectl_ok(&["create", "token", "default"]);
    let c = claims_of(token.trim());
    assert_eq!(c["iss"], "https://issuer.example");
    assert_eq!(c["aud"], json!(["berth", "other"]));
    assert!(whoami(&s, token.trim()).is_ok());
    let other = s.kubectl_ok(&["create", "token", "default", "--audience", "other"]);
    assert!(whoami(&s, other.trim()).is_ok());
    let foreign = s.kubectl_ok(&["create", "token", "default", "--audience", "https://issuer.example"]);
    assert_eq!(whoami(&s, foreign.trim()), Err(401));
}

#[test]
fn admission_sets_the_account_and_mounts_the_token() {
    let s = server();
    s.kubectl_ok(&["create", "namespace", "apps"]);
    wait_default_sa(&s, "apps");
    let pod = |name: &str, extra: Value| {
        let mut p = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "initContainers": [{ "name": "init", "image": "busybox" }],
                      "containers": [{ "name": "c", "image": "busybox" }, { "name": "d", "image": "busybox" }] } });
        if let Some(o) = extra.as_object() {
            for (k, v) in o {
                p["spec"][k] = v.clone();
            }
        }
        s.http_json("POST", "/api/v1/namespaces/apps/pods", Some(&p))
    };
    let (code, p) = pod("plain", json!({}));
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let volumes = p["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{p}");
    let name = volumes[0]["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-"), "{name}");
    let sources = &volumes[0]["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"], json!({ "expirationSeconds": 3607, "path": "token" }));
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");
    for c in [&p["spec"]["initContainers"][0], &p["spec"]["containers"][0], &p["spec"]["containers"][1]] {
        assert_eq!(
            c["volumeMounts"],
            json!([{ "name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }])
        );
    }
    // The creator owns what it sent and the defaults, not what admission added (Kubernetes
    // records managedFields before mutating admission).
    let managed = p["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(managed.len(), 1, "{p}");
    let owned = &managed[0]["fieldsV1"]["f:spec"];
    for field in ["f:containers", "f:initContainers", "f:restartPolicy", "f:dnsPolicy"] {
        assert!(owned.get(field).is_some(), "{field} not owned: {owned}");
    }
    for field in ["f:volumes", "f:serviceAccountName", "f:tolerations", "f:priority"] {
        assert!(owned.get(field).is_none(), "{field} owned: {owned}");
    }
    let container = &owned["f:containers"][r#"k:{"name":"c"}"#];
    assert!(container.get("f:image").is_some() && container.get("f:volumeMounts").is_none(), "{container}");
    // automountServiceAccountToken: false on the pod, or on its account.
    let (code, p) = pod("quiet", json!({ "automountServiceAccountToken": false }));
    assert_eq!(code, 201, "{p}");
    assert!(p["spec"].get("volumes").is_none(), "{p}");
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot, namespace: apps}\nautomountServiceAccountToken: false\nimagePullSecrets: [{name: regcred}]\n"),
    );
    let (code, p) = pod("robotic", json!({ "serviceAccountName": "robot" }));
    assert_eq!(code, 201, "{p}");
    assert!(p["spec"].get("volumes").is_none(), "{p}");
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{ "name": "regcred" }]));
    // The pod's own setting wins over its account's.
    let (code, p) = pod("robotic-2", json!({ "serviceAccountName": "robot", "automountServiceAccountToken": true }));
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    // An account that does not exist is refused, as Kubernetes words it.
    let (code, p) = pod("ghost", json!({ "serviceAccountName": "ghost" }));
    assert_eq!(code, 403, "{p}");
    assert_eq!(
        p["message"],
        "pods \"ghost\" is forbidden: error looking up service account apps/ghost: serviceaccount \"ghost\" not found"
    );
    // kubectl run shows the same.
    let out = s.kubectl_err(
        &["run", "k", "-n", "apps", "--image", "busybox", "--overrides", r#"{"spec":{"serviceAccountName":"ghost"}}"#],
        None,
    );
    assert!(out.contains("serviceaccount \"ghost\" not found"), "{out}");
}
