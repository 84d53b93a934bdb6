//! RBAC rule evaluation over an index of roles and bindings: [`Policy`] is one immutable
//! snapshot of every Role, ClusterRole, RoleBinding and ClusterRoleBinding, with bindings
//! indexed by subject (user or group name) so that a request only looks at the bindings
//! that name its user or one of its groups. Matching follows Kubernetes' `RuleAllows`,
//! and [`covers`] its escalation check (`validation.Covers`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};

use super::attributes::Attributes;
use crate::authn::UserInfo;

/// The group whose members may do everything, as Kubernetes' privileged group.
pub const MASTERS: &str = "system:masters";

/// The role a binding grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRef {
    /// A ClusterRole by name.
    Cluster(String),
    /// A Role in the binding's namespace, by name.
    Namespaced(String),
}

/// Bindings indexed by the user and group names they bind.
#[derive(Debug, Default)]
struct BySubject {
    users: HashMap<String, Vec<RoleRef>>,
    groups: HashMap<String, Vec<RoleRef>>,
}

impl BySubject {
    fn add(&mut self, subjects: &[Subject], role: &RoleRef, binding_namespace: &str) {
        for s in subjects {
            let (map, name) = match s.kind.as_str() {
                "User" => (&mut self.users, s.name.clone()),
                "Group" => (&mut self.groups, s.name.clone()),
                "ServiceAccount" => {
                    let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
                    (&mut self.users, format!("system:serviceaccount:{ns}:{}", s.name))
                }
                _ => continue,
            };
            let refs = map.entry(name).or_default();
            if !refs.contains(role) {
                refs.push(role.clone());
            }
        }
    }

    /// The roles bound to `user` or one of its groups.
    fn roles<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a RoleRef> + 'a {
        self.users
            .get(&user.username)
            .into_iter()
            .chain(user.groups.iter().filter_map(|g| self.groups.get(g)))
            .flatten()
    }
}

/// One snapshot of the cluster's RBAC objects.
#[derive(Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_bindings: BySubject,
    bindings: HashMap<String, BySubject>,
}

/// A cached RBAC object, by its store key.
pub enum Object {
    /// A ClusterRole.
    ClusterRole(ClusterRole),
    /// A Role.
    Role(Role),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// A RoleBinding.
    RoleBinding(RoleBinding),
}

fn role_ref(kind: &str, name: &str) -> Option<RoleRef> {
    match kind {
        "ClusterRole" => Some(RoleRef::Cluster(name.to_string())),
        "Role" => Some(RoleRef::Namespaced(name.to_string())),
        _ => None,
    }
}

impl Policy {
    /// The index of `objects`.
    pub fn build(objects: impl IntoIterator<Item = Object>) -> Policy {
        let mut p = Policy::default();
        for o in objects {
            match o {
                Object::ClusterRole(r) => {
                    let name = r.metadata.name.unwrap_or_default();
                    p.cluster_roles.insert(name, r.rules.unwrap_or_default().into());
                }
                Object::Role(r) => {
                    let key = (r.metadata.namespace.unwrap_or_default(), r.metadata.name.unwrap_or_default());
                    p.roles.insert(key, r.rules.unwrap_or_default().into());
                }
                Object::ClusterRoleBinding(b) => {
                    // A ClusterRoleBinding may only reference a ClusterRole.
                    if b.role_ref.kind == "ClusterRole" {
                        let role = RoleRef::Cluster(b.role_ref.name);
                        p.cluster_bindings.add(b.subjects.as_deref().unwrap_or_default(), &role, "");
                    }
                }
                Object::RoleBinding(b) => {
                    let ns = b.metadata.namespace.unwrap_or_default();
                    if let Some(role) = role_ref(&b.role_ref.kind, &b.role_ref.name) {
                        p.bindings.entry(ns.clone()).or_default().add(
                            b.subjects.as_deref().unwrap_or_default(),
                            &role,
                            &ns,
                        );
                    }
                }
            }
        }
        p
    }

    /// The rules of a role a binding in `namespace` references, if it exists.
    pub fn role_rules(&self, namespace: &str, role: &RoleRef) -> Option<&Arc<[PolicyRule]>> {
        match role {
            RoleRef::Cluster(name) => self.cluster_roles.get(name),
            RoleRef::Namespaced(name) => self.roles.get(&(namespace.to_string(), name.clone())),
        }
    }

    /// Visits the rule sets that apply to `user` in `namespace` (cluster-wide bindings
    /// first, then the namespace's); stops when `visit` returns true, and returns whether
    /// it did.
    fn visit(&self, user: &UserInfo, namespace: &str, mut visit: impl FnMut(&[PolicyRule]) -> bool) -> bool {
        for role in self.cluster_bindings.roles(user) {
            if let Some(rules) = self.role_rules("", role)
                && visit(rules)
            {
                return true;
            }
        }
        if !namespace.is_empty()
            && let Some(bindings) = self.bindings.get(namespace)
        {
            for role in bindings.roles(user) {
                if let Some(rules) = self.role_rules(namespace, role)
                    && visit(rules)
                {
                    return true;
                }
            }
        }
        false
    }

    /// True when a binding grants `attrs` (or the user is in [`MASTERS`]).
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if attrs.user.groups.iter().any(|g| g == MASTERS) {
            return true;
        }
        self.visit(&attrs.user, &attrs.namespace, |rules| rules.iter().any(|r| rule_allows(attrs, r)))
    }

    /// Every rule that applies to `user` in `namespace` (empty: cluster-wide only).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return vec![
                PolicyRule {
                    verbs: vec!["*".into()],
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    verbs: vec!["*".into()],
                    non_resource_urls: Some(vec!["*".into()]),
                    ..PolicyRule::default()
                },
            ];
        }
        let mut out = Vec::new();
        self.visit(user, namespace, |rules| {
            out.extend(rules.iter().cloned());
            false
        });
        out
    }
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == value)
}

fn opt(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or_default()
}

/// Kubernetes' `RuleAllows`: whether one rule grants the request.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !has(&rule.verbs, "*") && !has(&rule.verbs, &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return opt(&rule.non_resource_urls).iter().any(|u| url_matches(u, &attrs.path));
    }
    let groups = opt(&rule.api_groups);
    if !has(groups, "*") && !has(groups, &attrs.api_group) {
        return false;
    }
    let combined = attrs.resource_and_subresource();
    let resource_ok = opt(&rule.resources).iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty() && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = opt(&rule.resource_names);
    names.is_empty() || has(names, &attrs.name)
}

fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*" || rule_url == path || rule_url.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
}

/// One rule broken into rules of one verb, group, resource (and name) or URL each.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |v: &str| vec![v.to_string()];
    let mut out = Vec::new();
    for group in opt(&rule.api_groups) {
        for resource in opt(&rule.resources) {
            for verb in &rule.verbs {
                let names = opt(&rule.resource_names);
                let base = PolicyRule {
                    api_groups: Some(one(group)),
                    resources: Some(one(resource)),
                    verbs: one(verb),
                    ..PolicyRule::default()
                };
                if names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(names.iter().map(|n| PolicyRule { resource_names: Some(one(n)), ..base.clone() }));
                }
            }
        }
    }
    for url in opt(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule { non_resource_urls: Some(one(url)), verbs: one(verb), ..PolicyRule::default() });
        }
    }
    out
}

fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let all = |owned: &[String], wanted: &[String]| wanted.iter().all(|w| has(owned, w));
    let verbs = has(&owner.verbs, "*") || all(&owner.verbs, &sub.verbs);
    let groups = has(opt(&owner.api_groups), "*") || all(opt(&owner.api_groups), opt(&sub.api_groups));
    let owned_resources = opt(&owner.resources);
    let resources = has(owned_resources, "*")
        || opt(&sub.resources).iter().all(|r| {
            has(owned_resources, r) || r.split_once('/').is_some_and(|(_, s)| has(owned_resources, &format!("*/{s}")))
        });
    let urls =
        opt(&sub.non_resource_urls).iter().all(|u| opt(&owner.non_resource_urls).iter().any(|o| url_matches(o, u)));
    let owner_names = opt(&owner.resource_names);
    let sub_names = opt(&sub.resource_names);
    let names = owner_names.is_empty() || (!sub_names.is_empty() && all(owner_names, sub_names));
    verbs && groups && resources && urls && names
}

/// Kubernetes' `Covers`: the rules of `servant` that no rule of `owner` covers (empty when
/// `owner` holds every permission `servant` grants).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    servant.iter().flat_map(breakdown).filter(|sub| !owner.iter().any(|o| rule_covers(o, sub))).collect()
}

/// A rule as Kubernetes' `CompactString` prints it: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let quoted = |list: &[String]| {
        let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", items.join(" "))
    };
    let mut fields = Vec::new();
    for (label, list) in [
        ("APIGroups", opt(&rule.api_groups)),
        ("Resources", opt(&rule.resources)),
        ("ResourceNames", opt(&rule.resource_names)),
        ("NonResourceURLs", opt(&rule.non_resource_urls)),
        ("Verbs", &rule.verbs[..]),
    ] {
        if !list.is_empty() {
            fields.push(format!("{label}:{}", quoted(list)));
        }
    }
    format!("{{{}}}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            ..PolicyRule::default()
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource(UserInfo::new("u", []), verb, group, resource, sub, "ns", name)
    }

    #[test]
    fn rules_match_as_kubernetes() {
        let pods = rule(&[""], &["pods"], &["get", "list"], &[]);
        assert!(rule_allows(&attrs("get", "", "pods", "", "p"), &pods));
        assert!(!rule_allows(&attrs("delete", "", "pods", "", "p"), &pods));
        assert!(!rule_allows(&attrs("get", "apps", "pods", "", "p"), &pods));
        assert!(!rule_allows(&attrs("get", "", "pods", "log", "p"), &pods));
        let status = rule(&["*"], &["*/status"], &["*"], &[]);
        assert!(rule_allows(&attrs("update", "apps", "deployments", "status", "d"), &status));
        assert!(!rule_allows(&attrs("update", "apps", "deployments", "", "d"), &status));
        let named = rule(&[""], &["configmaps"], &["get"], &["a"]);
        assert!(rule_allows(&attrs("get", "", "configmaps", "", "a"), &named));
        assert!(!rule_allows(&attrs("get", "", "configmaps", "", "b"), &named));
        assert!(!rule_allows(&attrs("get", "", "configmaps", "", ""), &named));
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/apis/*".into(), "/version".into()]),
            ..PolicyRule::default()
        };
        let path = |p: &str| Attributes::non_resource(UserInfo::new("u", []), "get", p);
        assert!(rule_allows(&path("/apis/apps/v1"), &urls));
        assert!(rule_allows(&path("/version"), &urls));
        assert!(!rule_allows(&path("/versions"), &urls));
        assert!(!rule_allows(&path("/api"), &urls));
    }

    #[test]
    fn covers_breaks_rules_down() {
        let owner = vec![rule(&["", "apps"], &["pods", "deployments", "*/scale"], &["get", "list"], &[])];
        assert!(covers(&owner, &[rule(&[""], &["pods"], &["get"], &[])]).is_empty());
        assert!(covers(&owner, &[rule(&["apps"], &["deployments/scale"], &["list"], &["x"])]).is_empty());
        let missing = covers(&owner, &[rule(&[""], &["pods", "secrets"], &["get", "delete"], &[])]);
        let printed: Vec<String> = missing.iter().map(compact_string).collect();
        assert_eq!(
            printed,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}"#,
            ]
        );
        let named_owner = vec![rule(&[""], &["configmaps"], &["get"], &["a"])];
        assert!(covers(&named_owner, &[rule(&[""], &["configmaps"], &["get"], &["a"])]).is_empty());
        assert_eq!(covers(&named_owner, &[rule(&[""], &["configmaps"], &["get"], &[])]).len(), 1);
    }

    #[test]
    fn bindings_by_subject() {
        use serde_json::json;
        let objects = vec![
            Object::ClusterRole(
                serde_json::from_value(json!({"metadata": {"name": "view"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}))
                    .unwrap(),
            ),
            Object::RoleBinding(
                serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "team-a"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci"}]}))
                    .unwrap(),
            ),
        ];
        let policy = Policy::build(objects);
        let dev = UserInfo::new("alice", ["devs".to_string()]);
        let ask = |user: &UserInfo, ns: &str| {
            policy.allows(&Attributes::resource(user.clone(), "list", "", "pods", "", ns, ""))
        };
        assert!(ask(&dev, "team-a"));
        assert!(!ask(&dev, "team-b"));
        assert!(!ask(&dev, ""));
        assert!(ask(&UserInfo::new("system:serviceaccount:team-a:ci", []), "team-a"));
        assert!(!ask(&UserInfo::new("bob", []), "team-a"));
        assert!(ask(&UserInfo::new("root", [MASTERS.to_string()]), "team-b"));
        assert_eq!(policy.rules_for(&dev, "team-a").len(), 1);
        assert!(policy.rules_for(&dev, "team-b").is_empty());
    }
}
