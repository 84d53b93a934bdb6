//! Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does.
//!
//! Of the processes that run the same [`LeaderElection`], one holds the Lease and runs the
//! work; the others retry every `retry_period`. The holder renews the Lease every
//! `retry_period`; if it cannot renew within `renew_deadline` it stops the work and goes
//! back to candidate. A candidate takes the Lease over once it has seen the same record
//! unchanged for `lease_duration` (measured on its own clock, so clock skew between
//! servers does not matter). Defaults are Kubernetes' (15 s, 10 s, 2 s).

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// One election: which Lease, who we are, and the timings.
#[derive(Clone)]
pub struct LeaderElection {
    client: kube::Client,
    /// Namespace of the Lease (kube-system).
    pub namespace: String,
    /// Name of the Lease (e.g. `kube-controller-manager`).
    pub name: String,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives the work up.
    pub renew_deadline: Duration,
    /// Interval between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// What a candidate saw of the Lease record last, and when.
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Instant,
}

impl LeaderElection {
    /// An election for the Lease `kube-system/<name>` with Kubernetes' default timings.
    pub fn new(client: kube::Client, name: &str, identity: &str) -> LeaderElection {
        LeaderElection {
            client,
            namespace: "kube-system".to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Runs `work()` whenever this candidate holds the Lease, until `shutdown` completes;
    /// then stops the work and releases the Lease so another candidate takes over at once.
    pub async fn run<F, Fut>(self, mut work: F, shutdown: impl Future<Output = ()>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut observed = Observed { record: None, at: Instant::now() };
        tokio::pin!(shutdown);
        loop {
            // Candidate: try until we hold the Lease.
            loop {
                if self.try_acquire_or_renew(&api, &mut observed).await {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.retry_period) => {}
                    _ = &mut shutdown => return,
                }
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            // Leader: run the work while renewals succeed.
            let lost = {
                let work = work();
                tokio::pin!(work);
                let mut last_renewal = Instant::now();
                loop {
                    tokio::select! {
                        _ = &mut work => break false,
                        _ = &mut shutdown => {
                            self.release(&api).await;
                            return;
                        }
                        _ = tokio::time::sleep(self.retry_period) => {
                            if self.try_acquire_or_renew(&api, &mut observed).await {
                                last_renewal = Instant::now();
                            } else if last_renewal.elapsed() >= self.renew_deadline
                                || observed.record.as_ref().is_some_and(|(h, _)| h.as_deref() != Some(&self.identity))
                            {
                                break true;
                            }
                        }
                    }
                }
            };
            if lost {
                tracing::warn!(lease = %self.name, identity = %self.identity, "lost the lease; work stopped");
            } else {
                tracing::warn!(lease = %self.name, "work ended while leading; releasing the lease");
                self.release(&api).await;
                return;
            }
        }
    }

    /// One attempt: creates the Lease, renews it if we hold it, or takes it over if its
    /// holder has not renewed it for `lease_duration`. True when we hold it afterwards.
    async fn try_acquire_or_renew(&self, api: &Api<Lease>, observed: &mut Observed) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = match api.get_opt(&self.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, lease = %self.name, "reading the lease failed");
                return false;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return api.create(&PostParams::default(), &lease).await.is_ok();
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        if observed.record.as_ref() != Some(&record) {
            observed.record = Some(record);
            observed.at = Instant::now();
        }
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_secs).max(0) as u64);
        if !ours && holder.is_some() && observed.at.elapsed() < held_for {
            return false;
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(now);
        match api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                let spec = written.spec.unwrap_or_default();
                observed.record = Some((spec.holder_identity, spec.renew_time));
                observed.at = Instant::now();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, lease = %self.name, "writing the lease failed");
                false
            }
        }
    }

    /// Gives the Lease up (holder cleared, duration 1 s) if we still hold it.
    async fn release(&self, api: &Api<Lease>) {
        let Ok(Some(mut lease)) = api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        if let Err(e) = api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, lease = %self.name, "releasing the lease failed");
        }
    }
}
