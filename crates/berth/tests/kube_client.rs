//! The kube-rs client (the library our own controllers use) against a real server:
//! typed CRUD, list with selectors, watch, and server-side apply.

use std::path::Path;
use std::time::Duration;

use berth_testkit::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

async fn client(s: &TestServer) -> kube::Client {
    s.kube_client().await
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "kube-rs" } },
        "data": { "key": value },
    }))
    .unwrap()
}

#[tokio::test]
async fn typed_crud_list_and_apply() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let created = api.create(&PostParams::default(), &cm("one", "1")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let got = api.get("one").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["key"], "1");
    let mut changed = got.clone();
    changed.data = Some([("key".to_string(), "2".to_string())].into());
    api.replace("one", &PostParams::default(), &changed).await.unwrap();
    // The old resourceVersion is stale now.
    let err = api.replace("one", &PostParams::default(), &got).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err}");
    let applied = api
        .patch("two", &PatchParams::apply("kube-rs-test"), &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "two", "labels": { "app": "kube-rs" } }, "data": { "key": "a" }
        })))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["key"], "a");
    let list = api.list(&ListParams::default().labels("app=kube-rs")).await.unwrap();
    let mut names: Vec<String> = list.items.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let err = api.get("one").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"), "{err}");
}

#[tokio::test]
async fn watcher_sees_changes() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    let api: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list completes.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap() {
            watcher::Event::InitDone => break,
            _ => continue,
        }
    }
    api.create(&PostParams::default(), &cm("watched", "x")).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap() {
            watcher::Event::Apply(c) if c.metadata.name.as_deref() == Some("watched") => break,
            _ => continue,
        }
    }
}
