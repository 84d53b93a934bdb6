//! The API server's port while the server is still starting (waiting for its datastore,
//! e.g. etcd not reachable yet): `/livez` and `/version` answer, `/readyz` and
//! `/healthz` say what is missing (HTTP 500, as Kubernetes' failed health checks), and
//! every other request gets a 503 `ServiceUnavailable` Status, so clients and load
//! balancers see a server that is up but not ready instead of a refused connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::codec;
use crate::error::ApiError;
use crate::tls::TlsConfig;

/// A listener answering while the server starts; [`Starting::stop`] frees its port for
/// the real server.
pub struct Starting {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Starting {
    /// Binds `bind:port` (0 picks a free port) and answers there, over TLS when given.
    /// `waiting_for` names what the server waits for, in `/readyz`'s answer.
    pub async fn bind(
        bind: IpAddr,
        port: u16,
        tls: Option<&TlsConfig>,
        waiting_for: &str,
    ) -> std::io::Result<Starting> {
        let listener = TcpListener::bind(SocketAddr::new(bind, port)).await?;
        let addr = listener.local_addr()?;
        let router = router(waiting_for);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = match tls {
            Some(tls) => {
                let config = Arc::new(tls.server_config().map_err(std::io::Error::other)?);
                tokio::spawn(crate::tls::serve(listener, config, router, stopped))
            }
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, router).with_graceful_shutdown(stopped).await;
            }),
        };
        Ok(Starting { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and frees the port; returns it.
    pub async fn stop(self) -> u16 {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.addr.port()
    }
}

fn router(waiting_for: &str) -> Router {
    let check = format!("[-]{waiting_for} failed: not reachable yet\nreadyz check failed\n");
    let health = check.replace("readyz", "healthz");
    let unavailable = format!("the server is starting: waiting for {waiting_for}");
    Router::new()
        .route("/livez", get(|| async { codec::text(StatusCode::OK, "ok".into()) }))
        .route("/readyz", get(move || async move { codec::text(StatusCode::INTERNAL_SERVER_ERROR, check) }))
        .route("/healthz", get(move || async move { codec::text(StatusCode::INTERNAL_SERVER_ERROR, health) }))
        .route("/version", get(crate::server::version))
        .fallback(move || async move { ApiError::new(503, "ServiceUnavailable", unavailable).into_response() })
}
