//! The container runtime under a real node: containerd as a child process ([`containerd`]),
//! its CRI API over the unix socket ([`cri`]), locally built images ([`images`]) and the
//! node's CNI network config ([`cni`]). Only this module speaks CRI.

pub mod cni;
pub mod containerd;
pub mod cri;
pub mod images;

use std::path::PathBuf;

/// The Debian packages the runtime needs, as one `apt-get install` line names them.
pub const APT_PACKAGES: &str = "containerd runc containernetworking-plugins busybox-static catatonit";

/// Why the runtime could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// System programs the runtime needs are missing.
    #[error("missing {missing}: install them with `apt-get install {APT_PACKAGES}`")]
    MissingPackages {
        /// The missing programs, comma-separated.
        missing: String,
    },
    /// A file or directory could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program (containerd, ctr, tar) failed.
    #[error("{program} failed: {message}")]
    Command {
        /// The program.
        program: String,
        /// Its error output or exit status.
        message: String,
    },
    /// containerd did not open its socket in time.
    #[error("containerd did not answer on {socket} within {seconds} s (its log: {log})")]
    NotReady {
        /// The socket waited for.
        socket: PathBuf,
        /// How long.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
    },
    /// Connecting to the CRI socket failed.
    #[error("connecting to the CRI socket {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call failed.
    #[error("CRI {call}: {status}")]
    Cri {
        /// The call.
        call: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// A pod CIDR that cannot be used for the node's bridge.
    #[error("invalid pod CIDR {0:?}: expected an IPv4 a.b.c.d/n with n between 8 and 30")]
    Cidr(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An IO error on `path` while doing `what`.
pub(crate) fn io_err(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// Checks that the programs the runtime runs are installed; the error names the apt packages.
pub fn check_packages() -> Result<()> {
    check_packages_with(|p| std::path::Path::new(p).exists())
}

/// [`check_packages`] with `exists` telling which files are there.
fn check_packages_with(exists: impl Fn(&str) -> bool) -> Result<()> {
    let wanted: [(&str, &[&str]); 6] = [
        ("containerd", &["/usr/bin/containerd", "/usr/local/bin/containerd"]),
        ("ctr", &["/usr/bin/ctr", "/usr/local/bin/ctr"]),
        ("runc", &["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]),
        ("CNI plugins (/usr/lib/cni)", &["/usr/lib/cni/bridge"]),
        ("busybox", &[images::BUSYBOX]),
        ("catatonit", &[images::CATATONIT]),
    ];
    let missing: Vec<&str> =
        wanted.iter().filter(|(_, paths)| !paths.iter().any(|p| exists(p))).map(|(name, _)| *name).collect();
    if missing.is_empty() { Ok(()) } else { Err(Error::MissingPackages { missing: missing.join(", ") }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_packages_are_named_with_the_apt_command() {
        assert!(check_packages_with(|_| true).is_ok());
        // Any one of a program's usual places will do.
        let local = |p: &str| p.starts_with("/usr/local/") || !p.contains("containerd") && !p.contains("runc");
        assert!(check_packages_with(local).is_ok());
        let without = |gone: &'static [&'static str]| move |p: &str| !gone.iter().any(|g| p.contains(g));
        let err = check_packages_with(without(&["runc", "/usr/lib/cni"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing runc, CNI plugins (/usr/lib/cni): install them with `apt-get install containerd runc \
             containernetworking-plugins busybox-static catatonit`"
        );
        let err = check_packages_with(|_| false).unwrap_err().to_string();
        assert!(
            err.starts_with("missing containerd, ctr, runc, CNI plugins (/usr/lib/cni), busybox, catatonit: "),
            "{err}"
        );
        assert!(err.ends_with(&format!("`apt-get install {APT_PACKAGES}`")), "{err}");
    }
}
