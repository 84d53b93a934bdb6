//! The scheduling queue: an active heap (higher priority first, then oldest), a back-off
//! heap for pods that failed recently, an unschedulable set that waits for a cluster
//! event that could help (as the [`crate::hints`] of the plugins that rejected each pod
//! say), and gated pods that wait for their `schedulingGates` to be removed. Pods are
//! popped one at a time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cache::PodInfo;
use crate::hints::{ClusterEvent, Rejected, helps};

/// Back-off after the first failed attempt (podInitialBackoffSeconds).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off (podMaxBackoffSeconds).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often (podMaxInUnschedulablePodsDuration).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);
/// Cluster events kept for the pods in flight at most; beyond, the oldest are dropped and
/// the pods popped before them go to back-off when found unschedulable (as if one helped).
const MAX_IN_FLIGHT_EVENTS: usize = 20_000;

/// Where a queued pod waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    /// Popped and being scheduled (or bound).
    InFlight,
}

#[derive(Debug)]
struct Slot {
    info: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// Bumped on every re-queue so stale heap entries are skipped.
    generation: u64,
    /// Order of arrival (older first among equal priorities).
    seq: u64,
    backoff_until: Instant,
    /// The last event's number when the pod was popped.
    popped_at_event: u64,
    /// The pod was deleted or bound while in flight.
    gone: bool,
    /// Why its last attempt found no node (what its queueing hints look at).
    rejected: Rejected,
    /// Its back-off follows an error (a failed binding), not an event that may help.
    after_error: bool,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<String, Slot>,
    active: BinaryHeap<(i32, Reverse<u64>, u64, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    next_seq: u64,
    /// The last slot generation handed out: generations are unique across slots, so an
    /// entry left by a deleted pod never matches a new pod of the same name.
    last_generation: u64,
    /// The pods that entered [`Place::Unschedulable`], oldest first, with the slot
    /// generation they entered with: an entry whose slot has moved on since (another
    /// generation or place) is stale and dropped when met. Cluster events walk these
    /// pods only, not every queued pod, and the 5-minute retry looks at the front only.
    unschedulable: VecDeque<(Instant, u64, String)>,
    /// Counts cluster events.
    events: u64,
    /// The events since the oldest pod in flight was popped, numbered (kube-scheduler's
    /// `inFlightEvents`): a pod found unschedulable checks those that came during its
    /// attempt against its hints.
    in_flight_events: VecDeque<(u64, Arc<ClusterEvent>)>,
    /// Events up to this number were dropped from `in_flight_events` (over the bound).
    dropped_through: u64,
    /// The pods in flight, counted by the event number at their pop.
    in_flight: BTreeMap<u64, usize>,
    closed: bool,
}

/// A popped pod.
#[derive(Debug, Clone)]
pub struct Popped {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far, this one included.
    pub attempts: u32,
}

/// The queue, shared by the watch handlers and the scheduling thread.
#[derive(Debug, Default)]
pub struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

fn gated(info: &PodInfo) -> bool {
    info.spec().scheduling_gates.as_ref().is_some_and(|g| !g.is_empty())
}

fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl State {
    fn push_active(&mut self, key: &str) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        self.last_generation += 1;
        slot.generation = self.last_generation;
        slot.place = Place::Active;
        self.active.push((slot.info.priority, Reverse(slot.seq), slot.generation, key.to_string()));
    }

    fn push_backoff(&mut self, key: &str, now: Instant) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.backoff_until <= now {
            self.push_active(key);
            return;
        }
        self.last_generation += 1;
        slot.generation = self.last_generation;
        slot.place = Place::Backoff;
        self.backoff.push(Reverse((slot.backoff_until, slot.generation, key.to_string())));
    }

    /// Whether an [`State::unschedulable`] entry still stands for its pod.
    fn unschedulable_entry_live(&self, generation: u64, key: &str) -> bool {
        self.slots.get(key).is_some_and(|s| s.generation == generation && s.place == Place::Unschedulable)
    }

    /// Moves the pods unschedulable for longer than [`MAX_UNSCHEDULABLE`] to the active
    /// heap (podMaxInUnschedulablePodsDuration), dropping stale entries on the way; returns
    /// whether any moved. Only the front of the (time-ordered) list is looked at.
    fn flush_unschedulable_leftover(&mut self, now: Instant) -> bool {
        let mut moved = false;
        while let Some((since, generation, key)) = self.unschedulable.front() {
            if !self.unschedulable_entry_live(*generation, key) {
                self.unschedulable.pop_front();
                continue;
            }
            if now.duration_since(*since) <= MAX_UNSCHEDULABLE {
                break;
            }
            if let Some((_, _, key)) = self.unschedulable.pop_front() {
                self.push_active(&key);
                moved = true;
            }
        }
        moved
    }

    /// A pod popped at event `popped_at` leaves flight: the events no pod in flight needs
    /// any longer are dropped.
    fn leave_flight(&mut self, popped_at: u64) {
        if let Some(n) = self.in_flight.get_mut(&popped_at) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&popped_at);
            }
        }
        let oldest = self.in_flight.keys().next().copied().unwrap_or(u64::MAX);
        while self.in_flight_events.front().is_some_and(|(seq, _)| *seq <= oldest) {
            self.in_flight_events.pop_front();
        }
    }

    /// Whether an event since `popped_at` (the pod's attempt) may help the pod.
    fn helped_in_flight(&self, popped_at: u64, info: &PodInfo, rejected: &Rejected) -> bool {
        popped_at < self.dropped_through
            || self
                .in_flight_events
                .iter()
                .rev()
                .take_while(|(seq, _)| *seq > popped_at)
                .any(|(_, e)| helps(e, info, rejected))
    }

    /// With no active pod, moves the first pod to leave back-off to the active heap at
    /// once when it backs off after an event that may help (not after an error), as
    /// Kubernetes' `SchedulerPopFromBackoffQ` (on by default from 1.33): an idle scheduler
    /// does not wait out back-offs. Returns whether a pod moved.
    fn pop_from_backoff(&mut self) -> bool {
        while let Some(Reverse((_, generation, key))) = self.backoff.peek() {
            match self.slots.get(key) {
                Some(slot) if slot.generation == *generation && slot.place == Place::Backoff => {
                    if slot.after_error {
                        return false;
                    }
                    let Some(Reverse((_, _, key))) = self.backoff.pop() else {
                        return false;
                    };
                    self.push_active(&key);
                    return true;
                }
                _ => {
                    self.backoff.pop();
                }
            }
        }
        false
    }

    /// Moves pods whose back-off ended to the active heap.
    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, _, _))) = self.backoff.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((_, generation, key))) = self.backoff.pop() else {
                break;
            };
            if self.slots.get(&key).is_some_and(|s| s.generation == generation && s.place == Place::Backoff) {
                self.push_active(&key);
            }
        }
    }
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Adds a new pending pod, or updates a queued one. An update that changes what
    /// scheduling looks at (spec, labels, gates) makes an unschedulable pod active again.
    pub fn add_or_update(&self, info: Arc<PodInfo>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = info.key.clone();
        let now = Instant::now();
        let is_gated = gated(&info);
        match s.slots.get_mut(&key) {
            Some(slot) => {
                let relevant = slot.info.pod.spec != info.pod.spec || slot.info.labels != info.labels;
                slot.info = info;
                match slot.place {
                    Place::InFlight => {}
                    Place::Gated if !is_gated => s.push_active(&key),
                    Place::Unschedulable if relevant && !is_gated => s.push_backoff(&key, now),
                    Place::Active | Place::Backoff if is_gated => slot.place = Place::Gated,
                    _ => {}
                }
            }
            None => {
                let seq = s.next_seq;
                s.next_seq += 1;
                s.slots.insert(
                    key.clone(),
                    Slot {
                        info,
                        place: Place::Gated,
                        attempts: 0,
                        generation: 0,
                        seq,
                        backoff_until: now,
                        popped_at_event: 0,
                        gone: false,
                        rejected: Rejected::default(),
                        after_error: false,
                    },
                );
                if !is_gated {
                    s.push_active(&key);
                }
            }
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = s.slots.get_mut(key) {
            if slot.place == Place::InFlight {
                slot.gone = true;
            } else {
                s.slots.remove(key);
            }
        }
    }

    /// Whether the pod is still wanted (not deleted or bound elsewhere while in flight).
    pub fn is_gone(&self, key: &str) -> bool {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.slots.get(key).is_none_or(|slot| slot.gone)
    }

    /// The latest version of a queued pod.
    pub fn latest(&self, key: &str) -> Option<Arc<PodInfo>> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.slots.get(key).map(|slot| slot.info.clone())
    }

    /// A cluster event: the unschedulable pods it may help (by the hints of the plugins
    /// that rejected each) move to back-off, or active when their back-off has passed;
    /// pods in flight see it when their attempt ends.
    ///
    /// Room freed on a node that moves preemptors waiting for their victims elsewhere is
    /// taken by the first of them it fits (oldest first), the next ones see what is left:
    /// a deletion moves as many of them as the room can hold, not every waiting preemptor
    /// of the same size (which, in preemption churn, would each filter every node only for
    /// one to take the room).
    pub fn on_event(&self, mut event: ClusterEvent) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.events += 1;
        let seq = s.events;
        let now = Instant::now();
        let State { slots, unschedulable, .. } = &mut *s;
        let mut keys = Vec::new();
        unschedulable.retain(|(_, generation, key)| {
            let Some(slot) =
                slots.get(key).filter(|slot| slot.generation == *generation && slot.place == Place::Unschedulable)
            else {
                return false;
            };
            if helps(&event, &slot.info, &slot.rejected) {
                if let ClusterEvent::PodDeleted { node, room: Some(room), .. } = &mut event
                    && slot.rejected.waiting_on.as_ref().is_some_and(|n| n != node)
                {
                    room.free.sub(&slot.info.requests.requests);
                }
                keys.push(key.clone());
                return false;
            }
            true
        });
        let moved = !keys.is_empty();
        for key in keys {
            s.push_backoff(&key, now);
        }
        if !s.in_flight.is_empty() {
            s.in_flight_events.push_back((seq, Arc::new(event)));
            if s.in_flight_events.len() > MAX_IN_FLIGHT_EVENTS
                && let Some((dropped, _)) = s.in_flight_events.pop_front()
            {
                s.dropped_through = dropped;
            }
        }
        drop(s);
        if moved {
            self.wake.notify_one();
        }
    }

    /// Moves an unschedulable pod to back-off whatever its hints say (its preemption's
    /// victims could not be deleted: it must not wait for them).
    pub fn requeue(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.slots.get(key).is_some_and(|slot| slot.place == Place::Unschedulable) {
            s.push_backoff(key, Instant::now());
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Blocks until a pod is ready to be scheduled, or the queue is closed (`None`).
    pub fn pop(&self) -> Option<Popped> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.closed {
                return None;
            }
            let now = Instant::now();
            s.flush_backoff(now);
            while let Some((_, _, generation, key)) = s.active.pop() {
                let events = s.events;
                if let Some(slot) = s.slots.get_mut(&key)
                    && slot.generation == generation
                    && slot.place == Place::Active
                {
                    slot.place = Place::InFlight;
                    slot.attempts += 1;
                    slot.popped_at_event = events;
                    let popped = Popped { info: slot.info.clone(), attempts: slot.attempts };
                    *s.in_flight.entry(events).or_insert(0) += 1;
                    return Some(popped);
                }
            }
            // Pods unschedulable for too long are retried anyway.
            if s.flush_unschedulable_leftover(now) || s.pop_from_backoff() {
                continue;
            }
            let leftover = s
                .unschedulable
                .front()
                .map(|(since, _, _)| (*since + MAX_UNSCHEDULABLE).saturating_duration_since(now));
            let wait = s
                .backoff
                .peek()
                .map(|Reverse((until, _, _))| until.saturating_duration_since(now))
                .into_iter()
                .chain(leftover)
                .fold(Duration::from_secs(30), Duration::min)
                .max(Duration::from_millis(1));
            s = self.wake.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The scheduling attempt found no node, for the reasons `rejected` holds: the pod
    /// waits for a cluster event that may help (or, if one came while it was being
    /// scheduled, for its back-off).
    pub fn unschedulable(&self, key: &str, rejected: Rejected) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Some(slot) = s.slots.get(key) else {
            return;
        };
        let popped_at = slot.popped_at_event;
        let in_flight = slot.place == Place::InFlight;
        let helped = in_flight && s.helped_in_flight(popped_at, &slot.info, &rejected);
        if in_flight {
            s.leave_flight(popped_at);
        }
        let Some(slot) = s.slots.get_mut(key) else {
            return;
        };
        if slot.gone {
            s.slots.remove(key);
            return;
        }
        slot.backoff_until = now + backoff_for(slot.attempts);
        slot.rejected = rejected;
        slot.after_error = false;
        if helped {
            s.push_backoff(key, now);
        } else if gated(&slot.info) {
            slot.place = Place::Gated;
        } else {
            slot.place = Place::Unschedulable;
            s.last_generation += 1;
            let generation = s.last_generation;
            if let Some(slot) = s.slots.get_mut(key) {
                slot.generation = generation;
            }
            s.unschedulable.push_back((now, generation, key.to_string()));
            // Stale entries go when met at the front or walked by a cluster event; this
            // bounds them when neither happens for a while.
            if s.unschedulable.len() > 2 * s.slots.len() + 64 {
                let State { slots, unschedulable, .. } = &mut *s;
                unschedulable.retain(|(_, generation, key)| {
                    slots
                        .get(key)
                        .is_some_and(|slot| slot.generation == *generation && slot.place == Place::Unschedulable)
                });
            }
        }
        drop(s);
        self.wake.notify_one();
    }

    /// The attempt failed for another reason (a binding error): retry after back-off.
    pub fn retry(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(slot) = s.slots.get(key)
            && slot.place == Place::InFlight
        {
            let popped_at = slot.popped_at_event;
            s.leave_flight(popped_at);
        }
        let Some(slot) = s.slots.get_mut(key) else {
            return;
        };
        if slot.gone {
            s.slots.remove(key);
            return;
        }
        slot.backoff_until = now + backoff_for(slot.attempts);
        slot.after_error = true;
        s.push_backoff(key, now);
        drop(s);
        self.wake.notify_one();
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = s.slots.remove(key)
            && slot.place == Place::InFlight
        {
            s.leave_flight(slot.popped_at_event);
        }
    }

    /// Wakes `pop` and makes it return `None` from now on.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.wake.notify_all();
    }

    /// Pods waiting in the queue (any place), for tests and metrics.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).slots.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32, gated: bool) -> Arc<PodInfo> {
        let gates = if gated { json!([{"name": "g"}]) } else { json!([]) };
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
                "spec": {"priority": priority, "schedulingGates": gates, "containers": [{"name": "c"}]}}))
            .unwrap(),
        )))
    }

    fn node_added(name: &str) -> ClusterEvent {
        ClusterEvent::NodeAdded(crate::hints::NodeFacts::of(&crate::cache::NodeInfo {
            name: name.into(),
            ..Default::default()
        }))
    }

    /// A pod requesting `cpu` deleted from `node`.
    fn deleted(name: &str, cpu: &str, node: &str) -> ClusterEvent {
        let pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap();
        ClusterEvent::PodDeleted { pod: Arc::new(PodInfo::new(Arc::new(pod))), node: node.into(), room: None }
    }

    fn lacking_cpu(waiting_on: Option<&str>) -> Rejected {
        Rejected {
            plugins: [crate::hints::Plugin::NodeResourcesFit].into_iter().collect(),
            lacking: vec!["cpu".into()],
            waiting_on: waiting_on.map(String::from),
        }
    }

    fn place(q: &Queue, key: &str) -> Option<Place> {
        q.state.lock().unwrap().slots.get(key).map(|s| s.place)
    }

    #[test]
    fn events_move_only_the_pods_their_hints_accept() {
        let q = Queue::new();
        for (name, rejected) in [("short", lacking_cpu(None)), ("nominated", lacking_cpu(Some("n1")))] {
            q.add_or_update(pod(name, 0, false));
            let p = q.pop().unwrap();
            q.unschedulable(&p.info.key, rejected);
        }
        // A pod freeing no CPU helps neither.
        q.on_event(deleted("x", "0", "n2"));
        assert_eq!(place(&q, "d/short"), Some(Place::Unschedulable));
        assert_eq!(place(&q, "d/nominated"), Some(Place::Unschedulable));
        // One freeing CPU elsewhere (leaving no room known) helps the pod short of CPU, not the one waiting for
        // its victims on n1.
        q.on_event(deleted("y", "1", "n2"));
        assert_eq!(place(&q, "d/short"), Some(Place::Backoff));
        assert_eq!(place(&q, "d/nominated"), Some(Place::Unschedulable));
        // Its victim on n1 goes: it comes back.
        q.on_event(deleted("victim", "1", "n1"));
        assert_eq!(place(&q, "d/nominated"), Some(Place::Backoff));
        // The five-minute retry still holds for pods no event helps.
        q.add_or_update(pod("stuck", 0, false));
        let p = q.pop().unwrap();
        q.unschedulable(&p.info.key, lacking_cpu(Some("n1")));
        q.on_event(deleted("z", "1", "n3"));
        let mut s = q.state.lock().unwrap();
        assert!(!s.flush_unschedulable_leftover(Instant::now()));
        assert!(s.flush_unschedulable_leftover(Instant::now() + MAX_UNSCHEDULABLE + Duration::from_secs(1)));
        assert_eq!(s.slots["d/stuck"].place, Place::Active);
    }

    #[test]
    fn room_freed_elsewhere_moves_as_many_waiting_preemptors_as_it_holds() {
        let q = Queue::new();
        for name in ["p1", "p2", "p3"] {
            q.add_or_update(pod(name, 0, false));
            let p = q.pop().unwrap();
            q.unschedulable(&p.info.key, lacking_cpu(Some(&format!("victims-of-{name}"))));
        }
        // Each asks for no CPU but a pod slot: a pod going from n2 leaves two slots there.
        let gone = serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "d"},
            "spec": {"nodeName": "n2", "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}))
        .unwrap();
        let free = crate::resources::Resources { milli_cpu: 1000, memory: 1 << 30, pods: 2, ..Default::default() };
        let room = crate::hints::Room { free, nominated: Vec::new() };
        q.on_event(ClusterEvent::PodDeleted {
            pod: Arc::new(PodInfo::new(Arc::new(gone))),
            node: "n2".into(),
            room: Some(room),
        });
        // The two oldest move; the third keeps waiting for its victims.
        assert_eq!(place(&q, "d/p1"), Some(Place::Backoff));
        assert_eq!(place(&q, "d/p2"), Some(Place::Backoff));
        assert_eq!(place(&q, "d/p3"), Some(Place::Unschedulable));
    }

    #[test]
    fn events_during_an_attempt_count_when_they_may_help() {
        let q = Queue::new();
        q.add_or_update(pod("a", 0, false));
        q.add_or_update(pod("b", 0, false));
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        // While both are tried, a pod freeing CPU goes: it may help a (short of CPU), not
        // b (waiting for a pod on n1).
        q.on_event(deleted("y", "1", "n2"));
        q.unschedulable(&a.info.key, lacking_cpu(None));
        q.unschedulable(&b.info.key, lacking_cpu(Some("n1")));
        assert_eq!(place(&q, "d/a"), Some(Place::Backoff));
        assert_eq!(place(&q, "d/b"), Some(Place::Unschedulable));
        // No pod in flight: no event is kept.
        let s = q.state.lock().unwrap();
        assert!(s.in_flight.is_empty() && s.in_flight_events.is_empty());
    }

    #[test]
    fn a_failed_binding_waits_out_its_back_off() {
        let q = Queue::new();
        q.add_or_update(pod("a", 0, false));
        let p = q.pop().unwrap();
        q.retry(&p.info.key);
        let mut s = q.state.lock().unwrap();
        assert!(!s.pop_from_backoff());
        assert_eq!(s.slots["d/a"].place, Place::Backoff);
        s.flush_backoff(Instant::now() + MAX_BACKOFF);
        assert_eq!(s.slots["d/a"].place, Place::Active);
    }

    #[test]
    fn priority_then_age_and_gates() {
        let q = Queue::new();
        q.add_or_update(pod("low", 0, false));
        q.add_or_update(pod("high", 10, false));
        q.add_or_update(pod("low2", 0, false));
        q.add_or_update(pod("gated", 100, true));
        assert_eq!(q.pop().unwrap().info.name, "high");
        assert_eq!(q.pop().unwrap().info.name, "low");
        assert_eq!(q.pop().unwrap().info.name, "low2");
        // Removing the gate makes the pod active.
        q.add_or_update(pod("gated", 100, false));
        assert_eq!(q.pop().unwrap().info.name, "gated");
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event() {
        let q = Queue::new();
        q.add_or_update(pod("a", 0, false));
        let p = q.pop().unwrap();
        q.unschedulable(&p.info.key, Rejected::default());
        q.add_or_update(pod("b", 0, false));
        assert_eq!(q.pop().unwrap().info.name, "b");
        // An event during b's attempt sends b to back-off rather than unschedulable.
        q.on_event(node_added("n"));
        q.unschedulable("d/b", Rejected::default());
        // Nothing is active: the first pod to leave back-off comes at once (a, older),
        // then b, without waiting out their back-off.
        let first = q.pop().unwrap();
        assert_eq!(first.info.name, "a");
        assert_eq!(first.attempts, 2);
        assert_eq!(q.pop().unwrap().info.name, "b");
        q.done("d/a");
        q.delete("d/b");
        assert!(q.is_gone("d/b"));
        q.unschedulable("d/b", Rejected::default());
        assert!(q.is_empty());
        let s = q.state.lock().unwrap();
        assert!(s.in_flight.is_empty() && s.in_flight_events.is_empty());
    }

    #[test]
    fn stale_unschedulable_entries_are_dropped_and_names_reused_safely() {
        let q = Queue::new();
        // A pod deleted while unschedulable, then created again under the same name: only
        // the new pod's entry counts.
        q.add_or_update(pod("a", 0, false));
        let p = q.pop().unwrap();
        q.unschedulable(&p.info.key, Rejected::default());
        q.delete("d/a");
        q.add_or_update(pod("a", 0, false));
        let p = q.pop().unwrap();
        q.unschedulable(&p.info.key, Rejected::default());
        {
            let s = q.state.lock().unwrap();
            let live = s.unschedulable.iter().filter(|(_, g, k)| s.unschedulable_entry_live(*g, k)).count();
            assert_eq!(live, 1);
        }
        // Pods going round (unschedulable, then changed, then tried again) leave stale
        // entries behind; they stay bounded without any cluster event.
        for i in 0..200 {
            q.add_or_update(pod(&format!("p{i}"), 0, false));
        }
        for round in 0..5 {
            while let Some(p) = {
                let s = q.state.lock().unwrap();
                let any = !s.active.is_empty();
                drop(s);
                any.then(|| q.pop()).flatten()
            } {
                q.unschedulable(&p.info.key, Rejected::default());
            }
            // A spec change re-queues each of them (priority differs per round).
            for i in 0..200 {
                q.add_or_update(pod(&format!("p{i}"), round + 1, false));
            }
            let mut s = q.state.lock().unwrap();
            let now = Instant::now() + MAX_BACKOFF;
            s.flush_backoff(now);
        }
        let s = q.state.lock().unwrap();
        assert!(s.unschedulable.len() <= 2 * s.slots.len() + 64, "{} entries", s.unschedulable.len());
        assert_eq!(s.slots.len(), 201);
    }
}
