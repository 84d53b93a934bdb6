//! Kubernetes Events from controllers (events.k8s.io/v1 through kube-runtime's recorder,
//! served as core/v1 Events too), so `kubectl describe` shows what a controller did.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Records events for one controller (its `reportingController` name, e.g. `deployment-controller`).
#[derive(Clone)]
pub(crate) struct Events {
    recorder: Recorder,
}

impl Events {
    pub(crate) fn new(client: kube::Client, controller: &str) -> Events {
        Events { recorder: Recorder::new(client, Reporter { controller: controller.to_string(), instance: None }) }
    }

    /// A Normal event about `regarding`; failures to record are logged, never returned.
    pub(crate) async fn normal(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Normal, regarding, reason, note).await;
    }

    /// A Warning event about `regarding`.
    pub(crate) async fn warning(&self, regarding: &ObjectReference, reason: &str, note: String) {
        self.publish(EventType::Warning, regarding, reason, note).await;
    }

    async fn publish(&self, type_: EventType, regarding: &ObjectReference, reason: &str, note: String) {
        // The recorder folds events with the same key (type, reason, action, object) into one
        // series and keeps the first note: the note goes into the action (at most 128
        // bytes), so only repeats of the same message are counted as one.
        let mut action = note.clone();
        if action.len() > 128 {
            let mut end = 128;
            while !action.is_char_boundary(end) {
                end -= 1;
            }
            action.truncate(end);
        }
        let event = Event { type_, reason: reason.to_string(), note: Some(note), action, secondary: None };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::debug!(error = %e, reason, "recording an event failed");
        }
    }
}
