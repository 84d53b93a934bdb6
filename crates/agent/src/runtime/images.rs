//! Images built here, with no registry: single-layer OCI image layouts from Debian's static
//! binaries (busybox-static for a busybox image, catatonit for the pause image), tarred
//! and imported into containerd's `k8s.io` namespace with `ctr images import`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::process::Command;

use super::{Error, Result, io_err};

/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";
/// Debian's catatonit.
pub const CATATONIT: &str = "/usr/bin/catatonit";
/// The busybox image every node has.
pub const BUSYBOX_IMAGE: &str = "localhost/busybox:1";

/// The busybox applets linked into the busybox image's /bin.
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "wget", "cat", "echo", "ls", "ps", "env", "true", "false", "id", "hostname", "kill",
    "mkdir", "rm", "touch", "head", "tail", "grep", "dd", "nc", "ip", "ifconfig", "date", "printenv", "test", "[",
    "seq", "yes", "pwd", "uname", "mount", "df", "free", "top", "vi", "wc", "sed", "awk", "tr", "cut", "sort",
    // kubectl cp runs tar in the container; stty shows a tty's size.
    "tar", "stty", "cp", "mv", "ln", "chmod",
];

/// What goes into an image built here.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The image reference, e.g. `localhost/busybox:1`.
    pub name: String,
    /// Files copied in: (host path, path in the image), made executable.
    pub binaries: Vec<(PathBuf, String)>,
    /// Symlinks: (path in the image, target).
    pub links: Vec<(String, String)>,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The default command.
    pub cmd: Vec<String>,
}

impl ImageSpec {
    /// busybox with its common applets; runs `sh` by default.
    pub fn busybox(name: &str) -> ImageSpec {
        ImageSpec {
            name: name.to_string(),
            binaries: vec![(PathBuf::from(BUSYBOX), "bin/busybox".into())],
            links: APPLETS.iter().map(|a| (format!("bin/{a}"), "busybox".to_string())).collect(),
            entrypoint: vec![],
            cmd: vec!["sh".into()],
        }
    }

    /// The pause image: catatonit in pause mode.
    pub fn pause(name: &str) -> ImageSpec {
        ImageSpec {
            name: name.to_string(),
            binaries: vec![(PathBuf::from(CATATONIT), "catatonit".into())],
            links: vec![],
            entrypoint: vec!["/catatonit".into(), "-P".into()],
            cmd: vec![],
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(cmd: &mut Command, program: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Command { program: program.into(), message: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            program: program.into(),
            message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// The OCI config JSON of an image whose one layer has diff id `layer_digest`.
pub fn image_config(spec: &ImageSpec, layer_digest: &str) -> serde_json::Value {
    json!({
        "architecture": crate::hollow::config::go_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": if spec.entrypoint.is_empty() { serde_json::Value::Null } else { json!(spec.entrypoint) },
            "Cmd": if spec.cmd.is_empty() { serde_json::Value::Null } else { json!(spec.cmd) },
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "berth image build" }],
    })
}

/// Builds `spec` as an OCI image layout tarred into `out` (a new file); `work` is a scratch dir.
pub async fn build(spec: &ImageSpec, work: &Path, out: &Path) -> Result<()> {
    let rootfs = work.join("rootfs");
    let layout = work.join("layout");
    let blobs = layout.join("blobs/sha256");
    for dir in [rootfs.join("bin"), rootfs.join("etc"), rootfs.join("tmp"), rootfs.join("proc"), blobs.clone()] {
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    }
    for (from, to) in &spec.binaries {
        let dest = rootfs.join(to);
        std::fs::copy(from, &dest).map_err(io_err("copying into the image", from))?;
    }
    for (link, target) in &spec.links {
        let path = rootfs.join(link);
        symlink(target, &path).map_err(io_err("linking", &path))?;
    }
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ];
    for (name, body) in files {
        let path = rootfs.join(name);
        std::fs::write(&path, body).map_err(io_err("writing", &path))?;
    }
    let layer = work.join("layer.tar");
    run(
        Command::new("tar")
            .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer)
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
        "tar",
    )
    .await?;
    let layer_bytes = std::fs::read(&layer).map_err(io_err("reading", &layer))?;
    let layer_digest = sha256_hex(&layer_bytes);
    let layer_path = blobs.join(&layer_digest);
    std::fs::rename(&layer, &layer_path).map_err(io_err("moving", &layer_path))?;
    let write_blob = |bytes: Vec<u8>| -> Result<(String, usize)> {
        let digest = sha256_hex(&bytes);
        let path = blobs.join(&digest);
        std::fs::write(&path, &bytes).map_err(io_err("writing", &path))?;
        Ok((digest, bytes.len()))
    };
    let config = serde_json::to_vec(&image_config(spec, &layer_digest)).expect("json");
    let (config_digest, config_size) = write_blob(config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"), "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": format!("sha256:{layer_digest}"), "size": layer_bytes.len() }],
    });
    let (manifest_digest, manifest_size) = write_blob(serde_json::to_vec(&manifest).expect("json"))?;
    let tag = spec.name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "annotations": { "io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag },
        }],
    });
    let index_path = layout.join("index.json");
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).map_err(io_err("writing", &index_path))?;
    let oci_layout = layout.join("oci-layout");
    std::fs::write(&oci_layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("writing", &oci_layout))?;
    run(
        Command::new("tar")
            .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(out)
            .arg("-C")
            .arg(&layout)
            .arg("."),
        "tar",
    )
    .await
}

/// Imports an image archive (OCI layout or docker archive) into containerd's `k8s.io` namespace.
pub async fn import(socket: &Path, archive: &Path) -> Result<()> {
    run(
        Command::new("ctr")
            .arg("-a")
            .arg(socket)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs"])
            .arg(archive),
        "ctr images import",
    )
    .await
}

/// Builds and imports `spec` (scratch files under `work`, removed afterwards).
pub async fn build_and_import(spec: &ImageSpec, socket: &Path, work: &Path) -> Result<()> {
    let dir = work.join(format!("build-{}", spec.name.replace(['/', ':'], "_")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let out = dir.join("image.tar");
    let result = async {
        build(spec, &dir, &out).await?;
        import(socket, &out).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The node's own images (pause and busybox), built and imported.
pub async fn import_builtin(socket: &Path, work: &Path) -> Result<()> {
    build_and_import(&ImageSpec::pause(super::containerd::PAUSE_IMAGE), socket, work).await?;
    build_and_import(&ImageSpec::busybox(BUSYBOX_IMAGE), socket, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_layer_and_entrypoint() {
        let c = image_config(&ImageSpec::pause("localhost/pause:1"), "abc");
        assert_eq!(c["rootfs"]["diff_ids"][0], "sha256:abc");
        assert_eq!(c["config"]["Entrypoint"], json!(["/catatonit", "-P"]));
        assert!(c["config"]["Cmd"].is_null());
        let b = image_config(&ImageSpec::busybox("localhost/busybox:1"), "abc");
        assert_eq!(b["config"]["Cmd"], json!(["sh"]));
        assert!(b["config"]["Entrypoint"].is_null());
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
