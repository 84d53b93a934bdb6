//! Workload validation: Deployments, ReplicaSets, StatefulSets, DaemonSets,
//! ReplicationControllers, Jobs and CronJobs (selectors, templates, strategies, updates).

use serde_json::{Map, Value};

use super::pod::validate_template;
use super::{Ctx, quote, show, show_string_map};
use crate::field_error::FieldError;
use crate::selectors::LabelSelector;

/// Validates the workload `kind` (`obj` on create, with `old` on update).
pub(super) fn validate(ctx: &mut Ctx<'_>, kind: &str, obj: &Value, old: Option<&Value>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.map(|o| o.get("spec").unwrap_or(&Value::Null));
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if kind != "DaemonSet" {
                ctx.non_negative(spec, "replicas", "spec.replicas");
            }
            ctx.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
            ctx.non_negative(spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
            let template_labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object);
            label_selector(ctx, spec.get("selector"), template_labels, &kind.to_ascii_lowercase(), true);
            validate_template(ctx, spec.get("template"), "spec.template", &["Always"]);
            match kind {
                "Deployment" => deployment_strategy(ctx, spec),
                "StatefulSet" => {
                    ctx.one_of(
                        "spec.podManagementPolicy",
                        spec.get("podManagementPolicy"),
                        &["OrderedReady", "Parallel"],
                    );
                    ctx.one_of(
                        "spec.updateStrategy.type",
                        spec.pointer("/updateStrategy/type"),
                        &["RollingUpdate", "OnDelete"],
                    );
                    if let Some(p) = spec.pointer("/updateStrategy/rollingUpdate/partition").and_then(Value::as_i64)
                        && p < 0
                    {
                        ctx.push(FieldError::invalid(
                            "spec.updateStrategy.rollingUpdate.partition",
                            p,
                            "must be greater than or equal to 0",
                        ));
                    }
                }
                "DaemonSet" => {
                    ctx.one_of(
                        "spec.updateStrategy.type",
                        spec.pointer("/updateStrategy/type"),
                        &["RollingUpdate", "OnDelete"],
                    );
                    if let Some(ru) = spec.pointer("/updateStrategy/rollingUpdate") {
                        surge_unavailable(ctx, ru, "spec.updateStrategy.rollingUpdate");
                    }
                }
                _ => {}
            }
            if let Some(old_spec) = old_spec {
                ctx.immutable_selector(spec.get("selector"), old_spec.get("selector"));
                if kind == "StatefulSet" {
                    statefulset_update(ctx, spec, old_spec);
                }
            }
        }
        "ReplicationController" => {
            ctx.non_negative(spec, "replicas", "spec.replicas");
            ctx.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
            let selector = spec.get("selector").and_then(Value::as_object).filter(|m| !m.is_empty());
            match selector {
                None => ctx.push(FieldError::required("spec.selector", "")),
                Some(sel) => {
                    ctx.labels(spec.get("selector"), "spec.selector");
                    let labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object);
                    let matches = sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                    if !matches {
                        ctx.push(mismatch(labels));
                    }
                }
            }
            validate_template(ctx, spec.get("template"), "spec.template", &["Always"]);
        }
        "Job" => {
            validate_job_spec(ctx, spec, "spec");
            if let Some(old_spec) = old_spec {
                ctx.immutable_selector(spec.get("selector"), old_spec.get("selector"));
                if spec.get("template") != old_spec.get("template") {
                    ctx.push(FieldError::invalid("spec.template", "core.PodTemplateSpec{...}", "field is immutable"));
                }
                if spec.get("completionMode") != old_spec.get("completionMode") {
                    ctx.immutable(spec.get("completionMode"), old_spec.get("completionMode"), "spec.completionMode");
                }
            }
        }
        "CronJob" => {
            match spec.get("schedule").and_then(Value::as_str) {
                None | Some("") => ctx.push(FieldError::required("spec.schedule", "")),
                Some(s) => {
                    if let Err(msg) = check_cron(s) {
                        ctx.push(FieldError::invalid("spec.schedule", quote(s), msg));
                    }
                }
            }
            ctx.one_of("spec.concurrencyPolicy", spec.get("concurrencyPolicy"), &["Allow", "Forbid", "Replace"]);
            for key in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
                ctx.non_negative(spec, key, &format!("spec.{key}"));
            }
            let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
            validate_job_spec(ctx, job_spec, "spec.jobTemplate.spec");
        }
        _ => {}
    }
}

impl Ctx<'_> {
    fn immutable_selector(&mut self, new: Option<&Value>, old: Option<&Value>) {
        if new != old {
            self.push(FieldError::invalid(
                "spec.selector",
                format!("v1.LabelSelector{}", show(new.unwrap_or(&Value::Null))),
                "field is immutable",
            ));
        }
    }
}

fn mismatch(labels: Option<&Map<String, Value>>) -> FieldError {
    FieldError::invalid(
        "spec.template.metadata.labels",
        show_string_map(labels),
        "`selector` does not match template `labels`",
    )
}

/// A `metav1.LabelSelector` at `spec.selector` that must exist (when `required`), be
/// non-empty and select the template's labels.
fn label_selector(
    ctx: &mut Ctx<'_>,
    sel: Option<&Value>,
    labels: Option<&Map<String, Value>>,
    what: &str,
    required: bool,
) {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        if required {
            ctx.push(FieldError::required("spec.selector", ""));
        }
        return;
    };
    match LabelSelector::from_label_selector(sel) {
        Err(e) => ctx.push(FieldError::invalid("spec.selector", show(sel), e.to_string())),
        Ok(parsed) if parsed.is_empty() => {
            ctx.push(FieldError::invalid("spec.selector", "\"null\"", format!("empty selector is invalid for {what}")));
        }
        Ok(parsed) => {
            if !parsed.matches(labels.unwrap_or(&Map::new())) {
                ctx.push(mismatch(labels));
            }
        }
    }
}

fn deployment_strategy(ctx: &mut Ctx<'_>, spec: &Value) {
    let Some(strategy) = spec.get("strategy") else {
        return;
    };
    let kind = strategy.get("type").and_then(Value::as_str);
    ctx.one_of("spec.strategy.type", strategy.get("type"), &["Recreate", "RollingUpdate"]);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    if kind == Some("Recreate") && rolling.is_some() {
        ctx.push(FieldError::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ));
    } else if let Some(ru) = rolling {
        surge_unavailable(ctx, ru, "spec.strategy.rollingUpdate");
    }
    ctx.non_negative(spec, "progressDeadlineSeconds", "spec.progressDeadlineSeconds");
    if let (Some(p), Some(m)) = (
        spec.get("progressDeadlineSeconds").and_then(Value::as_i64),
        spec.get("minReadySeconds").and_then(Value::as_i64),
    ) && p <= m
    {
        ctx.push(FieldError::invalid("spec.progressDeadlineSeconds", p, "must be greater than minReadySeconds"));
    }
}

/// Checks one int-or-percent value; returns whether it is zero.
fn int_or_percent(ctx: &mut Ctx<'_>, v: &Value, field: &str) -> bool {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                ctx.push(FieldError::invalid(field, n, "must be greater than or equal to 0"));
            }
            n == 0
        }
        Value::String(s) => {
            match s.strip_suffix('%').filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())) {
                None => {
                    ctx.push(FieldError::invalid(
                    field,
                    quote(s),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                    false
                }
                Some(d) => {
                    let n: u64 = d.parse().unwrap_or(u64::MAX);
                    if n > 100 {
                        ctx.push(FieldError::invalid(field, quote(s), "must not be greater than 100%"));
                    }
                    n == 0
                }
            }
        }
        _ => false,
    }
}

fn surge_unavailable(ctx: &mut Ctx<'_>, ru: &Value, path: &str) {
    let unavailable_zero = ru.get("maxUnavailable").map(|v| int_or_percent(ctx, v, &format!("{path}.maxUnavailable")));
    let surge_zero = ru.get("maxSurge").map(|v| int_or_percent(ctx, v, &format!("{path}.maxSurge")));
    if unavailable_zero == Some(true) && surge_zero.unwrap_or(true) {
        let shown = ru.get("maxUnavailable").map(show).unwrap_or_default();
        ctx.push(FieldError::invalid(format!("{path}.maxUnavailable"), shown, "may not be 0 when `maxSurge` is 0"));
    }
}

fn statefulset_update(ctx: &mut Ctx<'_>, spec: &Value, old_spec: &Value) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for key in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(key);
            }
        }
        v
    };
    if strip(spec) != strip(old_spec) {
        ctx.push(FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

fn validate_job_spec(ctx: &mut Ctx<'_>, spec: &Value, path: &str) {
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        ctx.non_negative(spec, key, &format!("{path}.{key}"));
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && n <= 0
    {
        ctx.push(FieldError::invalid(format!("{path}.activeDeadlineSeconds"), n, "must be greater than or equal to 0"));
    }
    ctx.one_of(&format!("{path}.completionMode"), spec.get("completionMode"), &["NonIndexed", "Indexed"]);
    ctx.one_of(
        &format!("{path}.podReplacementPolicy"),
        spec.get("podReplacementPolicy"),
        &["TerminatingOrFailed", "Failed"],
    );
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && spec.get("completions").is_none_or(Value::is_null)
    {
        ctx.push(FieldError::required(format!("{path}.completions"), "when completion mode is Indexed"));
    }
    let labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    label_selector(ctx, spec.get("selector"), labels, "job", manual);
    let template_path = format!("{path}.template");
    let template = spec.get("template").filter(|t| !t.is_null());
    validate_template(ctx, template, &template_path, &[]);
    if let Some(r) = template.and_then(|t| t.pointer("/spec/restartPolicy")).and_then(Value::as_str)
        && r == "Always"
    {
        ctx.push(FieldError::not_supported(
            format!("{template_path}.spec.restartPolicy"),
            quote(r),
            &["OnFailure", "Never"],
        ));
    } else if template.is_some() && template.and_then(|t| t.pointer("/spec/restartPolicy")).is_none() {
        ctx.push(FieldError::required(
            format!("{template_path}.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
}

/// Checks a cron schedule: a descriptor (`@daily`, `@every 5m`) or five fields.
pub(crate) fn check_cron(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    // As Kubernetes: any "TZ" in the schedule is refused (the timeZone field replaces it).
    if s.contains("TZ") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(desc) = s.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
            d if d.starts_with("every ") => match crate::validation::go_duration(&d["every ".len()..]) {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("failed to parse duration {s}: {e}")),
            },
            _ => Err(format!("unrecognized descriptor: {s}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {}", fields.len(), s));
    }
    const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str], u32); 5] =
        [(0, 59, &[], 0), (0, 23, &[], 0), (1, 31, &[], 0), (1, 12, MONTHS, 1), (0, 6, DAYS, 0)];
    for (field, (min, max, names, name_base)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (part, None),
            };
            if let Some(st) = step {
                match st.parse::<u32>() {
                    Ok(n) if n > 0 => {}
                    _ => return Err(format!("failed to parse int from {st}: invalid syntax")),
                }
            }
            if range == "*" || range == "?" {
                continue;
            }
            let number = |t: &str| -> Result<u32, String> {
                let lower = t.to_ascii_lowercase();
                if let Some(i) = names.iter().position(|n| *n == lower) {
                    return Ok(i as u32 + name_base);
                }
                t.parse::<u32>().map_err(|_| format!("failed to parse int from {t}: invalid syntax"))
            };
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(range)?;
                    (n, n)
                }
            };
            if lo < min {
                return Err(format!("beginning of range ({lo}) below minimum ({min}): {part}"));
            }
            if hi > max {
                return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
            }
            if lo > hi {
                return Err(format!("beginning of range ({lo}) beyond end of range ({hi}): {part}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::check_cron;
    use crate::validation::tests::check;

    fn deploy(spec: Value) -> Value {
        json!({"metadata": {"name": "d", "namespace": "ns"}, "spec": spec})
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    }

    #[test]
    fn deployments() {
        let ok = deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))}));
        check("apps/v1/deployments", ok.clone(), None, &[]);
        check(
            "apps/v1/deployments",
            deploy(json!({"template": template(json!({"app": "a"}))})),
            None,
            &["spec.selector: Required value"],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "b"}}, "template": template(json!({"app": "a"}))})),
            None,
            &[
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"a"}: `selector` does not match template `labels`"#,
            ],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {}, "template": template(json!({"app": "a"}))})),
            None,
            &[r#"spec.selector: Invalid value: "null": empty selector is invalid for deployment"#],
        );
        check(
            "apps/v1/deployments",
            deploy(
                json!({"replicas": -1, "selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))}),
            ),
            None,
            &["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"})),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}})),
            None,
            &[r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when `maxSurge` is 0"#],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"})),
                "strategy": {"type": "Fast"}})),
            None,
            &[r#"spec.strategy.type: Unsupported value: "Fast": supported values: "Recreate", "RollingUpdate""#],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"})),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "150%", "maxUnavailable": "x"}}})),
            None,
            &[
                r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "x": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"#,
                r#"spec.strategy.rollingUpdate.maxSurge: Invalid value: "150%": must not be greater than 100%"#,
            ],
        );
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"})),
                "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}})),
            None,
            &["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
        );
        let mut never = template(json!({"app": "a"}));
        never["spec"]["restartPolicy"] = json!("Never");
        check(
            "apps/v1/deployments",
            deploy(json!({"selector": {"matchLabels": {"app": "a"}}, "template": never})),
            None,
            &[r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#],
        );
        let moved =
            deploy(json!({"selector": {"matchLabels": {"app": "b"}}, "template": template(json!({"app": "b"}))}));
        check(
            "apps/v1/deployments",
            moved,
            Some(ok),
            &[r#"spec.selector: Invalid value: v1.LabelSelector{"matchLabels":{"app":"b"}}: field is immutable"#],
        );
    }

    #[test]
    fn other_apps() {
        let sts = |extra: Value| {
            let mut spec =
                json!({"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            deploy(spec)
        };
        check("apps/v1/statefulsets", sts(json!({"serviceName": "s"})), None, &[]);
        check(
            "apps/v1/statefulsets",
            sts(json!({"podManagementPolicy": "Random"})),
            None,
            &[r#"spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel""#],
        );
        check("apps/v1/statefulsets", sts(json!({"replicas": 5})), Some(sts(json!({"replicas": 1}))), &[]);
        check(
            "apps/v1/statefulsets",
            sts(json!({"serviceName": "b"})),
            Some(sts(json!({"serviceName": "a"}))),
            &[
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ],
        );
        check(
            "apps/v1/daemonsets",
            sts(
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
            ),
            None,
            &["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"],
        );
        check("apps/v1/replicasets", sts(json!({})), None, &[]);
        check(
            "/v1/replicationcontrollers",
            deploy(json!({"selector": {"app": "a"}, "template": template(json!({"app": "a"}))})),
            None,
            &[],
        );
        check(
            "/v1/replicationcontrollers",
            deploy(json!({"selector": {"app": "b"}, "template": template(json!({"app": "a"}))})),
            None,
            &[
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"a"}: `selector` does not match template `labels`"#,
            ],
        );
        check(
            "/v1/replicationcontrollers",
            deploy(json!({"template": template(json!({"app": "a"}))})),
            None,
            &["spec.selector: Required value"],
        );
    }

    fn job_template(restart: Option<&str>) -> Value {
        let mut t = template(json!({"job-name": "j"}));
        if let Some(r) = restart {
            t["spec"]["restartPolicy"] = json!(r);
        }
        t
    }

    #[test]
    fn jobs() {
        let ok = deploy(json!({"template": job_template(Some("Never"))}));
        check("batch/v1/jobs", ok.clone(), None, &[]);
        check(
            "batch/v1/jobs",
            deploy(json!({"template": job_template(Some("Always"))})),
            None,
            &[
                r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
            ],
        );
        check(
            "batch/v1/jobs",
            deploy(json!({"template": job_template(None)})),
            None,
            &[r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#],
        );
        check(
            "batch/v1/jobs",
            deploy(json!({"parallelism": -1, "completions": -2, "template": job_template(Some("Never"))})),
            None,
            &[
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Invalid value: -2: must be greater than or equal to 0",
            ],
        );
        check(
            "batch/v1/jobs",
            deploy(json!({"template": job_template(Some("OnFailure"))})),
            Some(ok),
            &["spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"],
        );
        check(
            "batch/v1/cronjobs",
            deploy(
                json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template(Some("Never"))}}}),
            ),
            None,
            &[],
        );
        check(
            "batch/v1/cronjobs",
            deploy(json!({"jobTemplate": {"spec": {"template": job_template(Some("Never"))}}})),
            None,
            &["spec.schedule: Required value"],
        );
        check(
            "batch/v1/cronjobs",
            deploy(
                json!({"schedule": "often", "concurrencyPolicy": "Sometimes", "jobTemplate": {"spec": {"template": job_template(Some("Always"))}}}),
            ),
            None,
            &[
                r#"spec.schedule: Invalid value: "often": expected exactly 5 fields, found 1: often"#,
                r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
                r#"spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
            ],
        );
    }

    #[test]
    fn cron() {
        for ok in [
            "* * * * *",
            "0 0 1 1 *",
            "*/15 0-6,12 * jan-mar mon-fri",
            "@hourly",
            "@every 1h",
            "@every 1h30m",
            "@every 1.5m",
            "@every 90s",
            "59 23 31 12 6",
            "0 0 ? * SUN",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("x * * * *", "failed to parse int from x: invalid syntax"),
            ("*/0 * * * *", "failed to parse int from 0: invalid syntax"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("@sometimes", "unrecognized descriptor: @sometimes"),
            ("TZ=UTC * * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            ("CRON_TZ=Europe/Paris 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
            ("@every soon", "failed to parse duration @every soon: time: invalid duration \"soon\""),
            ("@every 3d", "failed to parse duration @every 3d: time: unknown unit \"d\" in duration \"3d\""),
        ];
        for (s, msg) in bad {
            assert_eq!(check_cron(s), Err(msg.to_string()), "{s}");
        }
    }
}
