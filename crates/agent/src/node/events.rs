//! Events the node agent records about its pods, as the kubelet's recorder does: core/v1
//! Events from source component `kubelet` on the node (reporting instance the node name),
//! e.g. `FailedMount`, `FailedPostStartHook`, `Evicted`, `Killing`. The same event (object, type,
//! reason, message) recorded again bumps the count and last timestamp of the first one
//! instead of adding another. Recording is best effort: a failure is logged, never returned.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::Mutex;

/// The most events remembered for aggregation (the oldest half is forgotten beyond).
const REMEMBERED: usize = 4096;

/// (pod uid, type, reason, message) → (event name, count).
type Seen = HashMap<(String, &'static str, String, String), (String, i32)>;

/// The agent's event recorder.
pub struct Events {
    client: kube::Client,
    node_name: String,
    seen: Mutex<Seen>,
}

impl Events {
    /// A recorder reporting as the kubelet of `node_name`.
    pub fn new(client: kube::Client, node_name: &str) -> Events {
        Events { client, node_name: node_name.to_string(), seen: Mutex::new(HashMap::new()) }
    }

    /// Records a Warning event about `pod`.
    pub async fn warning(&self, pod: &Pod, reason: &str, message: String) {
        self.record(pod, "Warning", reason, message).await;
    }

    /// Records a Normal event about `pod`.
    pub async fn normal(&self, pod: &Pod, reason: &str, message: String) {
        self.record(pod, "Normal", reason, message).await;
    }

    async fn record(&self, pod: &Pod, type_: &'static str, reason: &str, message: String) {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Timestamp::now();
        let key = (uid.clone(), type_, reason.to_string(), message.clone());
        let mut seen = self.seen.lock().await;
        if let Some((event_name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({ "count": *count, "lastTimestamp": Time(now) });
            match api.patch(event_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return,
                // Gone (expired or deleted): record it anew.
                Err(e) => tracing::debug!(%e, reason, "updating an event"),
            }
        }
        let event = Event {
            metadata: ObjectMeta {
                // The kubelet's naming: the object's name and a unique suffix.
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: Some(ns),
                uid: Some(uid),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.node_name.clone()) }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node_name.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                if seen.len() >= REMEMBERED {
                    let drop: Vec<_> = seen.keys().take(REMEMBERED / 2).cloned().collect();
                    drop.iter().for_each(|k| {
                        seen.remove(k);
                    });
                }
                seen.insert(key, (created.metadata.name.unwrap_or_default(), 1));
            }
            Err(e) => tracing::warn!(%e, reason, pod = name, "recording an event"),
        }
    }
}
