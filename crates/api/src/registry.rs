//! The resources the API server serves: group, version, kind, plural and singular
//! names, short names, categories, scope, subresources and verbs of every built-in
//! kind (Kubernetes 1.33), plus the schema definition that describes each.
//!
//! Custom resources get a [`ResourceInfo`] too (built by the API server from their CRD).

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

/// Every built-in resource of Kubernetes 1.33 that berth serves.
pub fn builtin() -> &'static [ResourceInfo] {
    todo!("filled in by the registry work")
}
