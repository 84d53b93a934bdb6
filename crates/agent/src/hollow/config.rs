//! Configuration of hollow nodes and the parsers of its command-line forms: labels
//! (`k=v,...`), taints (`k=v:Effect,...`), capacity (`cpu=32,memory=256Gi,...`), durations
//! (`200ms`, `1s`) and resource quantities (Kubernetes' `resource.Quantity` syntax).

use std::collections::BTreeMap;
use std::time::Duration;

/// A bad value in the hollow-node configuration; the message names the input and the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A `--node-labels` entry is malformed.
    #[error("invalid label {input:?}: {reason}")]
    Label {
        /// The offending entry.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--node-taints` entry is malformed.
    #[error("invalid taint {input:?}: {reason}")]
    Taint {
        /// The offending entry.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--capacity` entry is malformed.
    #[error("invalid capacity {input:?}: {reason}")]
    Capacity {
        /// The offending entry.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource quantity does not follow the Kubernetes quantity syntax.
    #[error("invalid quantity {input:?}: {reason}")]
    Quantity {
        /// The offending quantity.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration is not `<number><unit>` with unit ms, s, m or h.
    #[error("invalid duration {input:?}: expected a number and a unit (ms, s, m, h), e.g. 200ms or 1s")]
    Duration {
        /// The offending duration.
        input: String,
    },
    /// Another setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// A node taint: key, optional value, effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// The taint key (a qualified name).
    pub key: String,
    /// The value, possibly empty.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// Everything [`super::HollowNodes::start`] needs to know.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// How many nodes this process plays.
    pub nodes: usize,
    /// Node names are `<prefix><index>`.
    pub node_name_prefix: String,
    /// Extra labels on every node (besides the kubernetes.io/{hostname,os,arch} ones).
    pub labels: BTreeMap<String, String>,
    /// Taints on every node.
    pub taints: Vec<Taint>,
    /// Capacity (= allocatable) of every node, quantities as strings.
    pub capacity: BTreeMap<String, String>,
    /// Time from seeing a pod bound to a node to reporting it Running.
    pub pod_start_delay: Duration,
    /// How long pods that run to completion (restartPolicy Never/OnFailure, Job pods) run.
    pub pod_run_duration: Duration,
    /// Longest wait on a deleted pod's grace period: hollow containers have nothing to stop.
    pub max_termination_grace: Duration,
    /// Lease renewal period (the kubelet's is 10 s).
    pub lease_renew_interval: Duration,
    /// `leaseDurationSeconds` of the node leases (the kubelet's is 40).
    pub lease_duration_seconds: i32,
    /// Node status is re-posted this often when nothing changed (the kubelet's
    /// nodeStatusReportFrequency is 5 min).
    pub node_status_report_interval: Duration,
    /// `kubernetes.io/arch` and `nodeInfo.architecture`.
    pub architecture: String,
    /// Most API writes in flight at once, over all nodes.
    pub max_concurrent_writes: usize,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            nodes: 1,
            node_name_prefix: "hollow-node-".to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            capacity: default_capacity(),
            pod_start_delay: Duration::from_millis(200),
            pod_run_duration: Duration::from_secs(1),
            max_termination_grace: Duration::from_secs(10),
            lease_renew_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            node_status_report_interval: Duration::from_secs(300),
            architecture: go_arch().to_string(),
            max_concurrent_writes: 64,
        }
    }
}

impl HollowConfig {
    /// Checks the settings that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes == 0 {
            return Err(ConfigError::Invalid("--nodes must be at least 1".into()));
        }
        if self.nodes > MAX_NODES {
            return Err(ConfigError::Invalid(format!(
                "--nodes {} is more than one process can play ({MAX_NODES}: one /24 pod range each in 10.0.0.0/9)",
                self.nodes
            )));
        }
        let longest = format!("{}{}", self.node_name_prefix, self.nodes - 1);
        if let Err(reason) = check_dns_subdomain(&longest) {
            return Err(ConfigError::Invalid(format!(
                "node name {longest:?} from --node-name-prefix is not a valid node name: {reason}"
            )));
        }
        if self.lease_renew_interval.is_zero() {
            return Err(ConfigError::Invalid("the lease renew interval must be positive".into()));
        }
        if self.lease_duration_seconds <= 0 {
            return Err(ConfigError::Invalid("leaseDurationSeconds must be positive".into()));
        }
        if self.max_concurrent_writes == 0 {
            return Err(ConfigError::Invalid("max concurrent writes must be at least 1".into()));
        }
        Ok(())
    }

    /// The name of node `index`.
    pub fn node_name(&self, index: usize) -> String {
        format!("{}{index}", self.node_name_prefix)
    }
}

/// The capacity of a node when `--capacity` does not say: cpu=32, memory=256Gi, pods=110,
/// ephemeral-storage=1Ti.
pub fn default_capacity() -> BTreeMap<String, String> {
    [("cpu", "32"), ("memory", "256Gi"), ("pods", "110"), ("ephemeral-storage", "1Ti")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Go's name of this machine's architecture (what `kubernetes.io/arch` holds).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Splits a comma-separated list, ignoring surrounding blanks; an empty input is an empty list.
fn entries(input: &str) -> impl Iterator<Item = &str> {
    input.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `--node-labels k=v,k2=v2`.
pub fn parse_labels(input: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in entries(input) {
        let err = |reason: String| ConfigError::Label { input: entry.to_string(), reason };
        let (key, value) = entry.split_once('=').ok_or_else(|| err("expected key=value".into()))?;
        check_qualified_name(key).map_err(|r| err(format!("key: {r}")))?;
        check_label_value(value).map_err(|r| err(format!("value: {r}")))?;
        if out.insert(key.to_string(), value.to_string()).is_some() {
            return Err(err("key given twice".into()));
        }
    }
    Ok(out)
}

/// Parses `--node-taints k=v:Effect,k2:Effect`.
pub fn parse_taints(input: &str) -> Result<Vec<Taint>, ConfigError> {
    let mut out: Vec<Taint> = Vec::new();
    for entry in entries(input) {
        let err = |reason: String| ConfigError::Taint { input: entry.to_string(), reason };
        let (kv, effect) =
            entry.rsplit_once(':').ok_or_else(|| err("expected key=value:Effect or key:Effect".into()))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(err(format!("effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute")));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        check_qualified_name(key).map_err(|r| err(format!("key: {r}")))?;
        check_label_value(value).map_err(|r| err(format!("value: {r}")))?;
        if out.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(err("the same key and effect given twice".into()));
        }
        out.push(Taint { key: key.to_string(), value: value.to_string(), effect: effect.to_string() });
    }
    Ok(out)
}

/// Parses `--capacity cpu=32,memory=256Gi,nvidia.com/gpu=8` over the defaults
/// ([`default_capacity`]): the given resources replace or add to them.
pub fn parse_capacity(input: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = default_capacity();
    let mut seen = Vec::new();
    for entry in entries(input) {
        let err = |reason: String| ConfigError::Capacity { input: entry.to_string(), reason };
        let (name, quantity) = entry.split_once('=').ok_or_else(|| err("expected resource=quantity".into()))?;
        check_qualified_name(name).map_err(|r| err(format!("resource name: {r}")))?;
        let value = parse_quantity(quantity).map_err(|e| err(e.to_string()))?;
        if value < 0 {
            return Err(err("capacity must not be negative".into()));
        }
        let extended = name.contains('/') && !name.starts_with("kubernetes.io/");
        if extended && value % NANO != 0 {
            return Err(err("extended resources must be whole numbers".into()));
        }
        if seen.contains(&name) {
            return Err(err("resource given twice".into()));
        }
        seen.push(name);
        out.insert(name.to_string(), quantity.to_string());
    }
    Ok(out)
}

/// Parses a duration such as `200ms`, `1s`, `1.5s`, `2m`, `1h` or `0`.
pub fn parse_duration(input: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError::Duration { input: input.to_string() };
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

/// Most nodes one process plays: each gets its own /24 of 10.0.0.0/9 for pods.
pub const MAX_NODES: usize = 32_768;

/// One unit in nano-units: quantities are compared as integers of 10⁻⁹.
pub(crate) const NANO: i128 = 1_000_000_000;

/// Parses a Kubernetes quantity (`100m`, `1.5Gi`, `2e3`, `8`) into nano-units (value × 10⁹),
/// rounding a finer fraction up as Kubernetes does.
pub fn parse_quantity(input: &str) -> Result<i128, ConfigError> {
    let err = |reason: &str| ConfigError::Quantity { input: input.to_string(), reason: reason.to_string() };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("expected a number, e.g. 100m, 1.5Gi or 8"));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().map_err(|_| err("number too large"))?;
    // value = mantissa × 10^(-frac) × multiplier; in nano-units: × 10^9.
    let mut exp10: i32 = 9 - frac_part.len() as i32;
    let mut binary: u32 = 0;
    match suffix {
        "" => {}
        "Ki" => binary = 10,
        "Mi" => binary = 20,
        "Gi" => binary = 30,
        "Ti" => binary = 40,
        "Pi" => binary = 50,
        "Ei" => binary = 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        s if (s.starts_with('e') || s.starts_with('E')) && s.len() > 1 => {
            let e: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
            if !(-30..=30).contains(&e) {
                return Err(err("exponent out of range"));
            }
            exp10 += e;
        }
        _ => return Err(err("unknown suffix (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<n>)")),
    }
    let too_large = || err("too large");
    let mut value = mantissa.checked_mul(1i128 << binary).ok_or_else(too_large)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(too_large)?).ok_or_else(too_large)?;
    } else {
        let div = 10i128.checked_pow((-exp10) as u32).unwrap_or(i128::MAX);
        value = value / div + i128::from(value % div != 0);
    }
    if value > i64::MAX as i128 * NANO {
        return Err(too_large());
    }
    Ok(if negative { -value } else { value })
}

/// A label key or resource name: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63
/// alphanumerics with `-_.` inside.
pub(crate) fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        check_dns_subdomain(p).map_err(|r| format!("prefix part {r}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    check_name_chars(name)
}

/// A label value: empty, or ≤ 63 alphanumerics with `-_.` inside.
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    check_name_chars(value)
}

fn check_name_chars(s: &str) -> Result<(), String> {
    let ok_edge = |c: char| c.is_ascii_alphanumeric();
    let ok_inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !s.starts_with(ok_edge) || !s.ends_with(ok_edge) || !s.chars().all(ok_inner) {
        return Err(format!(
            "{s:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: ≤ 253 lowercase alphanumerics, `-` and `.`, alphanumeric at both ends.
pub(crate) fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok_edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_inner = |c: char| ok_edge(c) || c == '-' || c == '.';
    if s.is_empty() || !s.starts_with(ok_edge) || !s.ends_with(ok_edge) || !s.chars().all(ok_inner) {
        return Err(format!(
            "{s:?} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
