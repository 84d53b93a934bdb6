//! Termination messages as the kubelet makes them: a per-container-instance file mounted at
//! `terminationMessagePath` (default `/dev/termination-log`), read back (its last 4 KiB)
//! when the container exits; with `FallbackToLogsOnError`, the tail of the log (80 lines,
//! 2 KiB) when the file is empty and the container failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::runtime::cri::v1 as cri;
use crate::streaming::logs::{LogOptions, select};

/// The most of the termination file that is read (the kubelet's 4 KiB).
pub const MAX_MESSAGE_BYTES: u64 = 4096;
/// The most log lines a fallback message takes.
pub const MAX_LOG_LINES: usize = 80;
/// The most log bytes a fallback message takes (its end).
pub const MAX_LOG_BYTES: usize = 2048;

/// Where the container's termination message goes in it (the API server's default).
pub fn container_path(c: &Container) -> String {
    c.termination_message_path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/dev/termination-log".into())
}

/// Makes the empty, world-writable termination file of instance `attempt` of `c` under the
/// pod's directory and returns its mount.
pub fn prepare(data_dir: &Path, pod: &Pod, c: &Container, attempt: u32) -> Result<cri::Mount, String> {
    use std::os::unix::fs::PermissionsExt;
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let dir = data_dir.join("pods").join(uid).join("containers").join(&c.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let file: PathBuf = dir.join(format!("termination-log-{attempt}"));
    std::fs::write(&file, b"").map_err(|e| format!("creating {}: {e}", file.display()))?;
    // Any user the container runs as may write it.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("setting the mode of {}: {e}", file.display()))?;
    Ok(cri::Mount {
        container_path: container_path(c),
        host_path: file.display().to_string(),
        readonly: false,
        ..Default::default()
    })
}

/// Adds the termination message of an exited container to its CRI status message (after
/// ": " when the runtime gave one), as the kubelet does.
pub fn enrich(c: &Container, status: &mut cri::ContainerStatus) {
    if status.state != cri::ContainerState::ContainerExited as i32 {
        return;
    }
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        && status.exit_code != 0
        && status.reason != "ContainerCannotRun";
    let path = container_path(c);
    let file = status.mounts.iter().find(|m| m.container_path == path).map(|m| m.host_path.clone());
    let (mut message, check_logs) = match file.map(|f| read_tail(Path::new(&f))) {
        Some(Ok(data)) => {
            let empty = data.is_empty();
            (data, fallback && empty)
        }
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            (format!("Error on reading termination log {path}: {e}"), false)
        }
        _ => (String::new(), fallback),
    };
    if check_logs {
        message = log_tail(Path::new(&status.log_path));
    }
    if !message.is_empty() {
        if !status.message.is_empty() {
            status.message.push_str(": ");
        }
        status.message.push_str(&message);
    }
}

/// The last [`MAX_MESSAGE_BYTES`] of a file.
fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MAX_MESSAGE_BYTES)))?;
    let mut buf = Vec::new();
    f.take(MAX_MESSAGE_BYTES).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The last [`MAX_LOG_LINES`] lines of a CRI log file, at most their last [`MAX_LOG_BYTES`].
fn log_tail(path: &Path) -> String {
    let Ok(content) = std::fs::read(path) else { return String::new() };
    let options = LogOptions { tail_lines: Some(MAX_LOG_LINES), ..Default::default() };
    let text: Vec<u8> = select(&content, &options).into_iter().flat_map(|l| l.text).collect();
    let start = text.len().saturating_sub(MAX_LOG_BYTES);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exited(dir: &Path, code: i32, file: &[u8], log: &str) -> cri::ContainerStatus {
        std::fs::write(dir.join("t"), file).unwrap();
        std::fs::write(dir.join("0.log"), log).unwrap();
        cri::ContainerStatus {
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: code,
            log_path: dir.join("0.log").display().to_string(),
            mounts: vec![cri::Mount {
                container_path: "/dev/termination-log".into(),
                host_path: dir.join("t").display().to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn container(policy: &str) -> Container {
        serde_json::from_value(json!({ "name": "c", "terminationMessagePolicy": policy })).unwrap()
    }

    #[test]
    fn the_file_wins_and_the_log_is_a_fallback_on_failure_only() {
        let dir = tempfile::tempdir().unwrap();
        let log: String =
            (0..100).map(|i| format!("2024-05-01T10:00:00.{i:09}Z stdout F line {i}\n")).collect::<String>();
        let fallback = container("FallbackToLogsOnError");
        let mut s = exited(dir.path(), 1, b"from the file", &log);
        enrich(&fallback, &mut s);
        assert_eq!(s.message, "from the file");
        // Empty file, failed: the log's last 80 lines.
        let mut s = exited(dir.path(), 1, b"", &log);
        enrich(&fallback, &mut s);
        assert!(s.message.starts_with("line 20\n") && s.message.ends_with("line 99\n"), "{}", s.message);
        // Succeeded, or the File policy: no fallback.
        let mut s = exited(dir.path(), 0, b"", &log);
        enrich(&fallback, &mut s);
        assert_eq!(s.message, "");
        let mut s = exited(dir.path(), 1, b"", &log);
        enrich(&container("File"), &mut s);
        assert_eq!(s.message, "");
        // A runtime message comes first.
        let mut s = exited(dir.path(), 1, b"bye", "");
        s.message = "runtime".into();
        enrich(&container("File"), &mut s);
        assert_eq!(s.message, "runtime: bye");
    }

    #[test]
    fn messages_are_capped_at_their_ends() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!("{}END", "x".repeat(10_000));
        let mut s = exited(dir.path(), 1, big.as_bytes(), "");
        enrich(&container("File"), &mut s);
        assert_eq!(s.message.len(), MAX_MESSAGE_BYTES as usize);
        assert!(s.message.ends_with("END"));
        let long_line = format!("2024-05-01T10:00:00.000000001Z stdout F {}END\n", "y".repeat(5000));
        let mut s = exited(dir.path(), 1, b"", &long_line);
        enrich(&container("FallbackToLogsOnError"), &mut s);
        assert_eq!(s.message.len(), MAX_LOG_BYTES);
        assert!(s.message.ends_with("END\n"));
    }
}
