//! Pod priority admission (Kubernetes' `Priority` admission plugin): at pod creation,
//! `spec.priorityClassName` is resolved to `spec.priority` and `spec.preemptionPolicy`
//! from the PriorityClass (the globalDefault class when no name is given; the built-in
//! `system-cluster-critical` and `system-node-critical` always exist); a second
//! globalDefault class is refused.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

/// Where PriorityClasses are stored.
const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";

/// The built-in classes: name, value.
const BUILT_IN: &[(&str, i64)] = &[("system-cluster-critical", 2_000_000_000), ("system-node-critical", 2_000_001_000)];

/// A resolved class: name, value, preemption policy.
type Class = (String, i64, String);

fn class_of(obj: &Value) -> Class {
    (
        obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string(),
        obj.get("value").and_then(Value::as_i64).unwrap_or(0),
        obj.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority").to_string(),
    )
}

fn lookup(ctx: &Ctx, name: &str) -> Option<Class> {
    if let Some(o) = ctx.app.cache.get(&format!("{PREFIX}{name}")) {
        return Some(class_of(&o.value));
    }
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(n, v)| (n.to_string(), *v, "PreemptLowerPriority".to_string()))
}

fn is_global_default(obj: &Value) -> bool {
    obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
}

/// The globalDefault class; should several exist (writes racing past
/// [`admit_class`]), the one with the lowest value, as Kubernetes picks.
fn global_default(ctx: &Ctx) -> Option<Class> {
    let (all, _) = ctx.app.cache.list(PREFIX);
    all.iter().filter(|o| is_global_default(&o.value)).map(|o| class_of(&o.value)).min_by_key(|c| c.1)
}

/// A PriorityClass created or updated as globalDefault while another class is the
/// default is refused, as Kubernetes' Priority admission plugin refuses it.
pub fn admit_class(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let info = &ctx.served.info;
    if !(info.group == "scheduling.k8s.io" && info.plural == "priorityclasses" && is_global_default(obj)) {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let (all, _) = ctx.app.cache.list(PREFIX);
    let other = all
        .iter()
        .filter(|o| is_global_default(&o.value))
        .map(|o| class_of(&o.value))
        .filter(|c| c.0 != name)
        .min_by_key(|c| c.1);
    match other {
        Some((existing, _, _)) => Err(ApiError::forbidden(
            info,
            name,
            format!("PriorityClass {existing} is marked as default. Only one default can exist"),
        )),
        None => Ok(()),
    }
}

/// Resolves the priority of a pod being created; other kinds are left alone.
pub fn admit_pod(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let info = &ctx.served.info;
    if !(info.group.is_empty() && info.plural == "pods") {
        return Ok(());
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let requested = spec.get("priorityClassName").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    let class = match &requested {
        Some(n) => Some(
            lookup(ctx, n)
                .ok_or_else(|| ApiError::forbidden(info, &name, format!("no PriorityClass with name {n} was found")))?,
        ),
        None => global_default(ctx),
    };
    let (class_name, value, policy) = class.unwrap_or_else(|| (String::new(), 0, "PreemptLowerPriority".to_string()));
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(ApiError::forbidden(
            info,
            &name,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(ApiError::forbidden(
            info,
            &name,
            format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ),
        ));
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(value));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}
