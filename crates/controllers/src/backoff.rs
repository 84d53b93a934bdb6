//! Per-object retry back-off for the controllers, as client-go's workqueue rate limiter
//! (`DefaultControllerRateLimiter`) gives kube-controller-manager's controllers.
//!
//! kube-runtime leaves the delay after a failed reconcile to the `error_policy`. A fixed delay
//! retries an object that cannot succeed (a quota refusing its pods, a webhook down) at the
//! same rate forever. Kubernetes instead counts each object's failures in a row and waits
//! `5 ms · 2^(failures − 1)`, at most 1000 s, forgetting the count when a sync succeeds; an
//! overall token bucket (10 retries a second, bursts of 100) keeps many failing objects from
//! retrying faster together. [`wrap`] does the same for one controller: it wraps the
//! controller's reconcile function (a success forgets the object's failures) and gives the
//! error policy to pass with it to kube-runtime's `Controller::run`.
//!
//! Why these numbers: 5 ms makes the first retries almost immediate (most failures are
//! transient: a stale cache, a restarting server), the doubling reaches a second after 9
//! failures in a row and the 1000 s cap after 19, so an object that keeps failing costs a
//! request every quarter of an hour. Watch events still trigger a sync at once, as an `Add`
//! does in client-go: a change in the cluster is retried without waiting out the back-off.
//!
//! A 409 Conflict means the object was written after our copy was read: the retry reads the
//! cache again, which usually has the newer version by then, so it is retried on the short
//! end of the schedule — its delay doubles with the conflicts in a row only, not with the
//! failures of other kinds before them. Repeated conflicts still back off.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::runtime::controller::Action;

/// The first retry's delay (client-go's 5 ms).
const BASE: Duration = Duration::from_millis(5);
/// The longest delay (client-go's 1000 s).
const CAP: Duration = Duration::from_secs(1000);
/// Retries a second all objects of a controller may take together, after the burst.
const QPS: f64 = 10.0;
/// The bucket's size.
const BURST: f64 = 100.0;
/// How long after its retry was due an object's count is dropped (the object was deleted:
/// kube-runtime reconciles only objects that exist, so no success would forget it).
const STALE_AFTER: Duration = Duration::from_secs(600);

/// `reconcile` of the controller named `controller` (for the log), wrapped so that a success
/// forgets the object's failures, and the error policy that requeues a failed object after
/// its next delay: `let (reconcile, error_policy) = backoff::wrap("name", reconcile);`.
#[allow(clippy::type_complexity)] // two closures, named by their signatures
pub(crate) fn wrap<K, Ctx, F, Fut>(
    controller: &'static str,
    reconcile: F,
) -> (
    impl FnMut(Arc<K>, Arc<Ctx>) -> BoxFuture<'static, crate::Result<Action>>,
    impl Fn(Arc<K>, &crate::Error, Arc<Ctx>) -> Action,
)
where
    K: Resource,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: Future<Output = crate::Result<Action>> + Send + 'static,
{
    let backoff = Backoff::new(controller);
    (backoff.reconcile(reconcile), backoff.error_policy())
}

/// The retry delays of one controller's objects. Cloning shares the counts.
#[derive(Clone)]
struct Backoff {
    controller: &'static str,
    state: Arc<Mutex<State>>,
}

struct State {
    objects: HashMap<String, Failures>,
    bucket: Bucket,
    pruned: Instant,
}

/// One object's failures in a row, and the conflicts among the last of them.
#[derive(Debug, Clone, Copy)]
struct Failures {
    failures: u32,
    conflicts: u32,
    retry_at: Instant,
}

impl Backoff {
    /// The back-off of the controller named `controller` (for the log).
    fn new(controller: &'static str) -> Backoff {
        let now = Instant::now();
        Backoff {
            controller,
            state: Arc::new(Mutex::new(State { objects: HashMap::new(), bucket: Bucket::full(now), pruned: now })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `reconcile`, forgetting an object's failures when it succeeds.
    fn reconcile<K, Ctx, F, Fut>(
        &self,
        mut reconcile: F,
    ) -> impl FnMut(Arc<K>, Arc<Ctx>) -> BoxFuture<'static, crate::Result<Action>> + use<K, Ctx, F, Fut>
    where
        K: Resource,
        F: FnMut(Arc<K>, Arc<Ctx>) -> Fut,
        Fut: Future<Output = crate::Result<Action>> + Send + 'static,
    {
        let backoff = self.clone();
        move |obj, ctx| {
            let key = key(obj.meta());
            let backoff = backoff.clone();
            reconcile(obj, ctx)
                .map(move |result| {
                    if result.is_ok() {
                        backoff.forget(&key);
                    }
                    result
                })
                .boxed()
        }
    }

    /// The error policy: requeue the object after its next delay.
    fn error_policy<K: Resource, Ctx>(&self) -> impl Fn(Arc<K>, &crate::Error, Arc<Ctx>) -> Action + use<K, Ctx> {
        let backoff = self.clone();
        move |obj, error, _ctx| {
            let key = key(obj.meta());
            let delay = backoff.failed(&key, is_conflict(error), Instant::now());
            tracing::debug!(controller = backoff.controller, object = %key, %error, ?delay, "sync failed; retrying");
            Action::requeue(delay)
        }
    }

    /// Counts a failure of `key` at `now`; returns how long to wait before retrying it.
    fn failed(&self, key: &str, conflict: bool, now: Instant) -> Duration {
        let mut guard = self.state();
        let state = &mut *guard;
        if now.saturating_duration_since(state.pruned) > STALE_AFTER {
            state.objects.retain(|_, f| now.saturating_duration_since(f.retry_at) < STALE_AFTER);
            state.pruned = now;
        }
        let object =
            state.objects.entry(key.to_string()).or_insert(Failures { failures: 0, conflicts: 0, retry_at: now });
        object.failures += 1;
        object.conflicts = if conflict { object.conflicts + 1 } else { 0 };
        let own = delay(if conflict { object.conflicts } else { object.failures });
        let wait = own.max(state.bucket.take(now));
        object.retry_at = now + wait;
        wait
    }

    /// Forgets the failures of `key` (it synced).
    fn forget(&self, key: &str) {
        let mut state = self.state();
        if !state.objects.is_empty() {
            state.objects.remove(key);
        }
    }
}

/// Whether a failed sync ran into a 409 Conflict.
fn is_conflict(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Api(kube::Error::Api(e)) if e.code == 409)
}

/// The object's key, `namespace/name` (client-go's `MetaNamespaceKeyFunc`).
fn key(meta: &kube::api::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The delay after the `n`th failure in a row (n ≥ 1): `BASE · 2^(n − 1)`, at most `CAP`.
pub(crate) fn delay(n: u32) -> Duration {
    let exp = n.saturating_sub(1);
    // 2^18 · 5 ms is already beyond the cap: no overflow to think about past it.
    if exp >= 18 { CAP } else { (BASE * (1u32 << exp)).min(CAP) }
}

/// The first delay of a watch that failed ([kube-runtime's `DefaultBackoff`], as client-go's
/// reflector).
const WATCH_BASE: Duration = Duration::from_millis(800);
/// The longest delay of a watch.
const WATCH_CAP: Duration = Duration::from_secs(30);
/// How long a retried watch must have been up for its next error to start the delays over.
const WATCH_HEALTHY: Duration = Duration::from_secs(5);

/// The back-off of the controllers' watches (`.backoff(backoff::watch())` on a watcher,
/// `.trigger_backoff(backoff::watch())` on a kube-runtime `Controller`): kube-runtime's
/// default delays, 0.8 s doubling to 30 s plus up to 0.8 s of jitter, but started over once
/// a retry has worked.
///
/// kube-runtime's `DefaultBackoff` starts over only after an event arrives or two minutes
/// without an error. A watch that the server closes cleanly (a certificate renewal, a
/// restart of the other server of a pair) is resumed at once; if that resumption fails
/// because the old connection is gone, the error is counted, and on a quiet cluster no event
/// comes before the next close: a watch cut every 12 s escalated to 30 s of blindness per
/// cut. Whether the retry worked is not visible from outside the watcher (a resumed watch
/// yields nothing until an object changes), but its timing shows it: a retry that fails
/// does so as soon as it is sent (a refused or reset connection, an error status), while an
/// error [`WATCH_HEALTHY`] or more after the retry was due means the retried watch was up
/// until then. Such an error starts the delays over, as a success does.
pub(crate) fn watch() -> WatchBackoff {
    WatchBackoff { failures: 0, retry_at: None }
}

/// See [`watch`].
#[derive(Debug)]
pub(crate) struct WatchBackoff {
    /// Errors in a row.
    failures: u32,
    /// When the last retry was due.
    retry_at: Option<tokio::time::Instant>,
}

impl WatchBackoff {
    /// The delay after an error at `now`, before jitter.
    fn next_at(&mut self, now: tokio::time::Instant) -> Duration {
        if self.retry_at.is_some_and(|at| now.saturating_duration_since(at) >= WATCH_HEALTHY) {
            self.failures = 0;
        }
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let delay = (WATCH_BASE * (1u32 << exp)).min(WATCH_CAP);
        self.retry_at = Some(now + delay);
        delay
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next_at(tokio::time::Instant::now());
        let jitter = WATCH_BASE.mul_f64(random_fraction());
        if let Some(at) = self.retry_at.as_mut() {
            *at += jitter;
        }
        Some(delay + jitter)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }
}

/// A number in [0, 1), random enough for jitter: std's hasher keys are random per process and
/// change with every `RandomState` (no random-number crate for this).
fn random_fraction() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A token bucket (golang.org/x/time/rate's, as client-go's `BucketRateLimiter` uses it):
/// each retry takes a token, and once the bucket is empty a retry waits for its token.
#[derive(Debug)]
struct Bucket {
    /// Tokens at `at`; negative when retries are already waiting for tokens to come.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket { tokens: BURST, at: now }
    }

    /// Takes a token at `now`; returns how long until it is there.
    fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * QPS).min(BURST) - 1.0;
        self.at = self.at.max(now);
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / QPS) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict() -> crate::Error {
        crate::Error::Api(kube::Error::Api(
            kube::core::Status::failure("the object has been modified", "Conflict").with_code(409).boxed(),
        ))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_from_5ms_to_the_cap() {
        let cases = [(1, ms(5)), (2, ms(10)), (3, ms(20)), (9, ms(1280)), (10, ms(2560)), (18, ms(655_360))];
        for (n, want) in cases {
            assert_eq!(delay(n), want, "failure {n}");
        }
        for n in [19, 20, 64, u32::MAX] {
            assert_eq!(delay(n), CAP, "failure {n}");
        }
        assert_eq!(delay(0), BASE, "never called with 0, but no panic");
    }

    #[test]
    fn failures_of_one_object_back_off_and_a_success_forgets_them() {
        let b = Backoff::new("test");
        let now = Instant::now();
        // Spread over time so that the bucket never holds anything back.
        let waits: Vec<Duration> = (0..6).map(|i| b.failed("ns/a", false, now + Duration::from_secs(i))).collect();
        assert_eq!(waits, [ms(5), ms(10), ms(20), ms(40), ms(80), ms(160)]);
        assert_eq!(b.failed("ns/b", false, now + Duration::from_secs(7)), ms(5), "objects are counted apart");
        b.forget("ns/a");
        assert_eq!(b.failed("ns/a", false, now + Duration::from_secs(8)), ms(5), "a success starts over");
    }

    #[test]
    fn a_conflict_retries_fast_but_repeated_conflicts_back_off() {
        let b = Backoff::new("test");
        let now = Instant::now();
        let at = |i: u64| now + Duration::from_secs(i);
        for i in 0..10 {
            b.failed("ns/a", false, at(i));
        }
        assert_eq!(b.failed("ns/a", true, at(10)), ms(5), "the re-read usually fixes a conflict");
        assert_eq!(b.failed("ns/a", true, at(11)), ms(10));
        assert_eq!(b.failed("ns/a", true, at(12)), ms(20));
        // Another kind of failure goes on from the whole run of failures (10 + 3 before it).
        assert_eq!(b.failed("ns/a", false, at(13)), delay(14));
        assert_eq!(b.failed("ns/a", true, at(14)), ms(5), "a new run of conflicts");
    }

    #[test]
    fn the_bucket_paces_many_objects_after_its_burst() {
        let b = Backoff::new("test");
        let now = Instant::now();
        let waits: Vec<Duration> = (0..103).map(|i| b.failed(&format!("ns/p{i}"), false, now)).collect();
        assert!(waits[..100].iter().all(|w| *w == ms(5)), "the burst: each object's own delay");
        assert_eq!(&waits[100..], [ms(100), ms(200), ms(300)], "then 10 a second");
        // Tokens come back with time.
        assert_eq!(b.failed("ns/late", false, now + Duration::from_secs(10)), ms(5));
    }

    #[test]
    fn counts_of_objects_that_never_came_back_are_dropped() {
        let b = Backoff::new("test");
        let now = Instant::now();
        b.failed("ns/gone", false, now);
        b.failed("ns/other", false, now + STALE_AFTER * 2);
        assert_eq!(b.state().objects.len(), 1, "ns/gone was pruned");
        assert_eq!(b.failed("ns/gone", false, now + STALE_AFTER * 2), ms(5));
    }

    #[test]
    fn watch_delays_double_to_30s_while_retries_fail() {
        let mut b = watch();
        let mut now = tokio::time::Instant::now();
        let mut delays = vec![];
        for _ in 0..8 {
            let d = b.next_at(now);
            delays.push(d);
            // The retry fails as soon as it is sent.
            now += d + ms(3);
        }
        let secs: Vec<f64> = delays.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]);
    }

    #[test]
    fn a_watch_cut_cleanly_again_and_again_does_not_escalate() {
        // A certificate renewal every 12 s closes the watch; the first resumption fails on
        // the closed connection, the retry after the delay works and stays up until the next cut.
        let mut b = watch();
        let mut now = tokio::time::Instant::now();
        for cut in 0..10 {
            let d = b.next_at(now);
            assert_eq!(d, ms(800), "cut {cut}");
            now += Duration::from_secs(12);
        }
        // An event in between resets it too (kube-runtime's StreamBackoff calls reset).
        use kube::runtime::utils::Backoff as _;
        b.next_at(now);
        b.next_at(now + ms(801));
        b.reset();
        assert_eq!(b.next_at(now + ms(900)), ms(800));
    }

    #[test]
    fn the_jitter_stays_under_the_base_delay() {
        let fractions: Vec<f64> = (0..50).map(|_| random_fraction()).collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)), "{fractions:?}");
        assert!(fractions.iter().any(|f| *f != fractions[0]), "not constant: {fractions:?}");
        let d = watch().next().unwrap();
        assert!(d >= ms(800) && d < ms(1600), "{d:?}");
    }

    #[tokio::test]
    async fn the_wrappers_count_errors_and_forget_on_success() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let b = Backoff::new("test");
        let policy = b.error_policy::<ConfigMap, ()>();
        let obj = Arc::new(ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("c".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let sync_error = crate::Error::Sync("quota".into());
        let first = policy(obj.clone(), &sync_error, Arc::new(()));
        let second = policy(obj.clone(), &sync_error, Arc::new(()));
        assert_eq!((first, second), (Action::requeue(ms(5)), Action::requeue(ms(10))));
        assert_eq!(policy(obj.clone(), &conflict(), Arc::new(())), Action::requeue(ms(5)));

        let mut reconcile = b.reconcile(|_: Arc<ConfigMap>, _: Arc<()>| async { Ok(Action::await_change()) });
        assert_eq!(reconcile(obj.clone(), Arc::new(())).await.unwrap(), Action::await_change());
        assert_eq!(policy(obj, &sync_error, Arc::new(())), Action::requeue(ms(5)), "the success forgot them");
    }
}
