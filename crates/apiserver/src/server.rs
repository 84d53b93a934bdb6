//! The server: configuration, the shared state of every request, the router, and the
//! life cycle (open the store, prime the watch cache, serve, shut down cleanly).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_store::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::authn::Authenticator;
use crate::cache::Cache;
use crate::codec::{self, Output};
use crate::resources::Resources;
use crate::tls::TlsConfig;
use crate::{crd, handler, health, namespaces, openapi, services};

/// The Kubernetes version berth serves (kubectl picks its build by this minor).
pub const KUBERNETES_VERSION: &str = "v1.33.0+berth";

/// What the API server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind_address: IpAddr,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Events the watch cache keeps for watchers that start from a past resourceVersion.
    pub watch_history: usize,
    /// Serve HTTPS with this material and authenticate every request; `None` serves plain
    /// HTTP to anyone (for in-process tests only).
    pub tls: Option<TlsConfig>,
    /// Bearer tokens accepted besides client certificates.
    pub authn: Authenticator,
    /// The client certificate presented to node agents for pods' log/exec/attach/portforward.
    pub kubelet_client: Option<crate::node_proxy::KubeletClient>,
    /// How authenticated requests are authorized (`--authorization-mode`).
    pub authorization_mode: crate::authz::Modes,
    /// The audit log (`--audit-log-path`, `--audit-policy-file`); `None` records nothing.
    pub audit: Option<crate::audit::AuditConfig>,
}

impl Config {
    /// The address clients should use.
    pub fn advertise_address(&self) -> String {
        format!("{}:{}", self.bind_address, self.port)
    }
}

/// State shared by every request.
pub struct App {
    /// Configuration (with the real port once bound).
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The watch cache.
    pub cache: Arc<Cache>,
    /// Served resources.
    pub resources: Resources,
    /// True once the store is open and the cache primed.
    pub ready: AtomicBool,
    /// Flips to true when the server is shutting down (ends watches).
    pub shutdown: watch::Receiver<bool>,
    /// Serializes Service address allocation.
    pub service_alloc: tokio::sync::Mutex<()>,
    /// Namespaces this server marked for deletion lately: creates in them check the store,
    /// not the cache, which may not have seen the deletion yet (Kubernetes'
    /// NamespaceLifecycle admission keeps the same "force live lookup" list).
    pub deleted_namespaces: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The authorizer (RBAC policy from the watch cache).
    pub authorizer: Arc<crate::authz::Authorizer>,
    /// The admission webhooks (from the watch cache).
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// The ValidatingAdmissionPolicies and their bindings (from the watch cache).
    pub policies: Arc<crate::admission_policy::Policies>,
    /// The audit log, when configured.
    pub auditor: Option<Arc<crate::audit::Auditor>>,
}

impl App {
    /// Waits until the watch cache has applied every write the store has acknowledged, so a
    /// read from the cache that follows is consistent (as a quorum read would be).
    pub async fn catch_up(&self) -> crate::error::ApiResult<()> {
        let current = self.store.current_revision().await?;
        self.cache.wait_for(current, std::time::Duration::from_secs(3)).await
    }
}

/// A running API server.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    shutdown_tx: watch::Sender<bool>,
}

impl Server {
    /// Binds the port, primes the watch cache over `store` and creates the default
    /// namespaces. The server serves once [`Server::serve`] runs.
    pub async fn start(mut config: Config, store: Arc<dyn Store>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(SocketAddr::new(config.bind_address, config.port)).await?;
        config.port = listener.local_addr()?.port();
        let cache = Cache::start(store.clone(), config.watch_history).await.map_err(std::io::Error::other)?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let authorizer = Arc::new(crate::authz::Authorizer::new(config.authorization_mode.clone()));
        let auditor =
            config.audit.as_ref().map(crate::audit::Auditor::start).transpose().map_err(std::io::Error::other)?;
        let app = Arc::new(App {
            config,
            store,
            cache,
            resources: Resources::builtin(),
            ready: AtomicBool::new(false),
            shutdown,
            service_alloc: tokio::sync::Mutex::new(()),
            deleted_namespaces: std::sync::Mutex::new(std::collections::HashMap::new()),
            authorizer,
            webhooks: Arc::default(),
            policies: Arc::default(),
            auditor,
        });
        crd::load_all(&app);
        namespaces::bootstrap(&app).await.map_err(|e| std::io::Error::other(e.message))?;
        services::bootstrap(&app).await.map_err(|e| std::io::Error::other(e.message))?;
        crate::authz::bootstrap::reconcile_all(&app).await.map_err(|e| std::io::Error::other(e.message))?;
        app.catch_up().await.map_err(|e| std::io::Error::other(e.message))?;
        app.authorizer.refresh(&app.cache);
        tokio::spawn(app.authorizer.clone().follow(app.cache.clone(), app.shutdown.clone()));
        app.webhooks.refresh(&app.cache);
        tokio::spawn(app.webhooks.clone().follow(app.cache.clone(), app.shutdown.clone()));
        app.policies.refresh(&app.cache);
        tokio::spawn(app.policies.clone().follow(app.cache.clone(), app.shutdown.clone()));
        app.ready.store(true, Ordering::SeqCst);
        Ok(Server { app, listener, shutdown_tx })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.app.config.bind_address, self.app.config.port)
    }

    /// Serves until `stop` resolves; then stops accepting, ends watches, lets
    /// in-flight requests finish and closes the store.
    pub async fn serve(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let app = self.app.clone();
        let router = router(app.clone());
        let shutdown_tx = self.shutdown_tx;
        let graceful = async move {
            stop.await;
            app.ready.store(false, Ordering::SeqCst);
            let _ = shutdown_tx.send(true);
        };
        match &app_tls(&self.app)? {
            Some(tls) => crate::tls::serve(self.listener, tls.clone(), router, graceful).await,
            None => axum::serve(self.listener, router).with_graceful_shutdown(graceful).await?,
        }
        self.app.store.close().await.map_err(std::io::Error::other)?;
        Ok(())
    }
}

fn app_tls(app: &App) -> std::io::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(tls) = &app.config.tls else { return Ok(None) };
    Ok(Some(Arc::new(tls.server_config().map_err(std::io::Error::other)?)))
}

/// The HTTP routes; with TLS configured, behind authentication.
pub fn router(app: Arc<App>) -> Router {
    let authenticated = app.config.tls.is_some();
    let authn = Arc::new(app.config.authn.clone());
    authn.attach(app.cache.clone());
    let router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/healthz/{check}", get(health::healthz_one))
        .route("/livez", get(health::livez))
        .route("/livez/{check}", get(health::livez_one))
        .route("/readyz", get(health::readyz))
        .route("/readyz/{check}", get(health::readyz_one))
        .route("/version", get(version))
        .route("/cacerts", get(cacerts))
        .route("/.well-known/openid-configuration", get(crate::serviceaccount_token::openid_configuration))
        .route("/openid/v1/jwks", get(crate::serviceaccount_token::jwks))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_index))
        .route("/openapi/v3/{*path}", get(openapi::v3_group_version))
        .route("/api", axum::routing::any(handler::api))
        .route("/api/{*rest}", axum::routing::any(handler::api))
        .route("/apis", axum::routing::any(handler::api))
        .route("/apis/{*rest}", axum::routing::any(handler::api))
        .fallback(not_found)
        .with_state(app.clone());
    let router = if authenticated {
        let router = router.layer(axum::middleware::from_fn_with_state(app.clone(), crate::authz::middleware));
        // Audit sits between authentication and authorization, and only when configured.
        let router = match app.auditor {
            Some(_) => router.layer(axum::middleware::from_fn_with_state(app.clone(), crate::audit::middleware)),
            None => router,
        };
        let router = router.layer(axum::middleware::from_fn_with_state(authn, crate::authn::middleware));
        match app.auditor {
            Some(_) => {
                router.layer(axum::middleware::from_fn_with_state(app.clone(), crate::audit::failed_authentication))
            }
            None => router,
        }
    } else {
        router
    };
    router.layer(axum::middleware::from_fn(recover_panics))
}

/// A request whose handler panics gets a 500 Status instead of a dropped connection, as
/// Kubernetes' panic recovery filter answers; the panic hook has logged the panic.
async fn recover_panics(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => crate::error::ApiError::internal("a request handler panicked").into_response(),
    }
}

/// The server CA (PEM), for agents that join with a token (as k3s's `/cacerts`).
async fn cacerts(State(app): State<Arc<App>>) -> Response {
    match &app.config.tls {
        Some(tls) => {
            codec::with_type(StatusCode::OK, tls.server_ca_pem.clone().into_bytes(), "text/plain; charset=utf-8")
        }
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    crate::error::ApiError::unknown_resource().into_response()
}

pub(crate) async fn version() -> Response {
    let v = json!({
        "major": "1",
        "minor": "33",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    });
    codec::respond(StatusCode::OK, &v, Output::Json)
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_a_status() {
        async fn boom() -> Response {
            panic!("handler bug")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(version))
            .layer(axum::middleware::from_fn(recover_panics));
        let request = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = router.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("InternalError")));
        assert_eq!(router.oneshot(request("/fine")).await.unwrap().status(), StatusCode::OK);
    }
}
