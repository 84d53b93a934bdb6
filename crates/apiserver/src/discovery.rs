//! Discovery documents: `/api`, `/apis`, `/apis/<group>`, per group/version resource
//! lists, and the aggregated form (`apidiscovery.k8s.io/v2`) kubectl asks for first.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::codec;
use crate::resources::{Catalog, Served};

/// True when the client accepts aggregated discovery (v2 or v2beta1).
pub fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for entry in accept.split(',') {
        if !entry.contains("as=APIGroupDiscoveryList") || !entry.contains("g=apidiscovery.k8s.io") {
            continue;
        }
        if entry.contains("v=v2beta1") {
            return Some("v2beta1");
        }
        if entry.contains("v=v2") {
            return Some("v2");
        }
    }
    None
}

fn gv(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

/// `/api`: the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let list: Vec<Value> = versions.iter().map(|v| json!({ "groupVersion": gv(group, v), "version": v })).collect();
    json!({ "name": group, "versions": list, "preferredVersion": list.first().cloned().unwrap_or(Value::Null) })
}

/// `/apis`: every named group.
pub fn api_group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> =
        catalog.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, versions)| api_group(g, versions)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`, or None when the group is not served.
pub fn group(catalog: &Catalog, name: &str) -> Option<Value> {
    let groups = catalog.groups();
    let (g, versions) = groups.iter().find(|(g, _)| g == name && !g.is_empty())?;
    let mut doc = api_group(g, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn subresource_verbs(sub: &str) -> (&'static [&'static str], Option<(&'static str, &'static str, &'static str)>) {
    // (verbs, response kind other than the resource's own)
    match sub {
        "status" | "approval" => (&["get", "patch", "update"], None),
        "scale" => (&["get", "patch", "update"], Some(("autoscaling", "v1", "Scale"))),
        "binding" => (&["create"], Some(("", "v1", "Binding"))),
        "eviction" => (&["create"], Some(("policy", "v1", "Eviction"))),
        "finalize" => (&["update"], None),
        "log" => (&["get"], Some(("", "v1", "Pod"))),
        "exec" | "attach" | "portforward" => (&["create", "get"], Some(("", "v1", "PodExecOptions"))),
        "proxy" => (&["create", "delete", "get", "patch", "update"], None),
        "token" => (&["create"], Some(("authentication.k8s.io", "v1", "TokenRequest"))),
        "ephemeralcontainers" | "resize" => (&["get", "patch", "update"], None),
        _ => (&["get"], None),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`: the APIResourceList.
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for s in catalog.list.iter().filter(|s| s.info.group == group && s.info.version == version) {
        let i = &s.info;
        let mut r = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": i.verbs,
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        for sub in &i.subresources {
            let (verbs, kind) = subresource_verbs(sub);
            let mut r = json!({
                "name": format!("{}/{sub}", i.plural),
                "singularName": "",
                "namespaced": i.namespaced,
                "kind": kind.map_or(i.kind.as_str(), |k| k.2),
                "verbs": verbs,
            });
            if let Some((g, v, _)) = kind {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv(group, version), "resources": resources })
}

fn aggregated_resource(s: &Served) -> Value {
    let i = &s.info;
    let subresources: Vec<Value> = i
        .subresources
        .iter()
        .map(|sub| {
            let (verbs, kind) = subresource_verbs(sub);
            let (g, v, k) = kind.unwrap_or((i.group.as_str(), i.version.as_str(), i.kind.as_str()));
            json!({ "subresource": sub, "responseKind": { "group": g, "version": v, "kind": k }, "verbs": verbs })
        })
        .collect();
    let mut r = json!({
        "resource": i.plural,
        "responseKind": { "group": i.group, "version": i.version, "kind": i.kind },
        "scope": if i.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": i.singular,
        "verbs": i.verbs,
    });
    if !i.short_names.is_empty() {
        r["shortNames"] = json!(i.short_names);
    }
    if !i.categories.is_empty() {
        r["categories"] = json!(i.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

/// The aggregated discovery document of the core group (`legacy`) or of all named groups.
pub fn aggregated(catalog: &Catalog, legacy: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (g, versions) in catalog.groups() {
        if g.is_empty() != legacy {
            continue;
        }
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = catalog
                    .list
                    .iter()
                    .filter(|s| s.info.group == g && &s.info.version == v)
                    .map(|s| aggregated_resource(s))
                    .collect();
                json!({ "version": v, "resources": resources, "freshness": "Current" })
            })
            .collect();
        let metadata = if g.is_empty() { json!({}) } else { json!({ "name": g }) };
        items.push(json!({ "metadata": metadata, "versions": versions }));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// The aggregated document as a response with its exact content type.
pub fn aggregated_response(catalog: &Catalog, legacy: bool, version: &'static str) -> Response {
    let body = serde_json::to_vec(&aggregated(catalog, legacy, version)).unwrap_or_default();
    let mut resp = codec::with_type(StatusCode::OK, body, "application/json");
    let ct = if version == "v2beta1" {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    } else {
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}
