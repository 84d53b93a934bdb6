//! The audit flags of `berth server` (kube-apiserver's `--audit-log-*` and
//! `--audit-policy-file`), turned into the API server's audit configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Audit log flags.
#[derive(Args, Debug)]
pub(crate) struct AuditArgs {
    /// Write audit events (audit.k8s.io/v1 Event JSON lines) to this file ("-": standard output).
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// The audit.k8s.io/v1 Policy deciding what is recorded, at which level.
    #[arg(long)]
    audit_policy_file: Option<PathBuf>,
    /// Rotate the audit log when it would grow past this many megabytes (0: no size limit).
    #[arg(long, default_value_t = 0)]
    audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 0)]
    audit_log_maxbackup: usize,
    /// Days rotated audit log files are kept (0: no limit).
    #[arg(long, default_value_t = 0)]
    audit_log_maxage: u64,
}

/// The audit configuration the flags ask for (both a path and a policy, or neither).
pub(crate) fn config(args: &AuditArgs) -> anyhow::Result<Option<berth_apiserver::audit::AuditConfig>> {
    let (path, policy_file) = match (&args.audit_log_path, &args.audit_policy_file) {
        (None, None) => return Ok(None),
        (Some(path), Some(policy)) => (path, policy),
        (Some(_), None) => anyhow::bail!("--audit-log-path needs --audit-policy-file"),
        (None, Some(_)) => anyhow::bail!("--audit-policy-file needs --audit-log-path"),
    };
    let text = std::fs::read_to_string(policy_file)
        .with_context(|| format!("reading --audit-policy-file {}", policy_file.display()))?;
    let policy = berth_apiserver::audit::Policy::parse(&text)
        .with_context(|| format!("--audit-policy-file {}", policy_file.display()))?;
    Ok(Some(berth_apiserver::audit::AuditConfig {
        path: path.clone(),
        policy,
        max_size_mb: args.audit_log_maxsize,
        max_backup: args.audit_log_maxbackup,
        max_age_days: args.audit_log_maxage,
    }))
}
