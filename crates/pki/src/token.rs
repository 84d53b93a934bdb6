//! The k3s-style node token: `K10<sha256 hex of the server CA PEM>::server:<secret>`. An
//! agent given it fetches `/cacerts` without verification, checks the hash (so it trusts
//! the right CA without being handed the certificate) and sends the secret as a bearer
//! token.

use std::fmt;
use std::path::Path;

use ring::rand::SecureRandom;

use crate::{Error, Result};

/// Errors reading a node token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not `K10<64 hex>::<user>:<secret>`.
    #[error("the token is not of the form K10<ca-hash>::server:<secret> (a bare secret carries no CA hash to check)")]
    Malformed,
    /// The CA the server presents is not the one the token names.
    #[error("the server's CA (sha256 {actual}) is not the one the token names (sha256 {expected})")]
    CaMismatch {
        /// Hash in the token.
        expected: String,
        /// Hash of the CA the server served.
        actual: String,
    },
}

/// A node token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeToken {
    /// sha256 of the server CA PEM, lowercase hex.
    pub ca_hash: String,
    /// The secret the server accepts as a bearer token.
    pub secret: String,
}

/// sha256 of `pem`'s bytes, lowercase hex.
pub fn ca_hash(pem: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, pem.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl NodeToken {
    /// The token for the server CA `ca_pem` and `secret`.
    pub fn new(ca_pem: &str, secret: &str) -> NodeToken {
        NodeToken { ca_hash: ca_hash(ca_pem), secret: secret.to_string() }
    }

    /// Parses the full `K10…::user:secret` form.
    pub fn parse(text: &str) -> Result<NodeToken, TokenError> {
        let rest = text.trim().strip_prefix("K10").ok_or(TokenError::Malformed)?;
        let (hash, credentials) = rest.split_once("::").ok_or(TokenError::Malformed)?;
        let (_, secret) = credentials.split_once(':').ok_or(TokenError::Malformed)?;
        let hex_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok || secret.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(NodeToken { ca_hash: hash.to_ascii_lowercase(), secret: secret.to_string() })
    }

    /// Checks that `ca_pem` is the CA this token names.
    pub fn verify_ca(&self, ca_pem: &str) -> Result<(), TokenError> {
        let actual = ca_hash(ca_pem);
        if actual == self.ca_hash {
            Ok(())
        } else {
            Err(TokenError::CaMismatch { expected: self.ca_hash.clone(), actual })
        }
    }

    /// The server's token in `path` (mode 0600): with `given` (a bare secret or a full
    /// token) when set, else the secret stored there, else a new random one; always for the
    /// CA `ca_pem`.
    pub fn load_or_create(path: &Path, ca_pem: &str, given: Option<&str>) -> Result<NodeToken> {
        let secret = match given {
            Some(given) => NodeToken::parse(given).map(|t| t.secret).unwrap_or_else(|_| given.trim().to_string()),
            None => match std::fs::read_to_string(path) {
                Ok(stored) => match NodeToken::parse(&stored) {
                    Ok(t) => t.secret,
                    Err(_) => random_secret()?,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => random_secret()?,
                Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
            },
        };
        let token = NodeToken::new(ca_pem, &secret);
        let text = format!("{token}\n");
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            crate::write_private(path, &text)?;
        }
        Ok(token)
    }
}

impl fmt::Display for NodeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "K10{}::server:{}", self.ca_hash, self.secret)
    }
}

/// 32 random hex digits.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Io { path: "/dev/urandom".into(), source: std::io::Error::other("no randomness") })?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn tokens_round_trip_and_check_the_ca() {
        let t = NodeToken::new("ca pem", "s3cret");
        assert_eq!(t.ca_hash.len(), 64);
        assert_eq!(NodeToken::parse(&t.to_string()), Ok(t.clone()));
        assert_eq!(t.verify_ca("ca pem"), Ok(()));
        assert!(matches!(t.verify_ca("other"), Err(TokenError::CaMismatch { .. })));
        for bad in ["s3cret", "K10abc::server:x", &format!("K10{}::server:", t.ca_hash), &format!("K10{}", t.ca_hash)] {
            assert_eq!(NodeToken::parse(bad), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_token_file_is_created_once_and_follows_a_given_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = NodeToken::load_or_create(&path, "ca", None).unwrap();
        assert_eq!(first.secret.len(), 32);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(NodeToken::load_or_create(&path, "ca", None).unwrap(), first);
        let given = NodeToken::load_or_create(&path, "ca", Some("mine")).unwrap();
        assert_eq!(given.secret, "mine");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{given}\n"));
        let full = NodeToken::load_or_create(&path, "ca", Some(&format!("{first}"))).unwrap();
        assert_eq!(full, first);
    }
}
