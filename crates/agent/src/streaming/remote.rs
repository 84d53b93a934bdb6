//! The endpoint's handlers: container logs, exec/attach (WebSocket to the client, SPDY to
//! containerd's streaming server) and port-forward (SPDY from the client, TCP to the pod).
// A refusal is the HTTP answer itself: the error variant is a whole response by design.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::logs::{self, LogOptions, Parser};
use super::spdy::{self, Session};
use super::{Body, pod, text};
use crate::node::{Shared, containers};
use crate::runtime::cri::v1 as cri;

type Answer = Result<Response<Body>, Response<Body>>;

fn bad(message: impl Into<String>) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, message)
}

fn internal(message: impl Into<String>) -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The status of `container` in `pod`, as the agent last wrote it.
fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let s = pod.status.as_ref()?;
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .chain(s.ephemeral_container_statuses.iter())
        .flatten()
        .find(|c| c.name == container)
}

/// GET /containerLogs/{ns}/{pod}/{container}.
pub(crate) async fn container_logs(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    container: &str,
    query: &[(String, String)],
) -> Answer {
    let options = LogOptions::parse(query, Timestamp::now()).map_err(|e| bad(e.to_string()))?;
    let pod = pod(shared, ns, name).await?;
    let dir = containers::log_directory(&shared.config.data_dir, &pod);
    let attempts = logs::attempts(Path::new(&dir), container);
    let chosen =
        if options.previous {
            attempts.len().checked_sub(2).map(|i| attempts[i].clone()).ok_or_else(|| {
                bad(format!("previous terminated container \"{container}\" in pod \"{name}\" not found"))
            })?
        } else {
            attempts.last().cloned().ok_or_else(|| {
                bad(format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"))
            })?
        };
    let (attempt, path) = chosen;
    let content = tokio::fs::read(&path).await.map_err(|e| internal(format!("reading {}: {e}", path.display())))?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let follow = options.follow && !options.previous;
    let (shared, ns, name, container) = (shared.clone(), ns.to_string(), name.to_string(), container.to_string());
    tokio::spawn(async move {
        let mut budget = options.limit_bytes.unwrap_or(usize::MAX);
        let mut send = async |line: &logs::LogLine| -> bool {
            if budget == 0 {
                return false;
            }
            let mut out = options.render(line);
            out.truncate(budget);
            budget -= out.len();
            tx.send(Bytes::from(out)).await.is_ok() && budget > 0
        };
        for line in logs::select(&content, &options) {
            if !send(&line).await {
                return;
            }
        }
        if !follow {
            return;
        }
        // The file's complete records were sent; a trailing partial one is re-read.
        let mut offset = content.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        let mut parser = Parser::default();
        let mut checked = tokio::time::Instant::now();
        loop {
            let mut grew = false;
            if let Ok(mut f) = tokio::fs::File::open(&path).await
                && tokio::io::AsyncSeekExt::seek(&mut f, std::io::SeekFrom::Start(offset)).await.is_ok()
            {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).await.is_ok() && !buf.is_empty() {
                    offset += buf.len() as u64;
                    grew = true;
                    for line in parser.feed(&buf).iter().filter(|l| options.keeps(l)) {
                        if !send(line).await {
                            return;
                        }
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            if !grew && checked.elapsed() > Duration::from_secs(1) {
                checked = tokio::time::Instant::now();
                let running = match pod_now(&shared, &ns, &name).await {
                    Some(p) => status_of(&p, &container).is_some_and(|s| {
                        s.state.as_ref().is_some_and(|st| st.running.is_some()) && s.restart_count as u32 == attempt
                    }),
                    None => false,
                };
                if !running {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let body = http_body_util::StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(hyper::body::Frame::data(b)), rx))
    }));
    let mut r = Response::new(http_body_util::BodyExt::boxed(body));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(r)
}

async fn pod_now(shared: &Shared, ns: &str, name: &str) -> Option<Pod> {
    let api: kube::Api<Pod> = kube::Api::namespaced(shared.client.clone(), ns);
    api.get_opt(name).await.ok().flatten()
}

/// The running CRI container `container` of `pod` (its latest attempt).
async fn running_container(shared: &Shared, pod: &Pod, container: &str) -> Result<String, Response<Body>> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let sandboxes = shared.cri.list_pod_sandboxes().await.map_err(|e| internal(e.to_string()))?;
    let mut found: Option<(u32, String)> = None;
    for s in sandboxes.iter().filter(|s| s.labels.get("io.kubernetes.pod.uid") == Some(&uid)) {
        for c in shared.cri.list_containers(&s.id).await.map_err(|e| internal(e.to_string()))? {
            let Some(m) = &c.metadata else { continue };
            if m.name == container
                && c.state == cri::ContainerState::ContainerRunning as i32
                && found.as_ref().is_none_or(|(a, _)| m.attempt >= *a)
            {
                found = Some((m.attempt, c.id.clone()));
            }
        }
    }
    found.map(|(_, id)| id).ok_or_else(|| {
        bad(format!("container {container} is not running in pod {}", pod.metadata.name.clone().unwrap_or_default()))
    })
}

fn flag(query: &[(String, String)], name: &str) -> bool {
    query.iter().any(|(k, v)| k == name && (v == "true" || v == "1"))
}

/// The WebSocket subprotocol to speak, of those the client offers.
fn pick_protocol(req: &Request<Incoming>, supported: &[&str]) -> Option<String> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    supported.iter().find(|s| offered.iter().any(|o| o == *s)).map(|s| s.to_string())
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The 101 answer accepting a WebSocket with `protocol`.
fn websocket_accept(req: &Request<Incoming>, protocol: &str) -> Result<Response<Body>, Response<Body>> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| bad("missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(super::full(Bytes::new()))
        .map_err(|e| internal(e.to_string()))
}

/// GET/POST /exec/{ns}/{pod}/{container} and /attach/...: a WebSocket `v5.channel.k8s.io`
/// (or v4) session relayed to containerd's streaming server over SPDY.
pub(crate) async fn exec(
    shared: Arc<Shared>,
    ns: &str,
    name: &str,
    container: &str,
    query: &[(String, String)],
    attach: bool,
    mut req: Request<Incoming>,
) -> Answer {
    if !is_websocket(&req) {
        return Err(bad("Upgrade request required: only WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) is served"));
    }
    let protocol = pick_protocol(&req, &["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .ok_or_else(|| bad("no supported WebSocket subprotocol: want v5.channel.k8s.io or v4.channel.k8s.io"))?;
    let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let tty = flag(query, "tty");
    let opts = Streams {
        stdin: flag(query, "stdin"),
        stdout: flag(query, "stdout"),
        stderr: flag(query, "stderr") && !tty,
        tty,
    };
    if !attach && command.is_empty() {
        return Err(bad("you must specify at least 1 command"));
    }
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(bad("you must specify at least one of stdin, stdout, stderr"));
    }
    let pod = pod(&shared, ns, name).await?;
    let id = running_container(&shared, &pod, container).await?;
    let url = if attach {
        let r =
            cri::AttachRequest { container_id: id, stdin: opts.stdin, tty, stdout: opts.stdout, stderr: opts.stderr };
        shared.cri.attach(r).await
    } else {
        let r = cri::ExecRequest {
            container_id: id,
            cmd: command,
            tty,
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        shared.cri.exec(r).await
    }
    .map_err(|e| internal(e.to_string()))?;
    let answer = websocket_accept(&req, &protocol)?;
    let upgrade = hyper::upgrade::on(&mut req);
    let v5 = protocol.starts_with("v5");
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay_remote_command(ws, &url, opts, v5).await;
    });
    Ok(answer)
}

#[derive(Debug, Clone, Copy)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// Opens the SPDY connection to a CRI streaming URL with `protocol`.
async fn spdy_connect(url: &str, protocol: &str) -> std::io::Result<tokio::net::TcpStream> {
    let uri: http::Uri = url.parse().map_err(std::io::Error::other)?;
    let host = uri.host().ok_or_else(|| std::io::Error::other("streaming URL without a host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut tcp = tokio::net::TcpStream::connect((host, port)).await?;
    let _ = tcp.set_nodelay(true);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    // The response head, one byte at a time so nothing of the SPDY stream is read.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err(std::io::Error::other("response head too long"));
        }
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(format!("streaming server refused the upgrade: {}", head.trim())));
    }
    Ok(tcp)
}

/// A close frame with status 1000 (Go's WebSocket client treats a close without one as an error).
fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

fn failure_status(message: &str) -> Vec<u8> {
    serde_json::json!({ "metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
                        "code": 500 })
    .to_string()
    .into_bytes()
}

async fn relay_remote_command<S>(ws: WebSocketStream<S>, url: &str, opts: Streams, v5: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let frame = |ch: u8, data: &[u8]| {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(ch);
        v.extend_from_slice(data);
        Message::Binary(v.into())
    };
    let session = match spdy_connect(url, "v4.channel.k8s.io").await {
        Ok(tcp) => Session::start(tcp, true),
        Err(e) => {
            let _ = out_tx.send(frame(3, &failure_status(&e.to_string())));
            let _ = out_tx.send(normal_close());
            let _ = writer.await;
            return;
        }
    };
    let open = async |kind: &str| session.open(vec![("streamtype".into(), kind.into())]).await;
    let opened = async {
        let error = open("error").await?;
        let stdin = if opts.stdin { Some(open("stdin").await?) } else { None };
        let stdout = if opts.stdout { Some(open("stdout").await?) } else { None };
        let stderr = if opts.stderr { Some(open("stderr").await?) } else { None };
        let resize = if opts.tty { Some(open("resize").await?) } else { None };
        Ok::<_, spdy::SpdyError>((error, stdin, stdout, stderr, resize))
    };
    let (mut error, stdin, stdout, stderr, resize) = match opened.await {
        Ok(s) => s,
        Err(e) => {
            let _ = out_tx.send(frame(3, &failure_status(&e.to_string())));
            let _ = out_tx.send(normal_close());
            let _ = writer.await;
            session.close();
            return;
        }
    };
    // Client → container: stdin, resize, and (v5) the close of stdin.
    let (stdin_w, resize_w) = (stdin.map(|s| s.writer), resize.map(|s| s.writer));
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else { continue };
            match ch {
                0 => {
                    if let Some(w) = &stdin_w {
                        w.send(Bytes::copy_from_slice(rest));
                    }
                }
                4 => {
                    if let Some(w) = &resize_w {
                        w.send(Bytes::copy_from_slice(rest));
                    }
                }
                255 if v5 && rest.first() == Some(&0) => {
                    if let Some(w) = &stdin_w {
                        w.finish();
                    }
                }
                _ => {}
            }
        }
    });
    // Container → client: stdout, stderr, then the status on the error channel.
    let pump = |s: Option<spdy::Stream>, ch: u8| {
        let out = out_tx.clone();
        tokio::spawn(async move {
            if let Some(mut s) = s {
                while let Some(data) = s.rx.recv().await {
                    let mut v = Vec::with_capacity(data.len() + 1);
                    v.push(ch);
                    v.extend_from_slice(&data);
                    if out.send(Message::Binary(v.into())).is_err() {
                        break;
                    }
                }
            }
        })
    };
    let (o, e) = (pump(stdout, 1), pump(stderr, 2));
    let mut status = Vec::new();
    while let Some(d) = error.rx.recv().await {
        status.extend_from_slice(&d);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = o.await;
        let _ = e.await;
    })
    .await;
    if !status.is_empty() {
        let _ = out_tx.send(frame(3, &status));
    }
    let _ = out_tx.send(normal_close());
    drop(out_tx);
    let _ = writer.await;
    input.abort();
    session.close();
}

/// GET/POST /portForward/{ns}/{pod}: SPDY (`portforward.k8s.io`) over WebSocket
/// (`SPDY/3.1+portforward.k8s.io`) or a plain SPDY/3.1 upgrade; each data/error stream pair
/// (by `requestid`) is a TCP connection to the pod's IP on the stream's `port`.
pub(crate) async fn port_forward(shared: &Arc<Shared>, ns: &str, name: &str, mut req: Request<Incoming>) -> Answer {
    let pod = pod(shared, ns, name).await?;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| bad(format!("pod {name} has no IP address yet")))?;
    let upgrade_header =
        req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    if is_websocket(&req) {
        let protocol = pick_protocol(&req, &["SPDY/3.1+portforward.k8s.io"])
            .ok_or_else(|| bad("no supported WebSocket subprotocol: want SPDY/3.1+portforward.k8s.io"))?;
        let answer = websocket_accept(&req, &protocol)?;
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let (ours, theirs) = tokio::io::duplex(256 << 10);
            tokio::spawn(bridge_websocket(ws, ours));
            serve_port_forward(Session::start(theirs, false), ip).await;
        });
        return Ok(answer);
    }
    if upgrade_header.starts_with("spdy/3.1") {
        let offered = req
            .headers()
            .get_all("x-stream-protocol-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
            .collect::<Vec<_>>();
        if !offered.is_empty() && !offered.iter().any(|p| p == "portforward.k8s.io") {
            return Err(text(StatusCode::FORBIDDEN, "no supported protocol: want portforward.k8s.io"));
        }
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            serve_port_forward(Session::start(TokioIo::new(upgraded), false), ip).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", "portforward.k8s.io")
            .body(super::full(Bytes::new()))
            .map_err(|e| internal(e.to_string()));
    }
    Err(bad("Upgrade request required"))
}

/// Copies between WebSocket binary messages and a byte stream (SPDY tunnelled in WebSocket).
async fn bridge_websocket<S>(ws: WebSocketStream<S>, io: tokio::io::DuplexStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (mut r, mut w) = tokio::io::split(io);
    let down = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let up = async move {
        while let Some(Ok(msg)) = source.next().await {
            let b = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(down, up);
}

async fn serve_port_forward(mut session: Session, ip: String) {
    let mut pending: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    while let Some(stream) = session.incoming.recv().await {
        let kind = spdy::header(&stream.headers, "streamtype").unwrap_or_default().to_string();
        let request = spdy::header(&stream.headers, "requestid").unwrap_or_default().to_string();
        let entry = pending.entry(request.clone()).or_default();
        match kind.as_str() {
            "error" => entry.0 = Some(stream),
            "data" => entry.1 = Some(stream),
            _ => {
                stream.writer.reset();
                continue;
            }
        }
        if entry.0.is_some()
            && entry.1.is_some()
            && let Some((Some(error), Some(data))) = pending.remove(&request)
        {
            tokio::spawn(forward_one(ip.clone(), error, data));
        }
    }
}

async fn forward_one(ip: String, error: spdy::Stream, mut data: spdy::Stream) {
    let port: Option<u16> = spdy::header(&data.headers, "port").and_then(|p| p.parse().ok()).filter(|p| *p > 0);
    let Some(port) = port else {
        error.writer.send(Bytes::from_static(b"invalid port"));
        error.writer.finish();
        data.writer.finish();
        return;
    };
    let tcp = match tokio::net::TcpStream::connect((ip.as_str(), port)).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {ip}: {e}");
            error.writer.send(Bytes::from(msg));
            error.writer.finish();
            data.writer.finish();
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let writer = data.writer.clone();
    let down = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !writer.send(Bytes::copy_from_slice(&buf[..n])) {
                        break;
                    }
                }
            }
        }
        writer.finish();
    };
    let up = async move {
        while let Some(d) = data.rx.recv().await {
            if w.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(down, up);
    error.writer.finish();
}
