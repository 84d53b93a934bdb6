//! CustomResourceDefinitions as data: the resources a CRD serves (one [`ResourceInfo`]
//! per served version, with that version's schema) and the checks a CRD must pass to
//! be accepted, structural schemas included.

use serde_json::Value;

use crate::field_error::FieldError;
use crate::fields::validate_structural_schema_at;
use crate::registry::ResourceInfo;

#[cfg(test)]
mod tests;

/// Why a CRD's resources could not be read (a CRD that failed [`validate_crd`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdError {
    /// A field the resources need is missing or has the wrong type.
    #[error("customresourcedefinition field {0} is missing or invalid")]
    Missing(&'static str),
}

/// One version of a custom resource.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdVersion<'a> {
    /// The resource as the API server serves it (empty `definition`).
    pub resource: ResourceInfo,
    /// The version's `openAPIV3Schema`, if it has one.
    pub schema: Option<&'a Value>,
    /// `served: true`.
    pub served: bool,
    /// `storage: true`: the version objects are stored in.
    pub storage: bool,
}

/// The verbs every custom resource supports.
const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Every version of the CRD, served or not, with its resource and schema.
pub fn versions(crd: &Value) -> Result<Vec<CrdVersion<'_>>, CrdError> {
    let group = text(crd, "/spec/group").ok_or(CrdError::Missing("spec.group"))?;
    let plural = text(crd, "/spec/names/plural").ok_or(CrdError::Missing("spec.names.plural"))?;
    let kind = text(crd, "/spec/names/kind").ok_or(CrdError::Missing("spec.names.kind"))?;
    let singular = text(crd, "/spec/names/singular").map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let list_kind = text(crd, "/spec/names/listKind").map(str::to_string).unwrap_or_else(|| format!("{kind}List"));
    let namespaced = match text(crd, "/spec/scope") {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err(CrdError::Missing("spec.scope")),
    };
    let list = crd.pointer("/spec/versions").and_then(Value::as_array).ok_or(CrdError::Missing("spec.versions"))?;
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let name = text(v, "/name").ok_or(CrdError::Missing("spec.versions[].name"))?;
        let mut subresources = Vec::new();
        for sub in ["status", "scale"] {
            if v.pointer(&format!("/subresources/{sub}")).is_some() {
                subresources.push(sub.to_string());
            }
        }
        out.push(CrdVersion {
            resource: ResourceInfo {
                group: group.to_string(),
                version: name.to_string(),
                kind: kind.to_string(),
                list_kind: list_kind.clone(),
                plural: plural.to_string(),
                singular: singular.clone(),
                short_names: strings(crd, "/spec/names/shortNames"),
                categories: strings(crd, "/spec/names/categories"),
                namespaced,
                subresources,
                verbs: VERBS.iter().map(|s| s.to_string()).collect(),
                definition: String::new(),
            },
            schema: v.pointer("/schema/openAPIV3Schema"),
            served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// The problems that keep a CRD (`apiextensions.k8s.io/v1`) from being accepted:
/// names, scope, versions (exactly one storage version, names unique) and each
/// version's schema (required, structural).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    match group {
        None => out.push(FieldError::required("spec.group", "")),
        Some(g) if !g.contains('.') => {
            out.push(FieldError::invalid("spec.group", format!("\"{g}\""), "should be a domain with at least one dot"))
        }
        Some(_) => {}
    }
    if plural.is_none() {
        out.push(FieldError::required("spec.names.plural", ""));
    }
    if text(crd, "/spec/names/kind").is_none() {
        out.push(FieldError::required("spec.names.kind", ""));
    }
    if let (Some(g), Some(p)) = (group, plural) {
        let name = text(crd, "/metadata/name").unwrap_or_default();
        if name != format!("{p}.{g}") {
            out.push(FieldError::invalid(
                "metadata.name",
                format!("\"{name}\""),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
    }
    match text(crd, "/spec/scope") {
        Some("Namespaced" | "Cluster") => {}
        None => out.push(FieldError::required("spec.scope", "")),
        Some(s) => out.push(FieldError::not_supported("spec.scope", format!("\"{s}\""), &["Cluster", "Namespaced"])),
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    let Some(versions) = versions.filter(|v| !v.is_empty()) else {
        out.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
        return out;
    };
    let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
    if storage != 1 {
        out.push(FieldError::invalid(
            "spec.versions",
            format!("[]v1.CustomResourceDefinitionVersion{{...{} versions}}", versions.len()),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        match text(v, "/name") {
            None => out.push(FieldError::required(format!("{base}.name"), "")),
            Some(name) if seen.contains(&name) => out.push(FieldError {
                value: Some(format!("\"{name}\"")),
                ..FieldError::new(crate::FieldErrorKind::Duplicate, format!("{base}.name"), "")
            }),
            Some(name) => seen.push(name),
        }
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            out.push(FieldError::required(format!("{base}.schema.openAPIV3Schema"), "schemas are required"));
        }
    }
    out.extend(validate_schemas(crd));
    out
}

/// The structural-schema checks of every version's `openAPIV3Schema` (the part of
/// [`validate_crd`] that the per-kind validation of CRD objects does not do).
pub fn validate_schemas(crd: &Value) -> Vec<FieldError> {
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut out = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            out.extend(validate_structural_schema_at(schema, &format!("spec.versions[{i}].schema.openAPIV3Schema")));
        }
    }
    out
}
