//! Container lifecycle hooks (postStart, preStop) as the kubelet runs them: an `exec`
//! command in the container through CRI ExecSync (a non-zero exit fails), an `httpGet` from
//! the node to the pod IP, HTTPS without verifying the certificate (only a connection or
//! protocol error fails: the kubelet does not look at the status code of a hook's answer),
//! or a `sleep` in the agent. See
//! <https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/>.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::probes;
use crate::runtime::cri::Cri;

/// Which hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Right after the container starts.
    PostStart,
    /// Before the container is stopped.
    PreStop,
}

impl Hook {
    /// The reason of the Warning event when the hook fails.
    pub fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }
}

/// Where a hook runs: the pod (as the kubelet names it, `name_namespace(uid)`), its IP, the
/// container and its CRI id.
pub struct Target<'a> {
    /// The pod's name in the kubelet's format.
    pub pod: &'a str,
    /// The pod IP (the default host of httpGet hooks).
    pub pod_ip: Option<&'a str>,
    /// The container's spec.
    pub container: &'a Container,
    /// The container's CRI id.
    pub container_id: &'a str,
}

/// Runs `handler` in `target`, for at most `timeout`. The error is the message of the
/// kubelet's event.
pub async fn run(cri: &Cri, target: &Target<'_>, handler: &LifecycleHandler, timeout: Duration) -> Result<(), String> {
    let Target { pod, pod_ip, container, container_id } = *target;
    let for_whom = format!("for Container {:?} in Pod {pod:?}", container.name);
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let what = format!("Exec lifecycle hook ([{}]) {for_whom}", cmd.join(" "));
        let secs = timeout.as_secs().max(1) as i64;
        return match cri.exec_sync(container_id, cmd.clone(), secs).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => Err(format!(
                "{what} failed - error: command '{}' exited with {}: {}, message: {:?}",
                cmd.join(" "),
                r.exit_code,
                String::from_utf8_lossy(&r.stderr).trim(),
                String::from_utf8_lossy(&r.stdout).trim(),
            )),
            Err(e) => Err(format!("{what} failed - error: {e}")),
        };
    }
    if let Some(http) = &handler.http_get {
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let what = format!("HTTP lifecycle hook ({path}) {for_whom}");
        let headers: Vec<(String, String)> =
            http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        let host = http.host.clone().filter(|h| !h.is_empty()).or(pod_ip.map(str::to_string));
        let port = probes::port(container, &http.port);
        let https = http.scheme.as_deref() == Some("HTTPS");
        let result = match (host, port) {
            (None, _) => Err("the pod has no IP yet".to_string()),
            (_, None) => Err(format!("invalid port {:?}", http.port)),
            (Some(host), Some(port)) => {
                match tokio::time::timeout(timeout, get(&host, port, &path, &headers, https)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
                }
            }
        };
        return result.map_err(|e| format!("{what} failed - error: {e}"));
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    Err(format!("invalid lifecycle handler {for_whom}: no exec, httpGet or sleep"))
}

/// One HTTP GET (over TLS without verifying the certificate when `https`, as the kubelet);
/// any answer with a status line is a success.
async fn get(host: &str, port: u16, path: &str, headers: &[(String, String)], https: bool) -> Result<(), String> {
    let stream = TcpStream::connect((host, port)).await.map_err(|e| format!("dial {host}:{port}: {e}"))?;
    if https {
        let tls = probes::connect_tls(stream, host).await.map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        return answer(tls, host, port, path, headers).await;
    }
    answer(stream, host, port, path, headers).await
}

async fn answer<S>(mut stream: S, host: &str, port: u16, path: &str, headers: &[(String, String)]) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    probes::http_status(&head[..n]).map(|_| ()).ok_or_else(|| "malformed HTTP response".to_string())
}

/// The time left for the container's stop after a preStop hook that took `spent` of
/// `grace`: the kubelet gives at least 2 s.
pub fn remaining_grace(grace: i64, spent: Duration) -> i64 {
    (grace - spent.as_secs() as i64).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(v: serde_json::Value) -> LifecycleHandler {
        serde_json::from_value(v).unwrap()
    }

    fn container() -> Container {
        serde_json::from_value(serde_json::json!({ "name": "c", "ports": [{ "name": "web", "containerPort": 1 }] }))
            .unwrap()
    }

    fn target<'a>(c: &'a Container, ip: Option<&'a str>) -> Target<'a> {
        Target { pod: "p_ns(u)", pod_ip: ip, container: c, container_id: "id" }
    }

    /// A CRI client that is never called (its socket does not exist).
    async fn no_cri() -> Cri {
        let dir = tempfile::tempdir().unwrap();
        Cri::connect_lazy(&dir.path().join("none.sock"))
    }

    #[tokio::test]
    async fn http_hooks_succeed_on_any_answer_and_fail_on_no_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.0 500 Internal Server Error\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let cri = no_cri().await;
        let h = handler(serde_json::json!({ "httpGet": { "path": "/hook", "port": port,
            "httpHeaders": [{ "name": "X-Why", "value": "start" }] } }));
        let t = Duration::from_secs(5);
        let c = container();
        let local = target(&c, Some("127.0.0.1"));
        run(&cri, &local, &h, t).await.unwrap();
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /hook HTTP/1.0\r\n"), "{request}");
        assert!(request.contains("X-Why: start\r\n"), "{request}");
        // Nothing listens any more.
        let err = run(&cri, &local, &h, t).await.unwrap_err();
        assert!(
            err.starts_with("HTTP lifecycle hook (/hook) for Container \"c\" in Pod \"p_ns(u)\" failed - error: dial"),
            "{err}"
        );
        let named = handler(serde_json::json!({ "httpGet": { "port": "nope" } }));
        let err = run(&cri, &local, &named, t).await.unwrap_err();
        assert!(err.contains("invalid port"), "{err}");
        let err = run(&cri, &target(&c, None), &h, t).await.unwrap_err();
        assert!(err.contains("no IP"), "{err}");
        let err = run(&cri, &local, &LifecycleHandler::default(), t).await.unwrap_err();
        assert!(err.contains("invalid lifecycle handler"), "{err}");
    }

    #[tokio::test]
    async fn https_hooks_do_not_verify_the_certificate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cri = no_cri().await;
        let h = handler(serde_json::json!({ "httpGet": { "path": "/stop", "port": port, "scheme": "HTTPS" } }));
        let c = container();
        let local = target(&c, Some("127.0.0.1"));
        let answer = b"HTTP/1.1 500 Internal Server Error\r\n\r\n";
        let (line, result) =
            tokio::join!(super::probes::tests::serve_tls_once(listener, answer), run(&cri, &local, &h, TIMEOUT));
        assert_eq!(line, "GET /stop HTTP/1.0");
        assert_eq!(result, Ok(()), "any answer is a success");
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_within_the_timeout() {
        let cri = no_cri().await;
        let h = handler(serde_json::json!({ "sleep": { "seconds": 5 } }));
        let c = container();
        let start = tokio::time::Instant::now();
        run(&cri, &target(&c, None), &h, Duration::from_secs(30)).await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 5);
        let start = tokio::time::Instant::now();
        run(&cri, &target(&c, None), &h, Duration::from_secs(2)).await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 2, "cut short by the grace period");
    }

    #[test]
    fn the_stop_after_a_pre_stop_hook_gets_what_is_left_at_least_2s() {
        assert_eq!(remaining_grace(30, Duration::from_secs(10)), 20);
        assert_eq!(remaining_grace(3, Duration::from_secs(10)), 2);
        assert_eq!(remaining_grace(0, Duration::ZERO), 2);
    }
}
