//! The ConfigMaps and Secrets the node's pods read (volumes, env), fetched once and shared
//! between pods for [`TTL`]: fifty pods starting at once that mount `kube-root-ca.crt` make
//! one GET, not fifty, and their periodic volume refreshes share one too. Concurrent reads
//! of one object wait on a single request; a failed request is not kept (the next read
//! tries again), a missing object is (as `None`, for the same short time).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a fetched object is served to other readers. Short next to the 10 s volume
/// resync, so an update still reaches mounted files within about that time.
pub const TTL: Duration = Duration::from_secs(2);

/// One fetch of an object: when it answered, and the object (None: not found).
struct Fetched<K> {
    at: Instant,
    object: Option<Arc<K>>,
}

type Slot<K> = Arc<OnceCell<Fetched<K>>>;

/// Namespaced objects of one kind by (namespace, name).
struct Objects<K> {
    entries: Mutex<HashMap<(String, String), Slot<K>>>,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K> Objects<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    /// The slot to read `(ns, name)` from: the current one while fresh, else a new one.
    /// Expired slots of other objects are dropped on the way.
    fn slot(&self, ns: &str, name: &str, ttl: Duration) -> Slot<K> {
        let fresh = |s: &Slot<K>| s.get().is_none_or(|f| f.at.elapsed() < ttl);
        let mut entries = self.entries.lock().expect("sources lock");
        entries.retain(|_, s| fresh(s));
        entries.entry((ns.to_string(), name.to_string())).or_default().clone()
    }

    async fn get(&self, client: &kube::Client, ns: &str, name: &str, ttl: Duration) -> kube::Result<Option<Arc<K>>> {
        let slot = self.slot(ns, name, ttl);
        let fetched = slot
            .get_or_try_init(|| async {
                let object = Api::<K>::namespaced(client.clone(), ns).get_opt(name).await?;
                Ok::<_, kube::Error>(Fetched { at: Instant::now(), object: object.map(Arc::new) })
            })
            .await?;
        Ok(fetched.object.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("sources lock").len()
    }
}

/// The shared reader of ConfigMaps and Secrets.
pub struct Sources {
    client: kube::Client,
    ttl: Duration,
    config_maps: Objects<ConfigMap>,
    secrets: Objects<Secret>,
}

impl Sources {
    /// A reader over `client` keeping objects for [`TTL`].
    pub fn new(client: kube::Client) -> Sources {
        Sources::with_ttl(client, TTL)
    }

    /// A reader keeping objects for `ttl`.
    pub fn with_ttl(client: kube::Client, ttl: Duration) -> Sources {
        Sources { client, ttl, config_maps: Objects::default(), secrets: Objects::default() }
    }

    /// The ConfigMap `ns/name`; `None` when it does not exist.
    pub async fn config_map(&self, ns: &str, name: &str) -> kube::Result<Option<Arc<ConfigMap>>> {
        self.config_maps.get(&self.client, ns, name, self.ttl).await
    }

    /// The Secret `ns/name`; `None` when it does not exist.
    pub async fn secret(&self, ns: &str, name: &str) -> kube::Result<Option<Arc<Secret>>> {
        self.secrets.get(&self.client, ns, name, self.ttl).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A client whose every request is answered by `answer`, counting the requests.
    fn client(calls: Arc<AtomicUsize>, answer: fn(&str) -> (u16, String)) -> kube::Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Let concurrent readers pile up on the one request in flight.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (code, body) = answer(req.uri().path());
                let body = http_body_util::Full::new(bytes::Bytes::from(body));
                let resp = http::Response::builder().status(code).body(body);
                Ok::<_, std::convert::Infallible>(resp.expect("a response"))
            }
        });
        kube::Client::new(service, "default")
    }

    fn config_map(path: &str) -> (u16, String) {
        let name = path.rsplit('/').next().unwrap_or_default();
        if name == "missing" {
            let status = serde_json::json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found" });
            return (404, status.to_string());
        }
        let cm = serde_json::json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": "ns" }, "data": { "k": "v" } });
        (200, cm.to_string())
    }

    #[tokio::test]
    async fn concurrent_reads_of_one_object_make_one_request() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sources = Sources::new(client(calls.clone(), config_map));
        let reads = (0..20).map(|_| sources.config_map("ns", "ca"));
        for got in futures::future::join_all(reads).await {
            let cm = got.expect("read").expect("present");
            assert_eq!(cm.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("v"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another object is another request; a missing one reads as None.
        assert!(sources.config_map("ns", "missing").await.expect("read").is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn objects_are_fetched_again_after_the_ttl_and_errors_are_not_kept() {
        let calls = Arc::new(AtomicUsize::new(0));
        let sources = Sources::with_ttl(client(calls.clone(), config_map), Duration::from_secs(2));
        sources.config_map("ns", "a").await.expect("read");
        sources.config_map("ns", "a").await.expect("read");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        sources.config_map("ns", "a").await.expect("read");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(sources.config_maps.len(), 1, "expired slots are dropped");

        let failing = Arc::new(AtomicUsize::new(0));
        let sources = Sources::new(client(failing.clone(), |_| (500, "{}".into())));
        assert!(sources.secret("ns", "s").await.is_err());
        assert!(sources.secret("ns", "s").await.is_err());
        assert_eq!(failing.load(Ordering::SeqCst), 2, "a failed read is retried, not served from the cache");
    }
}
