//! A minimal keep-alive HTTP/1.1 client: one TCP connection per [`Conn`], so a benchmark
//! with N clients holds exactly N connections to the server.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection to the API server.
pub(crate) struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let sender = handshake(addr).await?;
        Ok(Conn { addr, sender })
    }

    /// Sends one request and returns the response head with its streaming body.
    /// Reconnects once if the server closed the idle connection.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Response<Incoming>> {
        if self.sender.ready().await.is_err() {
            self.sender = handshake(self.addr).await?;
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).context("building a request")?;
        self.sender.send_request(req).await.with_context(|| format!("{method} {path}"))
    }

    /// Sends one request, reads the whole body, and fails unless the status is a success.
    pub(crate) async fn call(&mut self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call_any(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(400)]));
        }
        Ok(bytes)
    }

    /// Sends one request and reads the whole body, whatever the status.
    pub(crate) async fn call_any(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the body of {method} {path}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

async fn handshake(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors then surface on the sender.
        let _ = conn.await;
    });
    Ok(sender)
}
