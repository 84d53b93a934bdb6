//! Authorization of requests to the agent's port, as the kubelet's webhook authorizer: the
//! caller's certificate names a user (CN) and groups (O values); the agent asks the API
//! server with a SubjectAccessReview whether that user may use the Node's subresource the
//! path maps to (`nodes/stats`, `nodes/metrics`, `nodes/log`, `nodes/spec`, else
//! `nodes/proxy`: exec, attach, port-forward, container logs) with the verb the method
//! maps to (GET → get, POST → create...). Answers are cached for a while, as the kubelet
//! does (allowed 5 minutes, denied 30 seconds).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::Method;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;

/// How long an allowed answer is reused.
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied answer is reused.
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Most answers kept; the cache is emptied when full.
const MAX_ENTRIES: usize = 4096;

/// The caller, from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct User {
    /// The certificate's CN.
    pub name: String,
    /// Its O values.
    pub groups: Vec<String>,
}

impl User {
    /// The user a DER client certificate names.
    pub(crate) fn from_certificate(der: &[u8]) -> Option<User> {
        let (name, groups) = berth_pki::csr::certificate_subject(der)?;
        Some(User { name, groups })
    }
}

/// What a request asks of the Node: verb and subresource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Asked {
    /// get, create, update, patch or delete.
    pub verb: &'static str,
    /// stats, metrics, log, spec or proxy.
    pub subresource: &'static str,
}

/// The kubelet's mapping of a request to a Node subresource and verb.
pub(crate) fn asked(method: &Method, path: &str) -> Asked {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    };
    Asked { verb, subresource }
}

/// The agent's authorizer: SubjectAccessReviews with a cache of answers.
pub(crate) struct Authorizer {
    client: kube::Client,
    node_name: String,
    answers: Mutex<HashMap<(User, Asked), (bool, Instant)>>,
}

impl Authorizer {
    /// An authorizer for requests to the node `node_name`, asking through `client`.
    pub(crate) fn new(client: kube::Client, node_name: String) -> Authorizer {
        Authorizer { client, node_name, answers: Mutex::new(HashMap::new()) }
    }

    /// Whether `user` may do what `asked` says; an error when the API server cannot answer.
    pub(crate) async fn allowed(&self, user: &User, asked: &Asked) -> Result<bool, kube::Error> {
        let key = (user.clone(), asked.clone());
        let now = Instant::now();
        let cached = self.answers.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
        if let Some((allowed, _)) = cached.filter(|(_, until)| *until > now) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(asked.subresource.into()),
                    name: Some(self.node_name.clone()),
                    verb: Some(asked.verb.into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= MAX_ENTRIES {
            answers.clear();
        }
        answers.insert(key, (allowed, now + ttl));
        Ok(allowed)
    }
}

/// The kubelet's wording of a refusal (and of a failure to decide).
pub(crate) fn describe(user: &User, asked: &Asked) -> String {
    format!("user={}, verb={}, resource=nodes, subresource={}", user.name, asked.verb, asked.subresource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_node_subresources_and_methods_to_verbs() {
        let check = |m: Method, p: &str| {
            let a = asked(&m, p);
            (a.verb, a.subresource)
        };
        assert_eq!(check(Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(check(Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(check(Method::GET, "/portForward/ns/p"), ("get", "proxy"));
        assert_eq!(check(Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(check(Method::GET, "/stats"), ("get", "stats"));
        assert_eq!(check(Method::GET, "/statsx"), ("get", "proxy"));
        assert_eq!(check(Method::GET, "/metrics/cadvisor"), ("get", "metrics"));
        assert_eq!(check(Method::GET, "/logs/syslog"), ("get", "log"));
        assert_eq!(check(Method::GET, "/spec/"), ("get", "spec"));
        assert_eq!(check(Method::DELETE, "/healthz"), ("delete", "proxy"));
        assert_eq!(check(Method::PUT, "/x"), ("update", "proxy"));
        assert_eq!(check(Method::PATCH, "/x"), ("patch", "proxy"));
    }
}
