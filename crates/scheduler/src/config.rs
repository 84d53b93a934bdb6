//! `--scheduler-config`: a subset of `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`): profiles with their scheduler names, plugins
//! enabled or disabled per extension point (`filter`, `score`, `multiPoint`), score
//! weights, `percentageOfNodesToScore`, `parallelism`, and the args of NodeResourcesFit, InterPodAffinity
//! and PodTopologySpread.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::Error;
use crate::framework::{Plugin, Profile};
use crate::plugins::balanced_allocation::BalancedAllocation;
use crate::plugins::image_locality::ImageLocality;
use crate::plugins::inter_pod_affinity::InterPodAffinity;
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_fit::{NodeResourcesFit, Strategy};
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::pod_topology_spread::PodTopologySpread;
use crate::plugins::taint_toleration::TaintToleration;
use crate::plugins::volume_binding::VolumeBinding;

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// The scheduler's configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerConfig {
    /// `kubescheduler.config.k8s.io/v1`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `KubeSchedulerConfiguration`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Percentage of nodes to find feasible before scoring (0 or absent: adaptive).
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Threads filtering and scoring nodes (Kubernetes: goroutines, default 16); absent:
    /// half the machine's cores ([`crate::framework::Cycle::default`]).
    #[serde(default)]
    pub parallelism: Option<i64>,
    /// Profiles; none means one default profile named `default-scheduler`.
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
}

/// One profile.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileConfig {
    /// The scheduler name the profile serves.
    #[serde(default)]
    pub scheduler_name: Option<String>,
    /// Plugin changes per extension point.
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Plugin arguments.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
    /// Overrides the top-level percentage for this profile.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
}

/// Extension points this scheduler knows.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    /// Filter plugins.
    #[serde(default)]
    pub filter: Option<PluginSet>,
    /// Score plugins (with weights).
    #[serde(default)]
    pub score: Option<PluginSet>,
    /// Every extension point at once.
    #[serde(default)]
    pub multi_point: Option<PluginSet>,
}

/// Plugins enabled and disabled at one extension point.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PluginSet {
    /// Enabled (added, or re-weighted).
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Disabled; `*` disables every default plugin.
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin by name, with an optional score weight.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    /// Score weight.
    #[serde(default)]
    pub weight: Option<i64>,
}

/// Arguments of one plugin.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PluginConfig {
    /// Plugin name.
    pub name: String,
    /// Its args, as in the Kubernetes types.
    #[serde(default)]
    pub args: serde_json::Value,
}

impl SchedulerConfig {
    /// Reads a configuration file (YAML or JSON).
    pub fn from_file(path: &std::path::Path) -> Result<SchedulerConfig, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        SchedulerConfig::parse(&text)
    }

    /// Parses a configuration (YAML or JSON) and checks it builds.
    pub fn parse(text: &str) -> Result<SchedulerConfig, Error> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| Error::Config(format!("parsing the scheduler config: {e}")))?;
        let config: SchedulerConfig =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("invalid scheduler config: {e}")))?;
        if let Some(kind) = &config.kind
            && kind != "KubeSchedulerConfiguration"
        {
            return Err(Error::Config(format!("kind {kind:?} is not KubeSchedulerConfiguration")));
        }
        if let Some(p) = config.parallelism
            && p <= 0
        {
            return Err(Error::Config(format!("parallelism: must be greater than 0, not {p}")));
        }
        config.profiles()?;
        Ok(config)
    }

    /// The scheduling cycle state with `parallelism` threads (at most 64: more only
    /// costs thread starts), or the default of half the cores.
    pub fn cycle(&self) -> crate::framework::Cycle {
        match self.parallelism {
            Some(p) if p > 0 => crate::framework::Cycle::new(p.min(64) as usize),
            _ => crate::framework::Cycle::default(),
        }
    }

    /// Builds the profiles.
    pub fn profiles(&self) -> Result<Vec<Profile>, Error> {
        let defaults = [ProfileConfig::default()];
        let profiles = if self.profiles.is_empty() { &defaults[..] } else { &self.profiles[..] };
        let mut names = std::collections::HashSet::new();
        let mut out = Vec::new();
        for p in profiles {
            let profile = build(p, self.percentage_of_nodes_to_score)?;
            if !names.insert(profile.scheduler_name.clone()) {
                return Err(Error::Config(format!("duplicate profile {:?}", profile.scheduler_name)));
            }
            out.push(profile);
        }
        Ok(out)
    }
}

/// Filter plugins of the default profile, in Kubernetes' order.
const DEFAULT_FILTERS: &[&str] = &[
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "NodeResourcesFit",
    "VolumeBinding",
    "PodTopologySpread",
    "InterPodAffinity",
];

/// Score plugins of the default profile with their weights.
const DEFAULT_SCORES: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodeResourcesFit", 1),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

fn args_of<'a>(p: &'a ProfileConfig, name: &str) -> Option<&'a serde_json::Value> {
    p.plugin_config.iter().find(|c| c.name == name).map(|c| &c.args)
}

fn instantiate(name: &str, p: &ProfileConfig) -> Result<Arc<dyn Plugin>, Error> {
    Ok(match name {
        "NodeUnschedulable" => Arc::new(NodeUnschedulable),
        "NodeName" => Arc::new(NodeName),
        "TaintToleration" => Arc::new(TaintToleration),
        "NodeAffinity" => Arc::new(NodeAffinity),
        "NodePorts" => Arc::new(NodePorts),
        "VolumeBinding" => Arc::new(VolumeBinding),
        "PodTopologySpread" => Arc::new(match args_of(p, name) {
            Some(args) => {
                PodTopologySpread::from_args(args).map_err(|e| Error::Config(format!("PodTopologySpread args: {e}")))?
            }
            None => PodTopologySpread::default(),
        }),
        "ImageLocality" => Arc::new(ImageLocality),
        "NodeResourcesBalancedAllocation" => Arc::new(BalancedAllocation::default()),
        "InterPodAffinity" => {
            let mut plugin = InterPodAffinity::default();
            if let Some(w) = args_of(p, name).and_then(|a| a.get("hardPodAffinityWeight")).and_then(|w| w.as_i64()) {
                plugin.hard_pod_affinity_weight = w;
            }
            Arc::new(plugin)
        }
        "NodeResourcesFit" => Arc::new(resources_fit(args_of(p, name))?),
        other => return Err(Error::Config(format!("unknown plugin {other:?}"))),
    })
}

fn resources_fit(args: Option<&serde_json::Value>) -> Result<NodeResourcesFit, Error> {
    let mut plugin = NodeResourcesFit::default();
    let Some(strategy) = args.and_then(|a| a.get("scoringStrategy")) else {
        return Ok(plugin);
    };
    if let Some(list) = strategy.get("resources").and_then(|r| r.as_array()) {
        plugin.resources = list
            .iter()
            .map(|r| {
                let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
                (name, r.get("weight").and_then(|w| w.as_i64()).unwrap_or(1))
            })
            .collect();
    }
    plugin.strategy = match strategy.get("type").and_then(|t| t.as_str()).unwrap_or("LeastAllocated") {
        "LeastAllocated" => Strategy::LeastAllocated,
        "MostAllocated" => Strategy::MostAllocated,
        "RequestedToCapacityRatio" => {
            let shape: Vec<(i64, i64)> = strategy
                .pointer("/requestedToCapacityRatio/shape")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .map(|pt| {
                    (
                        pt.get("utilization").and_then(|u| u.as_i64()).unwrap_or(0),
                        pt.get("score").and_then(|s| s.as_i64()).unwrap_or(0),
                    )
                })
                .collect();
            if shape.is_empty() {
                return Err(Error::Config("RequestedToCapacityRatio needs a shape".into()));
            }
            Strategy::RequestedToCapacityRatio(shape)
        }
        other => return Err(Error::Config(format!("unknown scoring strategy {other:?}"))),
    };
    Ok(plugin)
}

fn build(p: &ProfileConfig, top_percentage: Option<u32>) -> Result<Profile, Error> {
    let plugins = p.plugins.clone().unwrap_or_default();
    let empty = PluginSet::default();
    let multi = plugins.multi_point.as_ref().unwrap_or(&empty);
    let apply = |defaults: Vec<(String, i64)>, set: &PluginSet| -> Vec<(String, i64)> {
        let mut list = if set.disabled.iter().any(|d| d.name == "*") {
            Vec::new()
        } else {
            defaults.into_iter().filter(|(n, _)| !set.disabled.iter().any(|d| d.name == *n)).collect()
        };
        for e in &set.enabled {
            match list.iter_mut().find(|(n, _)| *n == e.name) {
                Some(existing) => existing.1 = e.weight.unwrap_or(existing.1),
                None => list.push((e.name.clone(), e.weight.unwrap_or(1))),
            }
        }
        list
    };
    let filters = apply(DEFAULT_FILTERS.iter().map(|n| (n.to_string(), 0)).collect(), multi);
    let filters = apply(filters, plugins.filter.as_ref().unwrap_or(&empty));
    let scores = apply(DEFAULT_SCORES.iter().map(|(n, w)| (n.to_string(), *w)).collect(), multi);
    let scores = apply(scores, plugins.score.as_ref().unwrap_or(&empty));
    let mut instances: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
    let mut get = |name: &str| -> Result<Arc<dyn Plugin>, Error> {
        if let Some(p) = instances.get(name) {
            return Ok(p.clone());
        }
        let plugin = instantiate(name, p)?;
        instances.insert(name.to_string(), plugin.clone());
        Ok(plugin)
    };
    let mut profile = Profile {
        scheduler_name: p.scheduler_name.clone().unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_string()),
        filters: Vec::new(),
        scores: Vec::new(),
        percentage_of_nodes_to_score: p.percentage_of_nodes_to_score.or(top_percentage).unwrap_or(0).min(100),
    };
    for (name, _) in filters {
        let plugin = get(&name)?;
        if plugin.filters() {
            profile.filters.push(plugin);
        }
    }
    for (name, weight) in scores {
        let plugin = get(&name)?;
        if plugin.scores() && weight > 0 {
            profile.scores.push((plugin, weight));
        }
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Profile) -> (Vec<&str>, Vec<(&str, i64)>) {
        (p.filters.iter().map(|f| f.name()).collect(), p.scores.iter().map(|(s, w)| (s.name(), *w)).collect())
    }

    #[test]
    fn default_profile_matches_kubernetes() {
        let profiles = SchedulerConfig::default().profiles().unwrap();
        assert_eq!(profiles.len(), 1);
        let (filters, scores) = names(&profiles[0]);
        assert_eq!(profiles[0].scheduler_name, "default-scheduler");
        assert_eq!(filters.len(), 9);
        // Every weight of Kubernetes' default profile (pkg/scheduler/apis/config/v1 default_plugins.go).
        let mut scores = scores;
        scores.sort();
        assert_eq!(
            scores,
            [
                ("ImageLocality", 1),
                ("InterPodAffinity", 2),
                ("NodeAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("TaintToleration", 3),
            ]
        );
    }

    #[test]
    fn profiles_weights_and_strategies() {
        let c = SchedulerConfig::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  percentageOfNodesToScore: 100
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    filter:
      disabled: [{name: NodePorts}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 1}]
"#,
        )
        .unwrap();
        let profiles = c.profiles().unwrap();
        let (filters, scores) = names(&profiles[1]);
        assert_eq!(profiles[1].scheduler_name, "packer");
        assert!(!filters.contains(&"NodePorts"));
        assert_eq!(scores, [("NodeResourcesFit", 5)]);
        assert_eq!(profiles[1].percentage_of_nodes_to_score, 100);
    }

    #[test]
    fn parallelism_sets_the_threads() {
        let c = SchedulerConfig::parse(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nparallelism: 3",
        )
        .unwrap();
        assert_eq!(c.parallelism, Some(3));
        assert_eq!(c.cycle().threads(), 3);
        assert_eq!(SchedulerConfig::parse("parallelism: 1000").unwrap().cycle().threads(), 64);
        // Absent: half the cores, at least one.
        let half = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 16));
        assert_eq!(SchedulerConfig::parse("{}").unwrap().cycle().threads(), half);
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            "profiles: [{schedulerName: a}, {schedulerName: a}]",
            "profiles: [{plugins: {score: {enabled: [{name: NoSuchPlugin}]}}}]",
            "kind: Pod",
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Weird}}}]}]",
            "profiles: 3",
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]",
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}}]}]",
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: Maybe}]}}]}]",
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {}}]}}]}]",
            "profiles: [{pluginConfig: [{name: PodTopologySpread, args: {defaultingType: Other}}]}]",
            "parallelism: 0",
            "parallelism: -2",
            "parallelism: many",
        ] {
            assert!(SchedulerConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spread_default_constraints_from_the_config() {
        use crate::cache::PodInfo;
        use crate::framework::{Cycle, Decision};
        use crate::plugins::testing::{bound_labelled, cache_of, labelled, node};
        use serde_json::json;
        use std::sync::Arc;
        let config = |args: &str| {
            SchedulerConfig::parse(&format!(
                "profiles: [{{percentageOfNodesToScore: 100, pluginConfig: [{{name: PodTopologySpread, args: {args}}}]}}]"
            ))
            .unwrap()
            .profiles()
            .unwrap()
            .remove(0)
        };
        let listed = config(
            "{defaultingType: List, defaultConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]}",
        );
        let none = config("{defaultingType: List}");
        let system = config("{defaultingType: System}");
        let nodes = vec![node("a", json!({"labels": {"zone": "a"}})), node("b", json!({"labels": {"zone": "b"}}))];
        let mut cache = cache_of(
            nodes,
            vec![
                bound_labelled("w1", "a", json!({"app": "web"}), json!({})),
                bound_labelled("w2", "b", json!({"app": "web"}), json!({})),
                bound_labelled("w3", "a", json!({"app": "web"}), json!({})),
            ],
        );
        let pod: PodInfo = labelled(json!({"app": "web"}), json!({}));
        let filtered = |profile: &Profile, cache: &crate::cache::Cache| {
            let prepared = crate::framework::pre_filter(profile, &pod, cache).unwrap();
            cache
                .nodes()
                .iter()
                .filter(|n| crate::framework::fits(profile, &prepared, &pod, n, cache).is_ok())
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
        };
        // No Service or controller selects the pod: no default constraint.
        assert_eq!(filtered(&listed, &cache), ["a", "b"]);
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}),
        )
        .unwrap();
        cache.services.insert("default/web".into(), Arc::new(svc));
        // The listed DoNotSchedule zone constraint keeps the pod out of the crowded zone;
        // an empty list means no defaults; System's defaults only score.
        assert_eq!(filtered(&listed, &cache), ["b"]);
        assert_eq!(filtered(&none, &cache), ["a", "b"]);
        assert_eq!(filtered(&system, &cache), ["a", "b"]);
        match Cycle::new(1).schedule(&listed, &cache, &pod) {
            Decision::Node(n) => assert_eq!(n, "b"),
            Decision::Unschedulable(d) => panic!("{}", d.message()),
        }
    }
}
