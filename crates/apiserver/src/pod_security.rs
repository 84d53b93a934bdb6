//! Pod Security admission (Kubernetes' `PodSecurity` plugin): a namespace's labels
//! `pod-security.kubernetes.io/enforce` and `.../warn` (with `-version`) choose a Pod
//! Security Standard (`privileged`, `baseline`, `restricted`); pods that break the
//! enforced level are refused with 403 and Kubernetes' wording, and pods (or the pod
//! templates of workloads) that break the warned level get a `Warning` header.
//!
//! The checks are the standard's, with Kubernetes' reasons and details, evaluated in
//! the order of their IDs: baseline (AppArmor profiles other than RuntimeDefault or
//! Localhost, host namespaces, privileged, capabilities beyond the default set, hostPath
//! volumes, host ports, procMount, SELinux type/user/role, seccomp Unconfined, unsafe
//! sysctls) and restricted (those, plus volume types, privilege escalation,
//! capabilities drop ALL, runAsNonRoot, runAsUser=0, seccomp RuntimeDefault/Localhost).
//! Not checked: Windows host process (berth runs Linux nodes only).
//!
//! Pods are checked at creation and on significant updates (Kubernetes'
//! `isSignificantPodUpdate`: containers added or removed, an image changed, ephemeral
//! containers added through their subresource); other subresources (status, binding,
//! ...) and metadata-only changes are not. Workload templates are checked for warnings
//! when created or when their template changes. The `audit` level records its
//! violations on the request's audit event (`pod-security.kubernetes.io/audit-violations`),
//! beside `pod-security.kubernetes.io/enforce-policy`.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A Pod Security Standard level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// The level and version a namespace sets for one mode (`enforce`, `warn`).
fn policy(labels: &Value, mode: &str) -> (Level, String) {
    let level = match labels.get(format!("{LABEL_PREFIX}{mode}")).and_then(Value::as_str) {
        None => Level::Privileged,
        // An unknown level fails closed, as Kubernetes does.
        Some(s) => Level::parse(s).unwrap_or(Level::Restricted),
    };
    let version = labels
        .get(format!("{LABEL_PREFIX}{mode}-version"))
        .and_then(Value::as_str)
        .filter(|v| *v == "latest" || v.starts_with("v1."))
        .unwrap_or("latest")
        .to_string();
    (level, version)
}

/// The labels of namespace `ns`, from the watch cache.
fn namespace_labels(ctx: &Ctx, ns: &str) -> Value {
    ctx.app
        .cache
        .get(&format!("/registry/core/namespaces/{ns}"))
        .and_then(|o| o.value.pointer("/metadata/labels").cloned())
        .unwrap_or(Value::Null)
}

/// The pod spec and metadata `obj` carries: a Pod's own, or a workload's template.
fn pod_parts<'a>(ctx: &Ctx, obj: &'a Value) -> Option<(&'a Value, &'a Value, bool)> {
    let info = &ctx.served.info;
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => Some((obj.get("metadata")?, obj.get("spec")?, true)),
        ("", "replicationcontrollers" | "podtemplates")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => {
            let template =
                if info.plural == "podtemplates" { obj.get("template")? } else { obj.pointer("/spec/template")? };
            Some((template.get("metadata").unwrap_or(&Value::Null), template.get("spec")?, false))
        }
        ("batch", "cronjobs") => {
            let template = obj.pointer("/spec/jobTemplate/spec/template")?;
            Some((template.get("metadata").unwrap_or(&Value::Null), template.get("spec")?, false))
        }
        _ => None,
    }
}

/// Refuses a pod being created that breaks its namespace's enforced level.
pub fn enforce(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else { return Ok(()) };
    let Some((meta, spec, true)) = pod_parts(ctx, obj) else { return Ok(()) };
    let (level, version) = policy(&namespace_labels(ctx, ns), "enforce");
    let violations = evaluate(level, meta, spec);
    if violations.is_empty() {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::forbidden(
        &ctx.served.info,
        name,
        format!("violates PodSecurity \"{}:{version}\": {}", level.name(), render(&violations)),
    ))
}

/// The warning for a pod or workload being created that breaks its namespace's warned
/// level; violations of the audited level go to the request's audit event.
pub fn warning(ctx: &Ctx, obj: &Value) -> Option<String> {
    let ns = ctx.namespace()?;
    let (meta, spec, _) = pod_parts(ctx, obj)?;
    let labels = namespace_labels(ctx, ns);
    audit(&labels, meta, spec);
    let (level, version) = policy(&labels, "warn");
    let violations = evaluate(level, meta, spec);
    (!violations.is_empty())
        .then(|| format!("would violate PodSecurity \"{}:{version}\": {}", level.name(), render(&violations)))
}

/// Records the namespace's enforced policy and the violations of its audited level on
/// the request's audit event, with Kubernetes' annotation keys.
fn audit(labels: &Value, meta: &Value, spec: &Value) {
    let (enforced, enforced_version) = policy(labels, "enforce");
    crate::audit::annotate(
        &format!("{LABEL_PREFIX}enforce-policy"),
        &format!("{}:{enforced_version}", enforced.name()),
    );
    let (level, version) = policy(labels, "audit");
    let violations = evaluate(level, meta, spec);
    if !violations.is_empty() {
        crate::audit::annotate(
            &format!("{LABEL_PREFIX}audit-violations"),
            &format!("would violate PodSecurity \"{}:{version}\": {}", level.name(), render(&violations)),
        );
    }
}

/// Pod Security on an update of `old` to `new` (PUT or PATCH; `subresource` as on the
/// URL): a significant Pod update is enforced as a creation is; a workload whose pod
/// template changed gets the warning and the audit. The warning, if any, is returned.
pub fn admit_update(ctx: &Ctx, new: &Value, old: &Value, subresource: Option<&str>) -> ApiResult<Option<String>> {
    if !matches!(subresource, None | Some("ephemeralcontainers")) {
        return Ok(None);
    }
    let Some((new_meta, new_spec, is_pod)) = pod_parts(ctx, new) else { return Ok(None) };
    let Some((old_meta, old_spec, _)) = pod_parts(ctx, old) else { return Ok(None) };
    let significant = if is_pod {
        significant_pod_update(new_meta, new_spec, old_meta, old_spec)
    } else {
        new_meta != old_meta || new_spec != old_spec
    };
    if !significant {
        return Ok(None);
    }
    enforce(ctx, new)?;
    Ok(warning(ctx, new))
}

/// Kubernetes' `isSignificantPodUpdate`: an update that may change what the pod runs or
/// how (containers added or removed, an image or a seccomp annotation changed).
fn significant_pod_update(new_meta: &Value, new_spec: &Value, old_meta: &Value, old_spec: &Value) -> bool {
    const SECCOMP_POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const SECCOMP_CONTAINER: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let annotation = |meta: &Value, key: &str| meta.pointer("/annotations").and_then(|a| a.get(key)).cloned();
    if annotation(new_meta, SECCOMP_POD) != annotation(old_meta, SECCOMP_POD) {
        return true;
    }
    ["initContainers", "containers", "ephemeralContainers"].into_iter().any(|kind| {
        let list = |spec: &Value| spec.get(kind).and_then(Value::as_array).cloned().unwrap_or_default();
        let (new_list, old_list) = (list(new_spec), list(old_spec));
        new_list.len() != old_list.len()
            || new_list.iter().zip(&old_list).any(|(n, o)| {
                let key = format!("{SECCOMP_CONTAINER}{}", n.get("name").and_then(Value::as_str).unwrap_or(""));
                n.get("image") != o.get("image") || annotation(new_meta, &key) != annotation(old_meta, &key)
            })
    })
}

/// `reason (detail), reason (detail)`.
fn render(violations: &[(&'static str, String)]) -> String {
    violations.iter().map(|(reason, detail)| format!("{reason} ({detail})")).collect::<Vec<_>>().join(", ")
}

/// A check: its ID (checks run in ID order), the lowest level it applies to, and the
/// check itself.
type Check = (&'static str, Level, fn(&Value, &Value) -> Option<(&'static str, String)>);

/// Every check, in ID order. A restricted check that replaces a baseline one
/// ("overlap" in Kubernetes) makes the baseline one apply to baseline only.
const CHECKS: &[Check] = &[
    ("allowPrivilegeEscalation", Level::Restricted, allow_privilege_escalation),
    ("appArmorProfile", Level::Baseline, app_armor_profile),
    ("capabilities_baseline", Level::Baseline, capabilities_baseline),
    ("capabilities_restricted", Level::Restricted, capabilities_restricted),
    ("hostNamespaces", Level::Baseline, host_namespaces),
    ("hostPathVolumes", Level::Baseline, host_path_volumes),
    ("hostPorts", Level::Baseline, host_ports),
    ("privileged", Level::Baseline, privileged),
    ("procMount", Level::Baseline, proc_mount),
    ("restrictedVolumes", Level::Restricted, restricted_volumes),
    ("runAsNonRoot", Level::Restricted, run_as_non_root),
    ("runAsUser", Level::Restricted, run_as_user),
    ("seLinuxOptions", Level::Baseline, selinux_options),
    ("seccompProfile_baseline", Level::Baseline, seccomp_baseline),
    ("seccompProfile_restricted", Level::Restricted, seccomp_restricted),
    ("sysctls", Level::Baseline, sysctls),
];

/// Baseline checks that a restricted check replaces at the restricted level.
const OVERLAPPED: &[&str] = &["capabilities_baseline", "seccompProfile_baseline"];

/// The violations of `level` by a pod, in check order.
fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<(&'static str, String)> {
    CHECKS
        .iter()
        .filter(|(id, min, _)| level >= *min && !(level == Level::Restricted && OVERLAPPED.contains(id)))
        .filter_map(|(_, _, check)| check(meta, spec))
        .collect()
}

/// Every container, init containers first, with its name.
fn containers(spec: &Value) -> impl Iterator<Item = (&str, &Value)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec.get(k).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default())
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or(""), c))
}

fn context<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext").and_then(|s| s.get(field)).filter(|v| !v.is_null())
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("\"{}\"", s.as_ref())).collect::<Vec<_>>().join(", ")
}

fn pluralize(singular: &'static str, plural: &'static str, n: usize) -> &'static str {
    if n == 1 { singular } else { plural }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_named(names: &[&str]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let set: Vec<&str> = ["hostIPC", "hostNetwork", "hostPID"]
        .into_iter()
        .filter(|k| spec.get(*k).and_then(Value::as_bool) == Some(true))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces", set.join(", ")))
}

fn privileged(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let bad: Vec<&str> = containers(spec)
        .filter(|(_, c)| context(c, "privileged") == Some(&Value::Bool(true)))
        .map(|(n, _)| n)
        .collect();
    (!bad.is_empty())
        .then(|| ("privileged", format!("{} must not set securityContext.privileged=true", containers_named(&bad))))
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let mut bad = Vec::new();
    let mut caps = Vec::new();
    for (name, c) in containers(spec) {
        let added: Vec<&str> = strings(context(c, "capabilities").and_then(|k| k.get("add")))
            .into_iter()
            .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
            .collect();
        if !added.is_empty() {
            bad.push(name);
            caps.extend(added.into_iter().map(str::to_string));
        }
    }
    (!bad.is_empty()).then(|| {
        let detail = format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&bad),
            join_quote(&sorted_unique(caps))
        );
        ("non-default capabilities", detail)
    })
}

fn capabilities_restricted(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let (mut missing_drop, mut adding, mut caps) = (Vec::new(), Vec::new(), Vec::new());
    for (name, c) in containers(spec) {
        let Some(k) = context(c, "capabilities") else {
            missing_drop.push(name);
            continue;
        };
        if !strings(k.get("drop")).contains(&"ALL") {
            missing_drop.push(name);
        }
        let forbidden: Vec<&str> = strings(k.get("add")).into_iter().filter(|c| *c != "NET_BIND_SERVICE").collect();
        if !forbidden.is_empty() {
            adding.push(name);
            caps.extend(forbidden.into_iter().map(str::to_string));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details
            .push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", containers_named(&missing_drop)));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_named(&adding),
            join_quote(&sorted_unique(caps))
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities", details.join("; ")))
}

fn volumes(spec: &Value) -> &[Value] {
    spec.get("volumes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let names: Vec<&str> = volumes(spec)
        .iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    (!names.is_empty()).then(|| {
        ("hostPath volumes", format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)))
    })
}

fn host_ports(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let (mut bad, mut ports) = (Vec::new(), Vec::new());
    for (name, c) in containers(spec) {
        let used: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !used.is_empty() {
            bad.push(name);
            ports.extend(used);
        }
    }
    // Sorted as strings, as Kubernetes' string set sorts them.
    let ports = sorted_unique(ports);
    (!bad.is_empty()).then(|| {
        let detail = format!(
            "{} {} {} {}",
            containers_named(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        );
        ("hostPort", detail)
    })
}

fn proc_mount(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let (mut bad, mut types) = (Vec::new(), Vec::new());
    for (name, c) in containers(spec) {
        if let Some(t) = context(c, "procMount").and_then(Value::as_str)
            && t != "Default"
        {
            bad.push(name);
            types.push(t.to_string());
        }
    }
    (!bad.is_empty()).then(|| {
        let detail = format!(
            "{} must not set securityContext.procMount to {}",
            containers_named(&bad),
            join_quote(&sorted_unique(types))
        );
        ("procMount", detail)
    })
}

/// Volume sources the restricted level allows.
const RESTRICTED_ALLOWED_VOLUMES: &[&str] =
    &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

fn restricted_volumes(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let names = sorted_unique(
        volumes(spec)
            .iter()
            .filter(|v| !RESTRICTED_ALLOWED_VOLUMES.iter().any(|k| v.get(*k).is_some_and(|s| !s.is_null())))
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
            .collect(),
    );
    // Go's %q of a string slice: ["a" "b"].
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    (!names.is_empty())
        .then(|| ("restricted volume types", format!("volumes [{}] have restricted types", quoted.join(" "))))
}

fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let bad: Vec<&str> = containers(spec)
        .filter(|(_, c)| context(c, "allowPrivilegeEscalation") != Some(&Value::Bool(false)))
        .map(|(n, _)| n)
        .collect();
    (!bad.is_empty()).then(|| {
        let detail = format!("{} must set securityContext.allowPrivilegeEscalation=false", containers_named(&bad));
        ("allowPrivilegeEscalation != false", detail)
    })
}

/// The annotation prefix of the (deprecated) per-container AppArmor profiles.
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// AppArmor: `securityContext.appArmorProfile.type` (pod or container) must be
/// RuntimeDefault or Localhost, and the deprecated annotations `runtime/default`,
/// `localhost/NAME` or empty.
fn app_armor_profile(meta: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let allowed_type =
        |v: &Value| matches!(v.get("type").and_then(Value::as_str), Some("RuntimeDefault") | Some("Localhost"));
    let bad_type =
        |v: Option<&Value>| v.filter(|v| !allowed_type(v)).map(|v| v["type"].as_str().unwrap_or("").to_string());
    let mut bad_values = Vec::new();
    let pod_type = bad_type(pod_context(spec, "appArmorProfile"));
    let pod_bad = pod_type.is_some();
    bad_values.extend(pod_type);
    let mut bad_containers = Vec::new();
    for (name, c) in containers(spec) {
        if let Some(t) = bad_type(context(c, "appArmorProfile")) {
            bad_containers.push(name);
            bad_values.push(t);
        }
    }
    let mut bad_values = sorted_unique(bad_values);
    let mut annotations: Vec<String> = meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION_PREFIX))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let allowed = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!allowed).then(|| format!("{k}={v:?}"))
        })
        .collect();
    annotations.sort();
    let mut who: Vec<String> = Some(setters(pod_bad, &bad_containers)).filter(|w| !w.is_empty()).into_iter().collect();
    if !annotations.is_empty() {
        who.push(pluralize("annotation", "annotations", annotations.len()).to_string());
    }
    bad_values.extend(annotations);
    (!who.is_empty()).then(|| {
        let reason = pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad_values.len());
        (reason, format!("{} must not set AppArmor profile type to {}", who.join(" and "), join_quote(&bad_values)))
    })
}

/// SELinux types the baseline level allows (besides none).
const SELINUX_ALLOWED_TYPES: &[&str] = &["container_t", "container_init_t", "container_kvm_t"];

/// SELinux: `seLinuxOptions.type` (pod or container) only one of the container types,
/// `user` and `role` unset.
fn selinux_options(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let (mut bad_types, mut set_user, mut set_role) = (Vec::new(), false, false);
    let mut valid = |opts: &Value| {
        let field = |f: &str| opts.get(f).and_then(Value::as_str).unwrap_or("");
        let mut ok = true;
        if !field("type").is_empty() && !SELINUX_ALLOWED_TYPES.contains(&field("type")) {
            bad_types.push(field("type").to_string());
            ok = false;
        }
        if !field("user").is_empty() {
            set_user = true;
            ok = false;
        }
        if !field("role").is_empty() {
            set_role = true;
            ok = false;
        }
        ok
    };
    let pod_bad = pod_context(spec, "seLinuxOptions").is_some_and(|o| !valid(o));
    let bad_containers: Vec<&str> = containers(spec)
        .filter(|(_, c)| context(c, "seLinuxOptions").is_some_and(|o| !valid(o)))
        .map(|(n, _)| n)
        .collect();
    if !pod_bad && bad_containers.is_empty() {
        return None;
    }
    let bad_types = sorted_unique(bad_types);
    let mut data = Vec::new();
    // As Kubernetes words it: the user and role notes follow the types, and only with them.
    if !bad_types.is_empty() {
        data.push(format!("{} {}", pluralize("type", "types", bad_types.len()), join_quote(&bad_types)));
        if set_user {
            data.push("user may not be set".to_string());
        }
        if set_role {
            data.push("role may not be set".to_string());
        }
    }
    let detail = format!(
        "{} set forbidden securityContext.seLinuxOptions: {}",
        setters(pod_bad, &bad_containers),
        data.join("; ")
    );
    Some(("seLinuxOptions", detail))
}

fn pod_context<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    spec.get("securityContext").and_then(|s| s.get(field)).filter(|v| !v.is_null())
}

/// Who sets a field badly: "pod", containers, joined with " and ".
fn setters(pod: bool, containers_bad: &[&str]) -> String {
    let mut who = Vec::new();
    if pod {
        who.push("pod".to_string());
    }
    if !containers_bad.is_empty() {
        who.push(containers_named(containers_bad));
    }
    who.join(" and ")
}

fn run_as_non_root(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let pod = pod_context(spec, "runAsNonRoot");
    let pod_bad = pod == Some(&Value::Bool(false));
    let pod_ok = pod == Some(&Value::Bool(true));
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for (name, c) in containers(spec) {
        match context(c, "runAsNonRoot") {
            Some(Value::Bool(false)) => explicit.push(name),
            Some(_) => {}
            None if !pod_ok => implicit.push(name),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let detail = format!("{} must not set securityContext.runAsNonRoot=false", setters(pod_bad, &explicit));
        return Some(("runAsNonRoot != true", detail));
    }
    (!implicit.is_empty()).then(|| {
        let detail = format!("pod or {} must set securityContext.runAsNonRoot=true", containers_named(&implicit));
        ("runAsNonRoot != true", detail)
    })
}

fn run_as_user(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let pod_bad = pod_context(spec, "runAsUser").and_then(Value::as_i64) == Some(0);
    let bad: Vec<&str> = containers(spec)
        .filter(|(_, c)| context(c, "runAsUser").and_then(Value::as_i64) == Some(0))
        .map(|(n, _)| n)
        .collect();
    (pod_bad || !bad.is_empty())
        .then(|| ("runAsUser=0", format!("{} must not set runAsUser=0", setters(pod_bad, &bad))))
}

fn seccomp_type(v: Option<&Value>) -> Option<&str> {
    v.map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// The seccomp checks: explicit bad types always; with `required`, containers that set
/// nothing where the pod sets nothing valid either.
fn seccomp(spec: &Value, required: bool) -> Option<(&'static str, String)> {
    let pod = seccomp_type(pod_context(spec, "seccompProfile"));
    let pod_bad = pod.is_some_and(|t| !valid_seccomp(t));
    let pod_ok = pod.is_some_and(valid_seccomp);
    let (mut explicit, mut implicit, mut values) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(t) = pod.filter(|_| pod_bad) {
        values.push(t.to_string());
    }
    for (name, c) in containers(spec) {
        match seccomp_type(context(c, "seccompProfile")) {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(name);
                values.push(t.to_string());
            }
            Some(_) => {}
            None if !pod_ok => implicit.push(name),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let detail = format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters(pod_bad, &explicit),
            join_quote(&sorted_unique(values))
        );
        return Some(("seccompProfile", detail));
    }
    (required && !implicit.is_empty()).then(|| {
        let detail = format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_named(&implicit)
        );
        ("seccompProfile", detail)
    })
}

fn seccomp_baseline(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    seccomp(spec, false)
}

fn seccomp_restricted(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    seccomp(spec, true)
}

/// Sysctls the baseline level allows (namespaced and isolated from the host).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
];

fn sysctls(_: &Value, spec: &Value) -> Option<(&'static str, String)> {
    let bad: Vec<&str> = pod_context(spec, "sysctls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls", bad.join(", ")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn violations(level: Level, spec: Value) -> String {
        render(&evaluate(level, &json!({}), &spec))
    }

    #[test]
    fn a_plain_pod_passes_baseline_and_fails_restricted_on_every_control() {
        let spec = json!({"containers": [{"name": "app", "image": "x"}]});
        assert_eq!(violations(Level::Baseline, spec.clone()), "");
        assert_eq!(violations(Level::Privileged, spec.clone()), "");
        assert_eq!(
            violations(Level::Restricted, spec),
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let spec = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "c"}}],
            "containers": [{"name": "app", "image": "x", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
        assert_eq!(violations(Level::Restricted, spec), "");
    }

    #[test]
    fn baseline_violations_are_named_as_kubernetes_names_them() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "initContainers": [{"name": "init", "image": "x", "securityContext": {"privileged": true}}],
            "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9, "hostPort": 10000}],
                 "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN", "CHOWN", "NET_RAW"]},
                    "seccompProfile": {"type": "Unconfined"}, "procMount": "Unmasked"}}]});
        assert_eq!(
            violations(Level::Baseline, spec),
            "non-default capabilities (container \"a\" must not include \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add), \
             host namespaces (hostNetwork, hostPID), \
             hostPath volumes (volume \"root\"), \
             hostPort (container \"a\" uses hostPorts 10000, 8080), \
             privileged (containers \"init\", \"a\" must not set securityContext.privileged=true), \
             procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\"), \
             seccompProfile (container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\"), \
             forbidden sysctls (kernel.msgmax)"
        );
    }

    #[test]
    fn restricted_explicit_bad_values() {
        let spec = json!({"securityContext": {"runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
            "volumes": [{"name": "nfs", "nfs": {"server": "s", "path": "/"}}, {"name": "git", "gitRepo": {"repository": "r"}}],
            "containers": [{"name": "app", "image": "x", "securityContext": {"allowPrivilegeEscalation": false, "runAsUser": 0,
                "capabilities": {"drop": ["ALL"], "add": ["SYS_TIME"]}}}]});
        assert_eq!(
            violations(Level::Restricted, spec),
            "unrestricted capabilities (container \"app\" must not include \"SYS_TIME\" in securityContext.capabilities.add), \
             restricted volume types (volumes [\"git\" \"nfs\"] have restricted types), \
             runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), \
             runAsUser=0 (pod and container \"app\" must not set runAsUser=0), \
             seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
    }

    /// One case: pod metadata and spec, and the violations Kubernetes reports at baseline.
    fn check_baseline(meta: Value, spec: Value, expect: &str) {
        assert_eq!(render(&evaluate(Level::Baseline, &meta, &spec)), expect, "{meta} {spec}");
    }

    #[test]
    fn apparmor_profiles_other_than_runtime_default_or_localhost_break_baseline() {
        let c = |name: &str, profile: Value| json!({"name": name, "image": "x", "securityContext": {"appArmorProfile": profile}});
        let allowed = [json!({"type": "RuntimeDefault"}), json!({"type": "Localhost", "localhostProfile": "p"})];
        for profile in allowed {
            let spec =
                json!({"securityContext": {"appArmorProfile": profile.clone()}, "containers": [c("a", profile)]});
            check_baseline(json!({}), spec, "");
        }
        let ok_annotations = json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/a": "runtime/default",
            "container.apparmor.security.beta.kubernetes.io/b": "localhost/custom",
            "container.apparmor.security.beta.kubernetes.io/c": "",
            "other.example/x": "unconfined"}});
        check_baseline(ok_annotations, json!({"containers": [{"name": "a", "image": "x"}]}), "");
        check_baseline(
            json!({}),
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [{"name": "a", "image": "x"}]}),
            "forbidden AppArmor profile (pod must not set AppArmor profile type to \"Unconfined\")",
        );
        check_baseline(
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/b": "unconfined"}}),
            json!({"initContainers": [c("i", json!({"type": "Unconfined"}))],
                   "containers": [c("a", json!({"type": "Unconfined"})), c("b", json!({"type": "RuntimeDefault"}))]}),
            "forbidden AppArmor profiles (containers \"i\", \"a\" and annotation must not set AppArmor profile type to \
             \"Unconfined\", \"container.apparmor.security.beta.kubernetes.io/b=\"unconfined\"\")",
        );
        check_baseline(
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/b": "unconfined",
                                   "container.apparmor.security.beta.kubernetes.io/a": "docker-default"}}),
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}),
            "forbidden AppArmor profiles (annotations must not set AppArmor profile type to \
             \"container.apparmor.security.beta.kubernetes.io/a=\"docker-default\"\", \
             \"container.apparmor.security.beta.kubernetes.io/b=\"unconfined\"\")",
        );
    }

    #[test]
    fn selinux_types_users_and_roles_break_baseline() {
        let c =
            |name: &str, opts: Value| json!({"name": name, "image": "x", "securityContext": {"seLinuxOptions": opts}});
        for t in ["", "container_t", "container_init_t", "container_kvm_t"] {
            let spec = json!({"securityContext": {"seLinuxOptions": {"type": t, "level": "s0:c1,c2"}}, "containers": [c("a", json!({"type": t}))]});
            check_baseline(json!({}), spec, "");
        }
        check_baseline(
            json!({}),
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}, "containers": [c("a", json!({"type": "unconfined_t", "user": "u"})), c("b", json!({"role": "r"}))]}),
            "seLinuxOptions (pod and containers \"a\", \"b\" set forbidden securityContext.seLinuxOptions: \
             types \"spc_t\", \"unconfined_t\"; user may not be set; role may not be set)",
        );
        // Kubernetes names the user and the role only beside a bad type.
        check_baseline(
            json!({}),
            json!({"containers": [c("a", json!({"user": "system_u", "role": "system_r"}))]}),
            "seLinuxOptions (container \"a\" set forbidden securityContext.seLinuxOptions: )",
        );
        check_baseline(
            json!({}),
            json!({"ephemeralContainers": [c("debug", json!({"type": "spc_t"}))], "containers": [{"name": "a", "image": "x"}]}),
            "seLinuxOptions (container \"debug\" set forbidden securityContext.seLinuxOptions: type \"spc_t\")",
        );
    }

    #[test]
    fn namespace_labels_choose_level_and_version() {
        let labels = json!({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "v1.33",
            "pod-security.kubernetes.io/warn": "nonsense"});
        assert_eq!(policy(&labels, "enforce"), (Level::Baseline, "v1.33".to_string()));
        assert_eq!(policy(&labels, "warn"), (Level::Restricted, "latest".to_string()), "unknown levels fail closed");
        assert_eq!(policy(&labels, "audit"), (Level::Privileged, "latest".to_string()));
        assert_eq!(policy(&Value::Null, "enforce").0, Level::Privileged);
    }
}
