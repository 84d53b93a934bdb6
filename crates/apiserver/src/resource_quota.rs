//! ResourceQuota admission (Kubernetes' `ResourceQuota` plugin): an object created in a
//! namespace with ResourceQuotas must fit under each quota's `spec.hard` given its
//! `status.used`; when it fits, the quotas' `status.used` is raised in the same request
//! (compare-and-swap, so concurrent creates cannot both take the last unit). A pod in a
//! namespace whose quota limits compute resources must state them. Refusals are 403
//! with Kubernetes' messages (`exceeded quota: ...`, `failed quota: ...`). The resource
//! quota controller recomputes `status.used` from what exists (deletions free usage).
//!
//! Quotas with `scopes` or a `scopeSelector` are not applied yet.

use berth_api::quota;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

/// Compute resources a pod must state when a quota limits them.
const COMPUTE: &[(&str, &str, &str)] = &[
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
];

const RETRIES: usize = 5;

/// `k=v,k=v` in key order.
fn pretty(items: &[(String, String)]) -> String {
    items.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Checks `obj`, about to be created, against the namespace's quotas and charges them.
pub async fn admit(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else { return Ok(()) };
    let prefix = format!("/registry/core/resourcequotas/{ns}/");
    let info = &ctx.served.info;
    let name = object::name(obj).to_string();
    let delta = quota::usage(&info.group, &info.plural, obj);
    let is_pod = info.group.is_empty() && info.plural == "pods";
    // Most namespaces have no quota: no consistent read for them.
    if ctx.app.cache.list(&prefix).0.is_empty() {
        return Ok(());
    }
    for _ in 0..RETRIES {
        ctx.app.catch_up().await?;
        let (quotas, _) = ctx.app.cache.list(&prefix);
        let applicable: Vec<_> = quotas
            .iter()
            .filter(|q| q.value.pointer("/spec/scopes").is_none() && q.value.pointer("/spec/scopeSelector").is_none())
            .collect();
        if applicable.is_empty() {
            return Ok(());
        }
        let mut charges = Vec::new();
        for q in &applicable {
            let qname = object::name(&q.value).to_string();
            let hard = q.value.pointer("/spec/hard").and_then(Value::as_object).cloned().unwrap_or_default();
            // Until the controller has computed the quota's usage, nothing it limits is admitted.
            if q.value.pointer("/status/hard").is_none() && hard.keys().any(|r| delta.contains_key(r)) {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                let keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
                return Err(ApiError::forbidden(
                    info,
                    &name,
                    format!("status unknown for quota: {qname}, resources: {}", keys.join(",")),
                ));
            }
            if is_pod {
                let missing: Vec<String> = COMPUTE
                    .iter()
                    .filter(|(key, _, _)| hard.contains_key(*key))
                    .filter_map(|(key, field, res)| {
                        let names = quota::containers_missing(obj, field, res);
                        (!names.is_empty()).then(|| format!("{key} for: {}", names.join(",")))
                    })
                    .collect();
                if !missing.is_empty() {
                    return Err(ApiError::forbidden(
                        info,
                        &name,
                        format!("failed quota: {qname}: must specify {}", missing.join("; ")),
                    ));
                }
            }
            let used = q.value.pointer("/status/used").and_then(Value::as_object).cloned().unwrap_or_default();
            let (mut requested, mut used_now, mut limited) = (Vec::new(), Vec::new(), Vec::new());
            let mut new_used = used.clone();
            for (res, limit) in &hard {
                let Some(d) = delta.get(res).copied().filter(|d| *d > 0.0) else { continue };
                let current = used.get(res).and_then(quota::amount).unwrap_or(0.0);
                let limit_q = quota::amount(limit).unwrap_or(0.0);
                if current + d > limit_q + 1e-9 {
                    requested.push((res.clone(), quota::format(res, d)));
                    used_now.push((res.clone(), quota::format(res, current)));
                    limited.push((res.clone(), quota::format(res, limit_q)));
                }
                new_used.insert(res.clone(), json!(quota::format(res, current + d)));
            }
            if !requested.is_empty() {
                for list in [&mut requested, &mut used_now, &mut limited] {
                    list.sort();
                }
                return Err(ApiError::forbidden(
                    info,
                    &name,
                    format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        pretty(&requested),
                        pretty(&used_now),
                        pretty(&limited)
                    ),
                ));
            }
            if new_used != used {
                charges.push((*q, new_used));
            }
        }
        if ctx.params.dry_run || charges.is_empty() {
            return Ok(());
        }
        if charge(ctx, &charges).await? {
            return Ok(());
        }
    }
    Err(ApiError::new(429, "TooManyRequests", "the resource quota is being updated concurrently; try again"))
}

/// Writes the quotas' new `status.used`; false when one of them changed meanwhile (the
/// caller checks again). Quotas charged before a conflict keep the charge until the
/// controller recomputes them, as in Kubernetes.
async fn charge(
    ctx: &Ctx,
    charges: &[(&std::sync::Arc<crate::cache::CachedObject>, Map<String, Value>)],
) -> ApiResult<bool> {
    for (q, used) in charges {
        let mut updated = q.value.clone();
        updated["status"]["used"] = Value::Object(used.clone());
        if updated["status"].get("hard").is_none() {
            updated["status"]["hard"] = q.value.pointer("/spec/hard").cloned().unwrap_or(json!({}));
        }
        if let Some(m) = object::meta_mut(&mut updated) {
            m.remove("resourceVersion");
        }
        match ctx.app.store.update(&q.key, Bytes::from(object::encode_for_store(&updated)), q.revision).await {
            Ok(_) => {}
            Err(berth_store::Error::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
