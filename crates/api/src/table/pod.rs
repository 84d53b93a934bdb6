//! The pod row: READY, STATUS (derived from phase, reasons and container states as
//! kubectl shows it), RESTARTS with the time of the last restart, and the wide cells.

use serde_json::{Value, json};

use super::Ctx;

/// True for an init container that keeps running beside the app containers (a sidecar).
fn is_sidecar(spec_init: &[Value], name: &str) -> bool {
    spec_init.iter().any(|c| {
        c.get("name").and_then(Value::as_str) == Some(name)
            && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

fn condition_true(ctx: &Ctx<'_>, type_: &str) -> bool {
    ctx.list("/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(type_) && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// The latest `lastState.terminated.finishedAt` seen, as a parsed timestamp.
fn later(current: Option<jiff::Timestamp>, status: &Value) -> Option<jiff::Timestamp> {
    let finished = status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok());
    match (current, finished) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = t.get("reason").and_then(Value::as_str).unwrap_or_default();
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = t.get("signal").and_then(Value::as_i64).unwrap_or_default();
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", t.get("exitCode").and_then(Value::as_i64).unwrap_or_default())
    }
}

/// Cells: Name, Ready, Status, Restarts, Age, IP, Node, Nominated Node, Readiness Gates.
pub(super) fn cells(ctx: &Ctx<'_>) -> Vec<Value> {
    let spec_init = ctx.list("/spec/initContainers");
    let mut total = ctx.list("/spec/containers").len();
    total += spec_init.iter().filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always")).count();
    let mut ready = 0;
    let phase = ctx.str("/status/phase");
    let mut reason = match ctx.str("/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = ctx.list("/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    });
    if gated {
        reason = "SchedulingGated".to_string();
    }

    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    let init_statuses = ctx.list("/status/initContainerStatuses");
    for (i, status) in init_statuses.iter().enumerate() {
        let count = status.get("restartCount").and_then(Value::as_i64).unwrap_or_default();
        restarts += count;
        last_restart = later(last_restart, status);
        let name = status.get("name").and_then(Value::as_str).unwrap_or_default();
        let sidecar = is_sidecar(spec_init, name);
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, status);
        }
        let terminated = status.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = status.pointer("/state/waiting/reason").and_then(Value::as_str).unwrap_or_default();
        let exit_code = terminated.and_then(|t| t.get("exitCode")).and_then(Value::as_i64).unwrap_or_default();
        if terminated.is_some() && exit_code == 0 {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            terminated_reason(t, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", spec_init.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(ctx, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in ctx.list("/status/containerStatuses").iter().rev() {
            restarts += status.get("restartCount").and_then(Value::as_i64).unwrap_or_default();
            last_restart = later(last_restart, status);
            let waiting = status.pointer("/state/waiting/reason").and_then(Value::as_str).unwrap_or_default();
            let terminated = status.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(ctx, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    if !ctx.get("/metadata/deletionTimestamp").is_null() {
        if ctx.str("/status/reason") == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", super::human_duration(ctx.now.duration_since(t).as_secs()))
        }
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| {
        if s.is_empty() { "<none>".to_string() } else { s.to_string() }
    };
    let ip = ctx.list("/status/podIPs").first().and_then(|p| p.get("ip")).and_then(Value::as_str).unwrap_or_default();
    let ip = if ip.is_empty() { ctx.str("/status/podIP") } else { ip };
    let gates = ctx.list("/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition_true(ctx, g.get("conditionType").and_then(Value::as_str).unwrap_or_default()))
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        ctx.name(),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        ctx.age(),
        json!(or_none(ip)),
        json!(or_none(ctx.str("/spec/nodeName"))),
        json!(or_none(ctx.str("/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}
