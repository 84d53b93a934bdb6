//! Kubernetes' default roles for cluster components (kube-proxy, DNS, monitoring,
//! aggregation, volume provisioning, CSR approvers) and the `system:controller:*` roles of
//! kube-controller-manager's `--use-service-account-credentials` mode, with their default
//! ClusterRoleBindings, as Kubernetes 1.33's bootstrap policy ships them.
//!
//! berth's controllers keep running as `system:kube-controller-manager`; the per-controller
//! roles exist for users and tools that expect them (and bind them to the controllers'
//! ServiceAccounts in `kube-system`, as Kubernetes does).

use serde_json::{Value, json};

use super::{READ, cluster_role, named_rule, rule, urls};

const CONTROLLER_PREFIX: &str = "system:controller:";

/// Events, as every component records them (both event APIs).
fn events() -> Value {
    rule(&["", "events.k8s.io"], &["events"], &["create", "update", "patch"])
}

fn approver(name: &str, signer: &str) -> Value {
    cluster_role(
        &format!("system:certificates.k8s.io:{name}"),
        json!({}),
        vec![named_rule(&["certificates.k8s.io"], &["signers"], &["approve"], &[signer])],
    )
}

/// The component ClusterRoles (those berth's own list did not already hold).
pub(super) fn component_roles() -> Vec<Value> {
    let core = "";
    vec![
        cluster_role(
            "system:auth-delegator",
            json!({}),
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            json!({}),
            vec![
                rule(&[core], &["services", "endpoints"], &["list", "watch"]),
                rule(&[core], &["nodes"], READ),
                events(),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
            ],
        ),
        cluster_role("system:kube-dns", json!({}), vec![rule(&[core], &["endpoints", "services"], &["list", "watch"])]),
        cluster_role(
            "system:monitoring",
            json!({}),
            vec![urls(
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:volume-scheduler",
            json!({}),
            vec![
                rule(&[core], &["persistentvolumes"], &["get", "list", "watch", "update"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[core], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            json!({}),
            vec![
                rule(&[core], &["persistentvolumes"], &["get", "list", "watch", "create", "delete"]),
                // update: provisioners set lock annotations on claims.
                rule(&[core], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[core], &["events"], &["watch"]),
                events(),
            ],
        ),
        cluster_role(
            "system:heapster",
            json!({}),
            vec![
                rule(&[core], &["events", "pods", "nodes", "namespaces"], READ),
                rule(&["extensions"], &["deployments"], READ),
            ],
        ),
        // Not bound: where node-problem-detector runs varies by deployment.
        cluster_role(
            "system:node-problem-detector",
            json!({}),
            vec![rule(&[core], &["nodes"], &["get"]), rule(&[core], &["nodes/status"], &["patch"]), events()],
        ),
        cluster_role("system:kube-aggregator", json!({}), vec![rule(&[core], &["services", "endpoints"], READ)]),
        approver("kube-apiserver-client-approver", "kubernetes.io/kube-apiserver-client"),
        approver("kube-apiserver-client-kubelet-approver", "kubernetes.io/kube-apiserver-client-kubelet"),
        approver("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        approver("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
    ]
}

/// The `system:controller:*` ClusterRoles of Kubernetes 1.33's controllers enabled by
/// default (feature-gated ones that are off by default are left out; the
/// certificate-controller's role is in berth's main list).
pub(super) fn controller_roles() -> Vec<Value> {
    let core = "";
    let apps = &["apps", "extensions"][..];
    let role = |name: &str, rules: Vec<Value>| cluster_role(&format!("{CONTROLLER_PREFIX}{name}"), json!({}), rules);
    vec![
        role(
            "attachdetach-controller",
            vec![
                rule(&[core], &["persistentvolumes", "persistentvolumeclaims"], &["list", "watch"]),
                rule(&[core], &["nodes"], READ),
                rule(&[core], &["nodes/status"], &["patch", "update"]),
                rule(&[core], &["pods"], &["list", "watch"]),
                events(),
                rule(&["storage.k8s.io"], &["volumeattachments"], &["get", "list", "watch", "create", "delete"]),
                rule(&["storage.k8s.io"], &["csidrivers", "csinodes"], READ),
            ],
        ),
        // It writes aggregated rules it may not hold itself.
        role(
            "clusterrole-aggregation-controller",
            vec![rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["escalate", "get", "list", "watch", "update", "patch"],
            )],
        ),
        role(
            "cronjob-controller",
            vec![
                rule(&["batch"], &["cronjobs"], &["get", "list", "watch", "update"]),
                rule(&["batch"], &["jobs"], &["get", "list", "watch", "create", "update", "delete", "patch"]),
                rule(&["batch"], &["cronjobs/status", "cronjobs/finalizers"], &["update"]),
                rule(&[core], &["pods"], &["list", "watch", "delete"]),
                events(),
            ],
        ),
        role(
            "daemon-set-controller",
            vec![
                rule(apps, &["daemonsets"], READ),
                rule(apps, &["daemonsets/status", "daemonsets/finalizers"], &["update"]),
                rule(&[core], &["nodes"], &["list", "watch"]),
                rule(&[core], &["pods"], &["list", "watch", "create", "delete", "patch"]),
                rule(&[core], &["pods/binding"], &["create"]),
                rule(
                    &["apps"],
                    &["controllerrevisions"],
                    &["get", "list", "watch", "create", "delete", "update", "patch"],
                ),
                events(),
            ],
        ),
        role(
            "deployment-controller",
            vec![
                rule(apps, &["deployments"], &["get", "list", "watch", "update"]),
                rule(apps, &["deployments/status", "deployments/finalizers"], &["update"]),
                rule(apps, &["replicasets"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
                rule(&[core], &["pods"], &["get", "list", "watch", "update"]),
                events(),
            ],
        ),
        role(
            "disruption-controller",
            vec![
                rule(apps, &["deployments", "replicasets"], READ),
                rule(&[core], &["replicationcontrollers"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(&["apps"], &["statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets/status"], &["update"]),
                rule(&[core], &["pods/status"], &["patch", "update"]),
                rule(&["*"], &["*/scale"], &["get"]),
                events(),
            ],
        ),
        role(
            "endpoint-controller",
            vec![
                rule(&[core], &["services", "pods"], READ),
                rule(&[core], &["endpoints"], &["get", "list", "watch", "create", "update", "delete"]),
                rule(&[core], &["endpoints/restricted"], &["create"]),
                events(),
            ],
        ),
        role(
            "endpointslice-controller",
            vec![
                rule(&[core], &["services", "pods", "nodes"], READ),
                // Slices owned by their Service block its deletion.
                rule(&[core], &["services/finalizers"], &["update"]),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["get", "list", "watch", "create", "update", "delete"],
                ),
                events(),
            ],
        ),
        role(
            "endpointslicemirroring-controller",
            vec![
                rule(&[core], &["services", "endpoints"], READ),
                rule(&[core], &["services/finalizers", "endpoints/finalizers"], &["update"]),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["get", "list", "watch", "create", "update", "delete"],
                ),
                events(),
            ],
        ),
        role(
            "ephemeral-volume-controller",
            vec![
                rule(&[core], &["pods"], READ),
                rule(&[core], &["pods/finalizers"], &["update"]),
                rule(&[core], &["persistentvolumeclaims"], &["get", "list", "watch", "create"]),
                events(),
            ],
        ),
        role(
            "expand-controller",
            vec![
                rule(&[core], &["persistentvolumes"], &["get", "list", "watch", "update", "patch"]),
                rule(&[core], &["persistentvolumeclaims/status"], &["update", "patch"]),
                rule(&[core], &["persistentvolumeclaims"], READ),
                events(),
                rule(&[core], &["services"], &["get"]),
            ],
        ),
        role(
            "generic-garbage-collector",
            vec![rule(&["*"], &["*"], &["get", "list", "watch", "patch", "update", "delete"]), events()],
        ),
        role(
            "horizontal-pod-autoscaler",
            vec![
                rule(&["autoscaling"], &["horizontalpodautoscalers"], READ),
                rule(&["autoscaling"], &["horizontalpodautoscalers/status"], &["update"]),
                rule(&["*"], &["*/scale"], &["get", "update"]),
                rule(&[core], &["pods"], &["list", "watch"]),
                rule(&["metrics.k8s.io"], &["pods"], &["list", "watch"]),
                rule(&["custom.metrics.k8s.io"], &["*"], READ),
                rule(&["external.metrics.k8s.io"], &["*"], READ),
                events(),
            ],
        ),
        role(
            "job-controller",
            vec![
                rule(&["batch"], &["jobs"], &["get", "list", "watch", "update", "patch"]),
                rule(&["batch"], &["jobs/status", "jobs/finalizers"], &["update"]),
                rule(&[core], &["pods"], &["list", "watch", "create", "delete", "patch"]),
                events(),
            ],
        ),
        role(
            "legacy-service-account-token-cleaner",
            vec![
                named_rule(
                    &[core],
                    &["configmaps"],
                    &["get"],
                    &["kube-apiserver-legacy-service-account-token-tracking"],
                ),
                rule(&[core], &["secrets"], &["patch", "delete"]),
            ],
        ),
        role(
            "namespace-controller",
            vec![
                rule(&[core], &["namespaces"], &["get", "list", "watch", "delete"]),
                rule(&[core], &["namespaces/finalize", "namespaces/status"], &["update"]),
                rule(&["*"], &["*"], &["get", "list", "watch", "delete", "deletecollection"]),
            ],
        ),
        role(
            "node-controller",
            vec![
                rule(&[core], &["nodes"], &["get", "list", "watch", "update", "delete", "patch"]),
                rule(&[core], &["nodes/status", "pods/status"], &["patch", "update"]),
                rule(&[core], &["pods"], &["list", "watch", "get", "delete"]),
                events(),
            ],
        ),
        role(
            "persistent-volume-binder",
            vec![
                rule(&[core], &["persistentvolumes"], &["get", "list", "watch", "update", "create", "delete"]),
                rule(&[core], &["persistentvolumes/status", "persistentvolumeclaims/status"], &["update"]),
                rule(&[core], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
                rule(&[core], &["pods"], &["list", "watch", "get", "create", "delete"]),
                rule(&["storage.k8s.io"], &["storageclasses"], READ),
                rule(&[core], &["nodes"], &["list", "watch"]),
                events(),
                // The recycler watches its pod's events.
                rule(&[core], &["events"], &["watch"]),
                rule(&[core], &["services"], &["get"]),
            ],
        ),
        role(
            "pod-garbage-collector",
            vec![
                rule(&[core], &["pods"], &["list", "watch", "delete"]),
                rule(&[core], &["nodes"], READ),
                rule(&[core], &["pods/status"], &["patch"]),
            ],
        ),
        role(
            "pv-protection-controller",
            vec![rule(&[core], &["persistentvolumes"], &["get", "list", "watch", "update"]), events()],
        ),
        role(
            "pvc-protection-controller",
            vec![
                rule(&[core], &["persistentvolumeclaims"], &["get", "list", "watch", "update"]),
                rule(&[core], &["pods"], READ),
                events(),
            ],
        ),
        role(
            "replicaset-controller",
            vec![
                rule(apps, &["replicasets"], &["get", "list", "watch", "update"]),
                rule(apps, &["replicasets/status", "replicasets/finalizers"], &["update"]),
                rule(&[core], &["pods"], &["list", "watch", "patch", "create", "delete"]),
                events(),
            ],
        ),
        role(
            "replication-controller",
            vec![
                rule(&[core], &["replicationcontrollers"], &["get", "list", "watch", "update"]),
                rule(&[core], &["replicationcontrollers/status", "replicationcontrollers/finalizers"], &["update"]),
                rule(&[core], &["pods"], &["list", "watch", "patch", "create", "delete"]),
                events(),
            ],
        ),
        // Quota counts anything.
        role(
            "resourcequota-controller",
            vec![
                rule(&["*"], &["*"], &["list", "watch"]),
                rule(&[core], &["resourcequotas/status"], &["update"]),
                events(),
            ],
        ),
        role("root-ca-cert-publisher", vec![rule(&[core], &["configmaps"], &["create", "update"]), events()]),
        role(
            "route-controller",
            vec![rule(&[core], &["nodes"], &["list", "watch"]), rule(&[core], &["nodes/status"], &["patch"]), events()],
        ),
        role("service-account-controller", vec![rule(&[core], &["serviceaccounts"], &["create"]), events()]),
        role(
            "service-cidrs-controller",
            vec![
                rule(&["networking.k8s.io"], &["servicecidrs"], &["get", "list", "watch", "patch", "update"]),
                rule(&["networking.k8s.io"], &["servicecidrs/finalizers", "servicecidrs/status"], &["patch", "update"]),
                rule(&["networking.k8s.io"], &["ipaddresses"], READ),
                events(),
            ],
        ),
        role(
            "service-controller",
            vec![
                rule(&[core], &["services"], READ),
                rule(&[core], &["services/status"], &["patch", "update"]),
                rule(&[core], &["nodes"], &["list", "watch"]),
                events(),
            ],
        ),
        role(
            "statefulset-controller",
            vec![
                rule(&[core], &["pods"], &["list", "watch"]),
                rule(&["apps"], &["statefulsets"], READ),
                rule(&["apps"], &["statefulsets/status", "statefulsets/finalizers"], &["update"]),
                rule(&[core], &["pods"], &["get", "create", "delete", "update", "patch"]),
                rule(
                    &["apps"],
                    &["controllerrevisions"],
                    &["get", "create", "delete", "update", "patch", "list", "watch"],
                ),
                rule(&[core], &["persistentvolumeclaims"], &["get", "create", "list", "watch", "update", "delete"]),
                rule(&[core], &["pods/finalizers"], &["update"]),
                events(),
            ],
        ),
        role(
            "ttl-after-finished-controller",
            vec![rule(&["batch"], &["jobs"], &["get", "list", "watch", "delete"]), events()],
        ),
        role("ttl-controller", vec![rule(&[core], &["nodes"], &["update", "patch", "list", "watch"]), events()]),
        role(
            "validatingadmissionpolicy-status-controller",
            vec![
                rule(&["admissionregistration.k8s.io"], &["validatingadmissionpolicies"], READ),
                rule(
                    &["admissionregistration.k8s.io"],
                    &["validatingadmissionpolicies/status"],
                    &["get", "patch", "update"],
                ),
                events(),
            ],
        ),
    ]
}

fn subjects_binding(name: &str, subjects: Vec<Value>) -> Value {
    let mut b = super::binding(name, name, &[]);
    b["subjects"] = json!(subjects);
    b
}

fn subject(kind: &str, name: &str) -> Value {
    json!({ "kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": name })
}

/// A ServiceAccount subject (no apiGroup, a namespace).
fn service_account(namespace: &str, name: &str) -> Value {
    json!({ "kind": "ServiceAccount", "name": name, "namespace": namespace })
}

/// The default bindings of the component roles: those Kubernetes binds, and each
/// `system:controller:NAME` role to the ServiceAccount `kube-system/NAME`.
pub(super) fn component_bindings() -> Vec<Value> {
    let mut bindings = vec![
        subjects_binding("system:node-proxier", vec![subject("User", "system:kube-proxy")]),
        subjects_binding("system:kube-dns", vec![service_account("kube-system", "kube-dns")]),
        subjects_binding("system:monitoring", vec![subject("Group", "system:monitoring")]),
        subjects_binding("system:volume-scheduler", vec![subject("User", "system:kube-scheduler")]),
    ];
    let controllers = controller_roles()
        .into_iter()
        .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_string))
        .chain(std::iter::once(format!("{CONTROLLER_PREFIX}certificate-controller")));
    for name in controllers {
        let sa = name.trim_start_matches(CONTROLLER_PREFIX).to_string();
        bindings.push(subjects_binding(&name, vec![service_account("kube-system", &sa)]));
    }
    bindings
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::PolicyRule;

    use super::super::{cluster_role_bindings, cluster_roles, rbac};
    use super::*;

    fn rules_of(roles: &[Value], name: &str) -> Vec<PolicyRule> {
        let role = roles.iter().find(|r| r["metadata"]["name"] == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true");
        serde_json::from_value(role["rules"].clone()).unwrap()
    }

    /// Whether `role` grants `verb` on `group`/`resource` (an empty group is the core
    /// group; a resource starting with `/` is a non-resource URL, `resource:name` names
    /// the object), decided by the same
    /// rule coverage the escalation check uses.
    fn grants(roles: &[Value], role: &str, verb: &str, group: &str, resource: &str) -> bool {
        let wanted = if resource.starts_with('/') {
            urls(&[resource], &[verb])
        } else if let Some((resource, name)) = resource.split_once(':') {
            named_rule(&[group], &[resource], &[verb], &[name])
        } else {
            rule(&[group], &[resource], &[verb])
        };
        let wanted: PolicyRule = serde_json::from_value(wanted).unwrap();
        rbac::covers(&rules_of(roles, role), &[wanted]).is_empty()
    }

    #[test]
    fn every_component_and_controller_role_exists_with_its_characteristic_rule() {
        let roles = cluster_roles();
        let cases: &[(&str, &str, &str, &str)] = &[
            ("system:auth-delegator", "create", "authentication.k8s.io", "tokenreviews"),
            ("system:auth-delegator", "create", "authorization.k8s.io", "subjectaccessreviews"),
            ("system:node-proxier", "list", "discovery.k8s.io", "endpointslices"),
            ("system:node-proxier", "watch", "", "services"),
            ("system:kube-dns", "watch", "", "endpoints"),
            ("system:monitoring", "get", "", "/metrics"),
            ("system:monitoring", "get", "", "/readyz/etcd"),
            ("system:volume-scheduler", "update", "", "persistentvolumeclaims"),
            ("system:persistent-volume-provisioner", "create", "", "persistentvolumes"),
            ("system:heapster", "list", "", "pods"),
            ("system:node-problem-detector", "patch", "", "nodes/status"),
            ("system:kube-aggregator", "get", "", "services"),
            (
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests/nodeclient",
            ),
            (
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests/selfnodeclient",
            ),
            (
                "system:certificates.k8s.io:kube-apiserver-client-approver",
                "approve",
                "certificates.k8s.io",
                "signers:kubernetes.io/kube-apiserver-client",
            ),
            (
                "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
                "approve",
                "certificates.k8s.io",
                "signers:kubernetes.io/kube-apiserver-client-kubelet",
            ),
            (
                "system:certificates.k8s.io:kubelet-serving-approver",
                "approve",
                "certificates.k8s.io",
                "signers:kubernetes.io/kubelet-serving",
            ),
            (
                "system:certificates.k8s.io:legacy-unknown-approver",
                "approve",
                "certificates.k8s.io",
                "signers:kubernetes.io/legacy-unknown",
            ),
            ("system:service-account-issuer-discovery", "get", "", "/openid/v1/jwks"),
            ("system:controller:attachdetach-controller", "create", "storage.k8s.io", "volumeattachments"),
            (
                "system:controller:clusterrole-aggregation-controller",
                "escalate",
                "rbac.authorization.k8s.io",
                "clusterroles",
            ),
            ("system:controller:cronjob-controller", "create", "batch", "jobs"),
            ("system:controller:daemon-set-controller", "create", "", "pods/binding"),
            ("system:controller:deployment-controller", "update", "apps", "deployments/status"),
            ("system:controller:deployment-controller", "create", "apps", "replicasets"),
            ("system:controller:disruption-controller", "update", "policy", "poddisruptionbudgets/status"),
            ("system:controller:endpoint-controller", "create", "", "endpoints/restricted"),
            ("system:controller:endpointslice-controller", "create", "discovery.k8s.io", "endpointslices"),
            ("system:controller:endpointslicemirroring-controller", "update", "", "endpoints/finalizers"),
            ("system:controller:ephemeral-volume-controller", "create", "", "persistentvolumeclaims"),
            ("system:controller:expand-controller", "patch", "", "persistentvolumeclaims/status"),
            ("system:controller:generic-garbage-collector", "delete", "apps", "deployments"),
            ("system:controller:horizontal-pod-autoscaler", "update", "apps", "deployments/scale"),
            ("system:controller:job-controller", "update", "batch", "jobs/status"),
            ("system:controller:legacy-service-account-token-cleaner", "delete", "", "secrets"),
            ("system:controller:namespace-controller", "update", "", "namespaces/finalize"),
            ("system:controller:node-controller", "delete", "", "nodes"),
            ("system:controller:persistent-volume-binder", "update", "", "persistentvolumes/status"),
            ("system:controller:pod-garbage-collector", "delete", "", "pods"),
            ("system:controller:pv-protection-controller", "update", "", "persistentvolumes"),
            ("system:controller:pvc-protection-controller", "update", "", "persistentvolumeclaims"),
            ("system:controller:replicaset-controller", "update", "apps", "replicasets/status"),
            ("system:controller:replication-controller", "create", "", "pods"),
            ("system:controller:resourcequota-controller", "update", "", "resourcequotas/status"),
            ("system:controller:root-ca-cert-publisher", "create", "", "configmaps"),
            ("system:controller:route-controller", "patch", "", "nodes/status"),
            ("system:controller:service-account-controller", "create", "", "serviceaccounts"),
            ("system:controller:service-cidrs-controller", "update", "networking.k8s.io", "servicecidrs/status"),
            ("system:controller:service-controller", "update", "", "services/status"),
            ("system:controller:statefulset-controller", "create", "apps", "controllerrevisions"),
            ("system:controller:ttl-after-finished-controller", "delete", "batch", "jobs"),
            ("system:controller:ttl-controller", "patch", "", "nodes"),
            (
                "system:controller:validatingadmissionpolicy-status-controller",
                "update",
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies/status",
            ),
            (
                "system:controller:certificate-controller",
                "update",
                "certificates.k8s.io",
                "certificatesigningrequests/approval",
            ),
        ];
        for (role, verb, group, resource) in cases {
            assert!(grants(&roles, role, verb, group, resource), "{role} cannot {verb} {group}/{resource}");
        }
        // And not more than that: the proxier and the delegator are read/review-only.
        assert!(!grants(&roles, "system:node-proxier", "create", "", "services"));
        assert!(!grants(&roles, "system:auth-delegator", "get", "", "secrets"));
        assert!(!grants(&roles, "system:controller:deployment-controller", "create", "", "pods"));
    }

    #[test]
    fn names_are_unique_and_controllers_are_bound_to_their_service_accounts() {
        let roles = cluster_roles();
        let bindings = cluster_role_bindings();
        for list in [&roles, &bindings] {
            let mut names: Vec<&str> = list.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all, "duplicate default names");
        }
        let controllers: Vec<&str> = roles
            .iter()
            .filter_map(|r| r["metadata"]["name"].as_str())
            .filter(|n| n.starts_with(CONTROLLER_PREFIX))
            .collect();
        assert!(controllers.len() >= 30, "{controllers:?}");
        for name in controllers {
            let b = bindings.iter().find(|b| b["metadata"]["name"] == name).unwrap_or_else(|| panic!("{name} unbound"));
            assert_eq!(b["roleRef"]["name"], name);
            let sa = &b["subjects"][0];
            assert_eq!((sa["kind"].as_str(), sa["namespace"].as_str()), (Some("ServiceAccount"), Some("kube-system")));
            assert_eq!(format!("{CONTROLLER_PREFIX}{}", sa["name"].as_str().unwrap()), name);
        }
        let bound = |role: &str, kind: &str, who: &str| {
            bindings.iter().any(|b| {
                b["roleRef"]["name"] == role
                    && b["subjects"].as_array().into_iter().flatten().any(|s| s["kind"] == kind && s["name"] == who)
            })
        };
        assert!(bound("system:node-proxier", "User", "system:kube-proxy"));
        assert!(bound("system:kube-dns", "ServiceAccount", "kube-dns"));
        assert!(bound("system:monitoring", "Group", "system:monitoring"));
        assert!(bound("system:volume-scheduler", "User", "system:kube-scheduler"));
        assert!(!bindings.iter().any(|b| b["roleRef"]["name"] == "system:auth-delegator"));
    }
}
