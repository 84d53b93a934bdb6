//! One relist of the node's sandboxes and containers per second (the kubelet's generic PLEG):
//! a CRI `ListPodSandbox` and `ListContainers` for the whole node, compared with the last
//! relist; the workers of the pods whose containers or sandbox changed state are woken, the
//! others sleep. Pod workers read a container's latest state from here and ask the runtime
//! for its full status (`ContainerStatus`) only when that state moved. containerd 1.6 has no
//! `GetContainerEvents` (the evented PLEG came with 1.7), so a relist it is.
//!
//! Every other relist also removes the sandboxes no pod claims (`pods::remove_orphans`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Shared;
use super::containers::NODE_LABEL;
use super::pods::{self, Workers};
use crate::runtime::cri::v1 as cri;

/// How often the node's containers are listed (the kubelet's relist period).
pub(crate) const RELIST_EVERY: Duration = Duration::from_secs(1);

/// A pod's containers and sandboxes as one relist saw them: (id, CRI state), sorted.
type PodRecord = Vec<(String, i32)>;

/// The latest relist: each container's CRI state by id.
#[derive(Default)]
pub(crate) struct Relist {
    states: Mutex<Arc<HashMap<String, i32>>>,
}

impl Relist {
    /// The state of container `id` in the latest relist (None: not seen yet, or gone).
    pub(crate) fn state(&self, id: &str) -> Option<i32> {
        self.states.lock().expect("relist lock").get(id).copied()
    }

    fn set(&self, states: HashMap<String, i32>) {
        *self.states.lock().expect("relist lock") = Arc::new(states);
    }
}

/// A wake-up for each pod worker, by pod uid: the relist and the eviction manager nudge a
/// worker to look at its pod now instead of at its next resync.
#[derive(Default)]
pub(crate) struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// The wake-up of pod `uid`'s worker (made on its first call).
    pub(crate) fn register(&self, uid: &str) -> Arc<Notify> {
        self.0.lock().expect("wakers lock").entry(uid.to_string()).or_default().clone()
    }

    /// Forgets pod `uid`'s wake-up (its worker ended).
    pub(crate) fn unregister(&self, uid: &str) {
        self.0.lock().expect("wakers lock").remove(uid);
    }

    /// Wakes pod `uid`'s worker (or its next wait, when it is busy).
    pub(crate) fn wake(&self, uid: &str) {
        if let Some(n) = self.0.lock().expect("wakers lock").get(uid) {
            n.notify_one();
        }
    }
}

/// Relists every [`RELIST_EVERY`], forever: wakes the pods that changed, keeps the states
/// for the workers, and every other time removes the sandboxes no pod claims.
pub(crate) async fn run(shared: Arc<Shared>, workers: Workers) {
    let mut ticker = tokio::time::interval(RELIST_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: BTreeMap<String, PodRecord> = BTreeMap::new();
    let mut round: u64 = 0;
    loop {
        ticker.tick().await;
        round += 1;
        let (sandboxes, containers) =
            match tokio::try_join!(shared.cri.list_pod_sandboxes(), shared.cri.list_all_containers()) {
                Ok(lists) => lists,
                Err(e) => {
                    tracing::warn!(%e, "relisting the node's containers");
                    continue;
                }
            };
        let now = by_pod(&shared.config.node_name, &sandboxes, &containers);
        for uid in changed(&last, &now) {
            shared.pod_wakers.wake(uid);
        }
        shared.relist.set(containers.iter().map(|c| (c.id.clone(), c.state)).collect());
        last = now;
        if round.is_multiple_of(2) {
            pods::remove_orphans(&shared, &workers, &sandboxes).await;
        }
    }
}

/// The sandboxes of node `node` and their containers, by pod uid.
fn by_pod(node: &str, sandboxes: &[cri::PodSandbox], containers: &[cri::Container]) -> BTreeMap<String, PodRecord> {
    let mut pods: BTreeMap<String, PodRecord> = BTreeMap::new();
    let mut uid_of: HashMap<&str, &str> = HashMap::new();
    for s in sandboxes {
        if s.labels.get(NODE_LABEL).map(String::as_str) != Some(node) {
            continue;
        }
        let Some(uid) = s.labels.get("io.kubernetes.pod.uid") else { continue };
        uid_of.insert(&s.id, uid);
        pods.entry(uid.clone()).or_default().push((s.id.clone(), s.state));
    }
    for c in containers {
        if let Some(uid) = uid_of.get(c.pod_sandbox_id.as_str()) {
            pods.entry(uid.to_string()).or_default().push((c.id.clone(), c.state));
        }
    }
    for record in pods.values_mut() {
        record.sort();
    }
    pods
}

/// The pods whose record differs between two relists (appeared, changed or gone).
fn changed<'a>(
    before: &'a BTreeMap<String, PodRecord>,
    now: &'a BTreeMap<String, PodRecord>,
) -> impl Iterator<Item = &'a String> {
    let moved = now.iter().filter(move |(uid, r)| before.get(*uid) != Some(*r)).map(|(uid, _)| uid);
    let gone = before.keys().filter(move |uid| !now.contains_key(*uid));
    moved.chain(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, uid: &str, node: &str) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.into(),
            state: cri::PodSandboxState::SandboxReady as i32,
            labels: [("io.kubernetes.pod.uid".to_string(), uid.to_string()), (NODE_LABEL.to_string(), node.into())]
                .into(),
            ..Default::default()
        }
    }

    fn container(id: &str, sandbox: &str, state: cri::ContainerState) -> cri::Container {
        cri::Container { id: id.into(), pod_sandbox_id: sandbox.into(), state: state as i32, ..Default::default() }
    }

    #[test]
    fn only_pods_whose_containers_changed_state_are_woken() {
        use cri::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};
        let sandboxes = vec![sandbox("s1", "u1", "n1"), sandbox("s2", "u2", "n1"), sandbox("s3", "u3", "other")];
        let first = by_pod(
            "n1",
            &sandboxes,
            &[container("c1", "s1", Running), container("c2", "s2", Running), container("c3", "s3", Running)],
        );
        assert_eq!(first.keys().collect::<Vec<_>>(), ["u1", "u2"], "another node's pods are not ours");
        // Everything is new the first time.
        assert_eq!(changed(&BTreeMap::new(), &first).count(), 2);
        // Nothing moved: nobody is woken.
        let same = by_pod("n1", &sandboxes, &[container("c2", "s2", Running), container("c1", "s1", Running)]);
        assert_eq!(changed(&first, &same).count(), 0);
        // c1 exited: only u1.
        let exited = by_pod("n1", &sandboxes, &[container("c1", "s1", Exited), container("c2", "s2", Running)]);
        assert_eq!(changed(&first, &exited).collect::<Vec<_>>(), ["u1"]);
        // A new container in u2 (a restart), and u1's sandbox gone.
        let next = by_pod(
            "n1",
            &sandboxes[1..],
            &[container("c2", "s2", Exited), container("c4", "s2", Running), container("c1", "s1", Exited)],
        );
        let mut woken: Vec<_> = changed(&exited, &next).collect();
        woken.sort();
        assert_eq!(woken, ["u1", "u2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_before_the_wait_is_kept() {
        let wakers = Wakers::default();
        let notify = wakers.register("u1");
        wakers.wake("u1");
        wakers.wake("nobody");
        assert!(tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.is_ok());
        wakers.unregister("u1");
        assert!(wakers.0.lock().unwrap().is_empty());
    }
}
