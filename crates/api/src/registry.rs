//! The resources the API server serves: group, version, kind, plural and singular
//! names, short names, categories, scope, subresources and verbs of every built-in
//! kind (Kubernetes 1.33), plus the schema definition that describes each.
//!
//! Custom resources get a [`ResourceInfo`] too (built by the API server from their CRD).

use std::sync::LazyLock;

/// Everything the API server needs to know to serve one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core ("legacy") group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Kind of the list, e.g. `DeploymentList`.
    pub list_kind: String,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Singular name, e.g. `deployment`.
    pub singular: String,
    /// Short names, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// True for namespaced resources, false for cluster-scoped ones.
    pub namespaced: bool,
    /// Subresources served, e.g. `status`, `scale`, `binding`, `eviction`, `finalize`,
    /// `log`, `exec`, `attach`, `portforward`, `proxy`, `token`, `ephemeralcontainers`, `resize`.
    pub subresources: Vec<String>,
    /// Verbs the resource supports (discovery).
    pub verbs: Vec<String>,
    /// The schema definition of the kind, e.g. `io.k8s.api.apps.v1.Deployment`
    /// (see [`crate::schema`]); empty for custom resources.
    pub definition: String,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps`, or `pods` for the core group: how Kubernetes names the resource in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// True when the resource has the named subresource.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s == name)
    }
}

/// The verbs of an ordinary resource, as discovery lists them.
const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces cannot be deleted as a collection.
const NO_COLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// Review-style and binding resources only accept `create`.
const CREATE_ONLY: &[&str] = &["create"];

/// One row of the table below: group, version, kind, plural, singular, short names,
/// categories, namespaced, subresources, verbs and the schema definition.
struct Row {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [&'static str],
    verbs: &'static [&'static str],
    definition: &'static str,
}

#[allow(clippy::too_many_arguments, reason = "a table row; named positions read better than a builder here")]
const fn row(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    namespaced: bool,
    subresources: &'static [&'static str],
    verbs: &'static [&'static str],
    definition: &'static str,
) -> Row {
    Row { group, version, kind, plural, short, categories, namespaced, subresources, verbs, definition }
}

const ALL: &[&str] = &["all"];
const EXT: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["scale", "status"];
const POD_SUBRESOURCES: &[&str] = &[
    "attach",
    "binding",
    "ephemeralcontainers",
    "eviction",
    "exec",
    "log",
    "portforward",
    "proxy",
    "resize",
    "status",
];

/// The built-in resources in discovery order: groups by Kubernetes' group priority
/// (core, apps, events, authentication, authorization, autoscaling, batch, certificates,
/// networking, policy, rbac, storage, admissionregistration, apiextensions, scheduling,
/// coordination, node, discovery), resources alphabetically within a group version.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // core/v1
    row("", "v1", "Binding", "bindings", NONE, NONE, true, NONE, CREATE_ONLY, "io.k8s.api.core.v1.Binding"),
    row("", "v1", "ConfigMap", "configmaps", &["cm"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.ConfigMap"),
    row("", "v1", "Endpoints", "endpoints", &["ep"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.Endpoints"),
    row("", "v1", "Event", "events", &["ev"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.Event"),
    row("", "v1", "LimitRange", "limitranges", &["limits"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.LimitRange"),
    row("", "v1", "Namespace", "namespaces", &["ns"], NONE, false, &["finalize", "status"], NO_COLLECTION, "io.k8s.api.core.v1.Namespace"),
    row("", "v1", "Node", "nodes", &["no"], NONE, false, &["proxy", "status"], ALL_VERBS, "io.k8s.api.core.v1.Node"),
    row("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"], NONE, true, STATUS, ALL_VERBS, "io.k8s.api.core.v1.PersistentVolumeClaim"),
    row("", "v1", "PersistentVolume", "persistentvolumes", &["pv"], NONE, false, STATUS, ALL_VERBS, "io.k8s.api.core.v1.PersistentVolume"),
    row("", "v1", "Pod", "pods", &["po"], ALL, true, POD_SUBRESOURCES, ALL_VERBS, "io.k8s.api.core.v1.Pod"),
    row("", "v1", "PodTemplate", "podtemplates", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.PodTemplate"),
    row("", "v1", "ReplicationController", "replicationcontrollers", &["rc"], ALL, true, STATUS_SCALE, ALL_VERBS, "io.k8s.api.core.v1.ReplicationController"),
    row("", "v1", "ResourceQuota", "resourcequotas", &["quota"], NONE, true, STATUS, ALL_VERBS, "io.k8s.api.core.v1.ResourceQuota"),
    row("", "v1", "Secret", "secrets", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.core.v1.Secret"),
    row("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], NONE, true, &["token"], ALL_VERBS, "io.k8s.api.core.v1.ServiceAccount"),
    row("", "v1", "Service", "services", &["svc"], ALL, true, &["proxy", "status"], ALL_VERBS, "io.k8s.api.core.v1.Service"),
    // apps/v1
    row("apps", "v1", "ControllerRevision", "controllerrevisions", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.apps.v1.ControllerRevision"),
    row("apps", "v1", "DaemonSet", "daemonsets", &["ds"], ALL, true, STATUS, ALL_VERBS, "io.k8s.api.apps.v1.DaemonSet"),
    row("apps", "v1", "Deployment", "deployments", &["deploy"], ALL, true, STATUS_SCALE, ALL_VERBS, "io.k8s.api.apps.v1.Deployment"),
    row("apps", "v1", "ReplicaSet", "replicasets", &["rs"], ALL, true, STATUS_SCALE, ALL_VERBS, "io.k8s.api.apps.v1.ReplicaSet"),
    row("apps", "v1", "StatefulSet", "statefulsets", &["sts"], ALL, true, STATUS_SCALE, ALL_VERBS, "io.k8s.api.apps.v1.StatefulSet"),
    // events.k8s.io/v1
    row("events.k8s.io", "v1", "Event", "events", &["ev"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.events.v1.Event"),
    // authentication.k8s.io/v1
    row("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", NONE, NONE, false, NONE, CREATE_ONLY, "io.k8s.api.authentication.v1.SelfSubjectReview"),
    row("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", NONE, NONE, false, NONE, CREATE_ONLY, "io.k8s.api.authentication.v1.TokenReview"),
    // authorization.k8s.io/v1
    row("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", NONE, NONE, true, NONE, CREATE_ONLY, "io.k8s.api.authorization.v1.LocalSubjectAccessReview"),
    row("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", NONE, NONE, false, NONE, CREATE_ONLY, "io.k8s.api.authorization.v1.SelfSubjectAccessReview"),
    row("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", NONE, NONE, false, NONE, CREATE_ONLY, "io.k8s.api.authorization.v1.SelfSubjectRulesReview"),
    row("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", NONE, NONE, false, NONE, CREATE_ONLY, "io.k8s.api.authorization.v1.SubjectAccessReview"),
    // autoscaling/v2 (preferred) then v1
    row("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"], ALL, true, STATUS, ALL_VERBS, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"),
    row("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"], ALL, true, STATUS, ALL_VERBS, "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler"),
    // batch/v1
    row("batch", "v1", "CronJob", "cronjobs", &["cj"], ALL, true, STATUS, ALL_VERBS, "io.k8s.api.batch.v1.CronJob"),
    row("batch", "v1", "Job", "jobs", NONE, ALL, true, STATUS, ALL_VERBS, "io.k8s.api.batch.v1.Job"),
    // certificates.k8s.io/v1
    row("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", &["csr"], NONE, false, &["approval", "status"], ALL_VERBS, "io.k8s.api.certificates.v1.CertificateSigningRequest"),
    // networking.k8s.io/v1
    row("networking.k8s.io", "v1", "IngressClass", "ingressclasses", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.networking.v1.IngressClass"),
    row("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"], NONE, true, STATUS, ALL_VERBS, "io.k8s.api.networking.v1.Ingress"),
    row("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"], NONE, true, NONE, ALL_VERBS, "io.k8s.api.networking.v1.NetworkPolicy"),
    // policy/v1
    row("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", &["pdb"], NONE, true, STATUS, ALL_VERBS, "io.k8s.api.policy.v1.PodDisruptionBudget"),
    // rbac.authorization.k8s.io/v1
    row("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.rbac.v1.ClusterRoleBinding"),
    row("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.rbac.v1.ClusterRole"),
    row("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.rbac.v1.RoleBinding"),
    row("rbac.authorization.k8s.io", "v1", "Role", "roles", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.rbac.v1.Role"),
    // storage.k8s.io/v1
    row("storage.k8s.io", "v1", "CSIDriver", "csidrivers", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.storage.v1.CSIDriver"),
    row("storage.k8s.io", "v1", "CSINode", "csinodes", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.storage.v1.CSINode"),
    row("storage.k8s.io", "v1", "StorageClass", "storageclasses", &["sc"], NONE, false, NONE, ALL_VERBS, "io.k8s.api.storage.v1.StorageClass"),
    row("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", NONE, NONE, false, STATUS, ALL_VERBS, "io.k8s.api.storage.v1.VolumeAttachment"),
    // admissionregistration.k8s.io/v1
    row("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", NONE, EXT, false, NONE, ALL_VERBS, "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration"),
    row("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", NONE, EXT, false, NONE, ALL_VERBS, "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration"),
    row("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", NONE, EXT, false, STATUS, ALL_VERBS, "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy"),
    row("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", NONE, EXT, false, NONE, ALL_VERBS, "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding"),
    // apiextensions.k8s.io/v1
    row("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", &["crd", "crds"], EXT, false, STATUS, ALL_VERBS, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
    // scheduling.k8s.io/v1
    row("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", &["pc"], NONE, false, NONE, ALL_VERBS, "io.k8s.api.scheduling.v1.PriorityClass"),
    // coordination.k8s.io/v1
    row("coordination.k8s.io", "v1", "Lease", "leases", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.coordination.v1.Lease"),
    // node.k8s.io/v1
    row("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", NONE, NONE, false, NONE, ALL_VERBS, "io.k8s.api.node.v1.RuntimeClass"),
    // discovery.k8s.io/v1
    row("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", NONE, NONE, true, NONE, ALL_VERBS, "io.k8s.api.discovery.v1.EndpointSlice"),
];

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

static BUILTIN: LazyLock<Vec<ResourceInfo>> = LazyLock::new(|| {
    TABLE
        .iter()
        .map(|r| ResourceInfo {
            group: r.group.to_string(),
            version: r.version.to_string(),
            kind: r.kind.to_string(),
            list_kind: format!("{}List", r.kind),
            plural: r.plural.to_string(),
            singular: r.kind.to_ascii_lowercase(),
            short_names: owned(r.short),
            categories: owned(r.categories),
            namespaced: r.namespaced,
            subresources: owned(r.subresources),
            verbs: owned(r.verbs),
            definition: r.definition.to_string(),
        })
        .collect()
});

/// Every built-in resource of Kubernetes 1.33 that berth serves, in discovery order
/// (by group priority, the preferred version of a group first, resources alphabetical).
pub fn builtin() -> &'static [ResourceInfo] {
    &BUILTIN
}

/// The built-in resource served at `group`/`version`/`plural`.
pub fn find_builtin(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    builtin().iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The built-in resource of `kind` in `group`/`version`.
pub fn find_by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    builtin().iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_definition_exists_in_the_schema() {
        for r in builtin() {
            assert!(crate::schema::definition(&r.definition).is_some(), "{} has no schema {}", r.plural, r.definition);
        }
    }

    #[test]
    fn no_duplicates() {
        let all = builtin();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!(a.group == b.group && a.version == b.version && a.plural == b.plural), "{} twice", a.plural);
            }
        }
    }

    /// `group/version/plural` → `kind singular list-kind namespaced short-names categories subresources verbs`
    fn check(gvr: &str, expected: &str) {
        let parts: Vec<&str> = gvr.split('/').collect();
        let r = find_builtin(parts[0], parts[1], parts[2]).unwrap_or_else(|| panic!("{gvr} not found"));
        let actual = format!(
            "{} {} {} {} [{}] [{}] [{}] [{}]",
            r.kind,
            r.singular,
            r.list_kind,
            r.namespaced,
            r.short_names.join(","),
            r.categories.join(","),
            r.subresources.join(","),
            r.verbs.join(",")
        );
        assert_eq!(actual, expected, "{gvr}");
    }

    #[test]
    fn resources() {
        let all = "create,delete,deletecollection,get,list,patch,update,watch";
        check(
            "/v1/pods",
            &format!(
                "Pod pod PodList true [po] [all] [attach,binding,ephemeralcontainers,eviction,exec,log,portforward,proxy,resize,status] [{all}]"
            ),
        );
        check(
            "/v1/namespaces",
            "Namespace namespace NamespaceList false [ns] [] [finalize,status] [create,delete,get,list,patch,update,watch]",
        );
        check("/v1/bindings", "Binding binding BindingList true [] [] [] [create]");
        check("/v1/services", &format!("Service service ServiceList true [svc] [all] [proxy,status] [{all}]"));
        check("/v1/secrets", &format!("Secret secret SecretList true [] [] [] [{all}]"));
        check(
            "apps/v1/deployments",
            &format!("Deployment deployment DeploymentList true [deploy] [all] [scale,status] [{all}]"),
        );
        check("apps/v1/daemonsets", &format!("DaemonSet daemonset DaemonSetList true [ds] [all] [status] [{all}]"));
        check("batch/v1/jobs", &format!("Job job JobList true [] [all] [status] [{all}]"));
        check(
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            &format!(
                "CustomResourceDefinition customresourcedefinition CustomResourceDefinitionList false [crd,crds] [api-extensions] [status] [{all}]"
            ),
        );
        check(
            "autoscaling/v1/horizontalpodautoscalers",
            &format!(
                "HorizontalPodAutoscaler horizontalpodautoscaler HorizontalPodAutoscalerList true [hpa] [all] [status] [{all}]"
            ),
        );
        check(
            "scheduling.k8s.io/v1/priorityclasses",
            &format!("PriorityClass priorityclass PriorityClassList false [pc] [] [] [{all}]"),
        );
        check(
            "authorization.k8s.io/v1/selfsubjectaccessreviews",
            "SelfSubjectAccessReview selfsubjectaccessreview SelfSubjectAccessReviewList false [] [] [] [create]",
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(find_by_kind("apps", "v1", "StatefulSet").map(|r| r.plural.as_str()), Some("statefulsets"));
        assert_eq!(find_by_kind("events.k8s.io", "v1", "Event").map(|r| r.group.as_str()), Some("events.k8s.io"));
        assert!(find_builtin("apps", "v1", "pods").is_none());
        assert!(find_builtin("", "v2", "pods").is_none());
        assert!(find_by_kind("", "v1", "Deployment").is_none());
    }

    #[test]
    fn group_order_follows_kubernetes_priority() {
        let mut groups: Vec<&str> = Vec::new();
        for r in builtin() {
            if groups.last() != Some(&r.group.as_str()) {
                groups.push(&r.group);
            }
        }
        assert_eq!(
            groups,
            [
                "",
                "apps",
                "events.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "autoscaling",
                "batch",
                "certificates.k8s.io",
                "networking.k8s.io",
                "policy",
                "rbac.authorization.k8s.io",
                "storage.k8s.io",
                "admissionregistration.k8s.io",
                "apiextensions.k8s.io",
                "scheduling.k8s.io",
                "coordination.k8s.io",
                "node.k8s.io",
                "discovery.k8s.io"
            ]
        );
    }
}
