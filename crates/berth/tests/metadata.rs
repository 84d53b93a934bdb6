//! Metadata-only reads against the real server: `Accept: application/json;as=PartialObjectMetadata`
//! (and `…List`, `v=v1beta1`) for get, list and watch, kube-rs' `get_metadata`/`list_metadata`,
//! and 406 NotAcceptable for conversions the server does not offer.

use std::path::Path;

use berth_testkit::TestServer;
use hyper::header::ACCEPT;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn client(s: &TestServer) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// A GET with an `Accept` header: the body as JSON, or the API error.
async fn get(client: &kube::Client, path: &str, accept: &str) -> Result<Value, kube::Error> {
    let req = hyper::Request::get(path).header(ACCEPT, accept).body(Vec::new()).unwrap();
    let text = client.request_text(req).await?;
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// A watch with an `Accept` header that ends after `timeoutSeconds`: its events.
async fn watch(client: &kube::Client, query: &str, accept: &str) -> Result<Vec<Value>, kube::Error> {
    let req = hyper::Request::get(format!("{CMS}?watch=true&{query}")).header(ACCEPT, accept).body(Vec::new()).unwrap();
    let text = client.request_text(req).await?;
    Ok(text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect())
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "meta" }, "annotations": { "note": "kept" } },
        "data": { "secret-ish": "not in metadata" },
    }))
    .unwrap()
}

fn assert_partial(v: &Value, api_version: &str, name: &str) {
    assert_eq!(v["kind"], "PartialObjectMetadata", "{v}");
    assert_eq!(v["apiVersion"], api_version, "{v}");
    assert_eq!(v["metadata"]["name"], name, "{v}");
    assert_eq!(v["metadata"]["labels"]["app"], "meta", "{v}");
    assert_eq!(v["metadata"]["annotations"]["note"], "kept", "{v}");
    assert!(v["metadata"]["uid"].is_string() && v["metadata"]["resourceVersion"].is_string(), "{v}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "only kind, apiVersion and metadata: {v}");
}

#[tokio::test]
async fn get_list_and_watch_serve_partial_object_metadata() {
    // Only the test's own ConfigMaps in `default`: no kube-root-ca.crt appearing mid-watch.
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-controllers", "root-ca-cert-publisher"],
    );
    let c = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &configmap("one")).await.unwrap();

    // GET, in both versions Kubernetes serves.
    let one = get(&c, &format!("{CMS}/one"), META).await.unwrap();
    assert_partial(&one, "meta.k8s.io/v1", "one");
    let beta = get(&c, &format!("{CMS}/one"), "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1")
        .await
        .unwrap();
    assert_partial(&beta, "meta.k8s.io/v1beta1", "one");
    // Without the parameter the whole object comes back.
    assert_eq!(
        get(&c, &format!("{CMS}/one"), "application/json").await.unwrap()["data"]["secret-ish"],
        "not in metadata"
    );

    // LIST: a PartialObjectMetadataList with the list's resourceVersion, items reduced.
    let list = get(&c, CMS, META_LIST).await.unwrap();
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_partial(&items[0], "meta.k8s.io/v1", "one");
    // Paginated lists (served from the store) are reduced too and keep their continue token.
    api.create(&PostParams::default(), &configmap("two")).await.unwrap();
    let page = get(&c, &format!("{CMS}?limit=1"), META_LIST).await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["metadata"]["continue"].is_string(), "{page}");
    assert_partial(&page["items"][0], "meta.k8s.io/v1", "one");

    // WATCH from the list's revision: every event carries a PartialObjectMetadata.
    api.delete("one", &Default::default()).await.unwrap();
    let events = watch(&c, &format!("resourceVersion={rv}&timeoutSeconds=2"), META).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED"], "{events:?}");
    assert_partial(&events[0]["object"], "meta.k8s.io/v1", "two");
    assert_partial(&events[1]["object"], "meta.k8s.io/v1", "one");
    // Initial events and bookmarks of a metadata watch are reduced as well.
    let events = watch(
        &c,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        META,
    )
    .await
    .unwrap();
    assert_eq!(events[0]["type"], "ADDED", "{events:?}");
    assert_partial(&events[0]["object"], "meta.k8s.io/v1", "two");
    let bookmark = events.iter().find(|e| e["type"] == "BOOKMARK").expect("a bookmark");
    assert_eq!(bookmark["object"]["kind"], "PartialObjectMetadata", "{bookmark}");

    // kube-rs' metadata calls decode what the server sends.
    let metas = api.list_metadata(&ListParams::default().labels("app=meta")).await.unwrap();
    let names: Vec<_> = metas.items.iter().map(|m| m.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["two"]);
    assert_eq!(metas.items[0].types.as_ref().unwrap().kind, "PartialObjectMetadata");
    let two = api.get_metadata("two").await.unwrap();
    assert_eq!(two.metadata.annotations.unwrap()["note"], "kept");
}

#[tokio::test]
async fn unsupported_conversions_are_not_acceptable() {
    // Only the test's own ConfigMaps in `default`: no kube-root-ca.crt appearing mid-watch.
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-controllers", "root-ca-cert-publisher"],
    );
    let c = client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &configmap("one")).await.unwrap();
    fn not_acceptable<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
        match r {
            Err(kube::Error::Api(status)) => status.code == 406 && status.reason == "NotAcceptable",
            other => panic!("expected 406, got {other:?}"),
        }
    }
    // An unknown `as=`, an unknown version, a list asked of one object, one object asked of a list.
    assert!(not_acceptable(get(&c, &format!("{CMS}/one"), "application/json;as=Widget;g=meta.k8s.io;v=v1").await));
    assert!(not_acceptable(
        get(&c, &format!("{CMS}/one"), "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v7").await
    ));
    assert!(not_acceptable(get(&c, &format!("{CMS}/one"), META_LIST).await));
    assert!(not_acceptable(get(&c, CMS, META).await));
    assert!(not_acceptable(watch(&c, "timeoutSeconds=1", META_LIST).await));
    // A later acceptable entry is used instead of refusing.
    let v = get(&c, &format!("{CMS}/one"), "application/json;as=Widget;g=meta.k8s.io;v=v1, application/json").await;
    assert_eq!(v.unwrap()["kind"], "ConfigMap");
    // The object was left as it was.
    assert_eq!(api.get("one").await.unwrap().data.unwrap()["secret-ish"], "not in metadata");
}
