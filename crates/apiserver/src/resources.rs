//! The catalog of served resources: the built-in ones plus those defined by
//! CustomResourceDefinitions, and how request paths map onto them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_api::ResourceInfo;
use serde_json::Value;

/// A custom resource's extra facts, taken from its CRD.
#[derive(Debug, Clone)]
pub struct CustomInfo {
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    /// `additionalPrinterColumns` of the version.
    pub printer_columns: Vec<Value>,
    /// `subresources.scale` of the version, when served.
    pub scale: Option<Value>,
    /// True when this version is the storage version.
    pub storage: bool,
}

/// One served resource.
#[derive(Debug, Clone)]
pub struct Served {
    /// Names, scope, verbs.
    pub info: ResourceInfo,
    /// Facts from the CRD, for custom resources.
    pub custom: Option<CustomInfo>,
}

impl Served {
    /// The store key prefix of all objects of this resource: `/registry/<group>/<plural>/`.
    pub fn prefix(&self) -> String {
        let group = if self.info.group.is_empty() { "core" } else { &self.info.group };
        format!("/registry/{group}/{}/", self.info.plural)
    }

    /// Store key prefix of the objects in one namespace (or all when `namespace` is None).
    pub fn prefix_in(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.info.namespaced => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }
}

/// An immutable snapshot of everything served; replaced whole when CRDs change.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Served resources in discovery order.
    pub list: Vec<Arc<Served>>,
    by_path: HashMap<(String, String, String), Arc<Served>>,
}

impl Catalog {
    /// A catalog of the given resources.
    pub fn new(list: Vec<Served>) -> Catalog {
        let list: Vec<Arc<Served>> = list.into_iter().map(Arc::new).collect();
        let by_path = list
            .iter()
            .map(|s| ((s.info.group.clone(), s.info.version.clone(), s.info.plural.clone()), s.clone()))
            .collect();
        Catalog { list, by_path }
    }

    /// The resource served at `/api(s)/<group>/<version>/<plural>`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Served>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    /// True when the group/version is served at all.
    pub fn serves_version(&self, group: &str, version: &str) -> bool {
        self.list.iter().any(|s| s.info.group == group && s.info.version == version)
    }

    /// Groups in discovery order, each with its versions in order (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for s in &self.list {
            match out.iter_mut().find(|(g, _)| *g == s.info.group) {
                Some((_, versions)) => {
                    if !versions.contains(&s.info.version) {
                        versions.push(s.info.version.clone());
                    }
                }
                None => out.push((s.info.group.clone(), vec![s.info.version.clone()])),
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }
}

/// Kubernetes' version ordering: GA > beta > alpha, then by number (`v2` > `v1`, `v1beta2` > `v1beta1`).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, minor)
}

/// The live catalog, shared by all requests.
#[derive(Debug, Default)]
pub struct Resources {
    current: RwLock<Arc<Catalog>>,
}

impl Resources {
    /// The built-in resources only.
    pub fn builtin() -> Resources {
        let list =
            berth_api::registry::builtin().iter().map(|info| Served { info: info.clone(), custom: None }).collect();
        Resources { current: RwLock::new(Arc::new(Catalog::new(list))) }
    }

    /// The current snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the custom resources (keeps the built-ins).
    pub fn set_custom(&self, custom: Vec<Served>) {
        let mut list: Vec<Served> =
            berth_api::registry::builtin().iter().map(|info| Served { info: info.clone(), custom: None }).collect();
        list.extend(custom);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Catalog::new(list));
    }
}

/// What a request path under `/api` or `/apis` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `/api` or `/apis`.
    Root,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion(String, String),
    /// A collection or an object of a resource.
    Resource(ResourcePath),
}

/// A path inside a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name, None for the collection.
    pub name: Option<String>,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
}

/// Parses a path under `/api` or `/apis`; `catalog` decides whether `namespaces/<x>/<y>`
/// is a namespaced collection or a namespace's subresource. None when malformed.
pub fn parse_path(path: &str, catalog: &Catalog) -> Option<Path> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] | ["apis"] => return Some(Path::Root),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g] => return Some(Path::Group(g.to_string())),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return None,
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let rp = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Path::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        }))
    };
    let namespaced = |plural: &str| catalog.find(group, version, plural).is_some_and(|s| s.info.namespaced);
    match rest {
        [] => Some(Path::GroupVersion(group.to_string(), version.to_string())),
        ["namespaces", ns, plural, tail @ ..] if namespaced(plural) => match tail {
            [] => rp(plural, Some(ns), None, None),
            [name] => rp(plural, Some(ns), Some(name), None),
            [name, sub] => rp(plural, Some(ns), Some(name), Some(sub)),
            _ => None,
        },
        [plural] => rp(plural, None, None, None),
        [plural, name] => rp(plural, None, Some(name), None),
        [plural, name, sub] => rp(plural, None, Some(name), Some(sub)),
        _ => None,
    }
}
