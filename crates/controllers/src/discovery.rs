//! The API's resources as controllers that work on every kind need them (the garbage
//! collector, the namespace controller): legacy discovery through kube's [`Discovery`].

use kube::Discovery;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};

/// One served resource (the group's preferred version) and what it supports.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    /// Group, version, kind and plural.
    pub(crate) api: ApiResource,
    /// True for namespaced resources.
    pub(crate) namespaced: bool,
    /// Verbs, as discovery lists them.
    pub(crate) verbs: Vec<String>,
}

impl Resource {
    /// True when the resource supports every one of `verbs`.
    pub(crate) fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.verbs.iter().any(|have| have == v))
    }

    /// `group/version/plural`, unique per resource.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}/{}", self.api.group, self.api.version, self.api.plural)
    }
}

/// Every resource of the API's preferred versions, plus a resolver of any served
/// group/version/kind (owner references may name a version other than the preferred one).
pub(crate) struct Resources {
    discovery: Discovery,
}

impl Resources {
    /// Runs discovery against the API server.
    pub(crate) async fn discover(client: kube::Client) -> Result<Resources, kube::Error> {
        Ok(Resources { discovery: Discovery::new(client).run().await? })
    }

    /// The preferred version of every resource.
    pub(crate) fn all(&self) -> Vec<Resource> {
        self.discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .map(|(api, caps)| to_resource(api, caps))
            .collect()
    }

    /// The resource serving `apiVersion`/`kind`, in that version.
    pub(crate) fn resolve(&self, api_version: &str, kind: &str) -> Option<Resource> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.discovery.resolve_gvk(&gvk).map(|(api, caps)| to_resource(api, caps))
    }
}

fn to_resource(api: ApiResource, caps: ApiCapabilities) -> Resource {
    Resource { api, namespaced: matches!(caps.scope, Scope::Namespaced), verbs: caps.operations }
}
