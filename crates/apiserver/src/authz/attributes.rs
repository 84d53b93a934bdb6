//! Request attributes: what a request asks to do, as Kubernetes' `RequestInfo` resolves it
//! from the method and path alone (no catalog): a verb on a resource (group, resource,
//! subresource, namespace, name) or on a non-resource path.

use axum::http::Method;

use crate::authn::UserInfo;

/// What one request asks to do, for the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection (or
    /// impersonate, bind, escalate, use...; for non-resource paths the lowercase method).
    pub verb: String,
    /// True for a request on a resource, false for a non-resource path.
    pub resource_request: bool,
    /// API group (empty for the core group).
    pub api_group: String,
    /// API version (informational).
    pub api_version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource, empty if none.
    pub subresource: String,
    /// Namespace, empty for cluster scope.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
    /// The path of a non-resource request.
    pub path: String,
    /// The equality requirements (`field=value`, `field==value`) of a list or watch's
    /// field selector, which the Node authorizer reads (`spec.nodeName=<node>`).
    pub field_selector: Vec<(String, String)>,
}

impl Attributes {
    /// Attributes of a resource request.
    pub fn resource(
        user: UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user,
            verb: verb.to_string(),
            resource_request: true,
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            api_version: String::new(),
            path: String::new(),
            field_selector: Vec::new(),
        }
    }

    /// Attributes of a non-resource request.
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Attributes {
        let mut attrs = Attributes::resource(user, verb, "", "", "", "", "");
        attrs.resource_request = false;
        attrs.path = path.to_string();
        attrs
    }

    /// Resolves a request's method, (percent-decoded) path and query as Kubernetes does.
    pub fn from_request(user: UserInfo, method: &Method, path: &str, query: Option<&str>) -> Attributes {
        let lower_method = method.as_str().to_ascii_lowercase();
        let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
        let (group, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => (("", *version), rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => ((*group, *version), rest),
            _ => return Attributes::non_resource(user, &lower_method, path),
        };
        let mut rest = rest;
        let query_pairs: Vec<(String, String)> =
            query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let watch_param = query_pairs.iter().any(|(k, v)| k == "watch" && (v == "true" || v == "1" || v.is_empty()));
        let mut verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string();
        // The deprecated `/watch/` prefix.
        if rest.first() == Some(&"watch") {
            verb = "watch".into();
            rest = &rest[1..];
        }
        let mut attrs = Attributes::resource(user, "", group.0, "", "", "", "");
        attrs.api_version = group.1.to_string();
        // namespaces/{ns}/{resource}... (but `namespaces/{name}` alone is the Namespace itself).
        let segments = if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            attrs.namespace = rest[1].to_string();
            // ...unless what follows is one of the Namespace's own subresources.
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") { &rest[2..] } else { rest }
        } else {
            rest
        };
        match segments {
            [] => {}
            [resource] => attrs.resource = resource.to_string(),
            [resource, name] => {
                attrs.resource = resource.to_string();
                attrs.name = name.to_string();
            }
            [resource, name, sub, ..] => {
                attrs.resource = resource.to_string();
                attrs.name = name.to_string();
                attrs.subresource = sub.to_string();
            }
        }
        // `namespaces/{name}` (namespace and name both set by the split above).
        if segments.first() == Some(&"namespaces") && segments.len() >= 2 {
            attrs.namespace = attrs.name.clone();
        }
        if attrs.name.is_empty() {
            match verb.as_str() {
                "get" => verb = if watch_param { "watch".into() } else { "list".into() },
                "delete" => verb = "deletecollection".into(),
                _ => {}
            }
            // A list or watch of one object by field selector names it.
            if verb == "list" || verb == "watch" {
                let selector = query_pairs.iter().find(|(k, _)| k == "fieldSelector").map(|(_, v)| v.as_str());
                attrs.field_selector = selector.map(equality_requirements).unwrap_or_default();
                if let Some((_, name)) = attrs.field_selector.iter().find(|(f, _)| f == "metadata.name") {
                    attrs.name = name.clone();
                }
            }
        } else if verb == "get" && watch_param {
            verb = "watch".into();
        }
        attrs.verb = verb;
        attrs
    }

    /// The resource with its subresource (`pods/status`).
    pub fn resource_and_subresource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Kubernetes' wording of a refusal of these attributes (`User "alice" cannot list
    /// resource "pods" in API group "" in the namespace "team-b"`).
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.username;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.resource_and_subresource();
        if self.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                self.verb, self.api_group, self.namespace
            )
        }
    }
}

/// The `field=value` and `field==value` terms of a field selector (`!=` terms are left out).
fn equality_requirements(selector: &str) -> Vec<(String, String)> {
    selector
        .split(',')
        .filter_map(|term| {
            let (field, value) = term.split_once('=')?;
            if field.ends_with('!') {
                return None;
            }
            let value = value.strip_prefix('=').unwrap_or(value);
            Some((field.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, query: Option<&str>, expect: &str) {
        let a = Attributes::from_request(UserInfo::new("u", []), &method, path, query);
        let got = if a.resource_request {
            format!("{} {}/{} {} ns={} name={}", a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name)
        } else {
            format!("{} path {}", a.verb, a.path)
        };
        assert_eq!(got, expect, "{method} {path} {query:?}");
    }

    #[test]
    fn request_info() {
        check(Method::GET, "/api/v1/namespaces/a/pods", None, "list /pods  ns=a name=");
        check(Method::GET, "/api/v1/namespaces/a/pods", Some("watch=true"), "watch /pods  ns=a name=");
        check(Method::GET, "/api/v1/watch/namespaces/a/pods", None, "watch /pods  ns=a name=");
        check(Method::GET, "/api/v1/pods", Some("fieldSelector=metadata.name%3Dx"), "list /pods  ns= name=x");
        check(Method::GET, "/api/v1/namespaces/a/pods/p/log", None, "get /pods log ns=a name=p");
        let a = Attributes::from_request(
            UserInfo::new("u", []),
            &Method::GET,
            "/api/v1/pods",
            Some("fieldSelector=spec.nodeName%3D%3Dn1%2Cstatus.phase%21%3DFailed%2Cmetadata.name%3Dp&watch=1"),
        );
        assert_eq!(a.verb, "watch");
        assert_eq!(a.name, "p");
        assert_eq!(
            a.field_selector,
            [("spec.nodeName".to_string(), "n1".to_string()), ("metadata.name".to_string(), "p".to_string())]
        );
        check(Method::PUT, "/api/v1/namespaces/a/pods/p/status", None, "update /pods status ns=a name=p");
        check(Method::POST, "/api/v1/namespaces/a/pods/p/binding", None, "create /pods binding ns=a name=p");
        check(
            Method::DELETE,
            "/apis/apps/v1/namespaces/a/deployments",
            None,
            "deletecollection apps/deployments  ns=a name=",
        );
        check(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/d", None, "patch apps/deployments  ns=a name=d");
        check(Method::GET, "/api/v1/namespaces/a", None, "get /namespaces  ns=a name=a");
        check(Method::PUT, "/api/v1/namespaces/a/finalize", None, "update /namespaces finalize ns=a name=a");
        check(Method::GET, "/api/v1/namespaces", None, "list /namespaces  ns= name=");
        check(Method::GET, "/api/v1/nodes/n1", None, "get /nodes  ns= name=n1");
        check(Method::GET, "/api", None, "get path /api");
        check(Method::GET, "/api/v1", None, "get path /api/v1");
        check(Method::GET, "/apis/apps/v1", None, "get path /apis/apps/v1");
        check(Method::GET, "/healthz", None, "get path /healthz");
        check(Method::POST, "/openapi/v2", None, "post path /openapi/v2");
    }

    #[test]
    fn forbidden_messages() {
        let alice = UserInfo::new("alice", []);
        let a = Attributes::resource(alice.clone(), "list", "", "pods", "", "team-b", "");
        assert_eq!(
            a.forbidden_message(),
            r#"User "alice" cannot list resource "pods" in API group "" in the namespace "team-b""#
        );
        let a = Attributes::resource(alice.clone(), "get", "apps", "deployments", "scale", "", "");
        assert_eq!(
            a.forbidden_message(),
            r#"User "alice" cannot get resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let a = Attributes::non_resource(alice, "get", "/metrics");
        assert_eq!(a.forbidden_message(), r#"User "alice" cannot get path "/metrics""#);
    }
}
