//! Bootstrap data that servers sharing one datastore share through it, as k3s does: the
//! CAs' certificates and keys, the ServiceAccount signing key and the Secrets encryption
//! configuration. It is sealed with a key derived from the cluster token (PBKDF2-HMAC-
//! SHA256 over a random salt, then AES-256-GCM), so only a server given the same token
//! can read it, and a wrong token fails to open it instead of reading garbage.
//!
//! Sealed layout: `berth-bootstrap-v1\n`, 16 bytes of salt, 12 bytes of nonce, then the
//! ciphertext with its tag. The plaintext is the files, each as a big-endian `u32` name
//! length, the name, a `u32` content length and the content.

use std::collections::BTreeMap;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The files a [`Bundle`] holds: path relative to the data dir → contents.
pub type Bundle = BTreeMap<String, Vec<u8>>;

const MAGIC: &[u8] = b"berth-bootstrap-v1\n";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// PBKDF2 rounds: the token is the secret; the rounds only slow down guessing a weak one.
const ROUNDS: u32 = 100_000;

/// Errors opening sealed bootstrap data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapError {
    /// Not sealed bootstrap data of this version.
    #[error("the datastore's bootstrap data is not in berth's format (berth-bootstrap-v1)")]
    Format,
    /// The token does not open it.
    #[error(
        "the datastore's bootstrap data cannot be decrypted with this --token: give the token the cluster's first server was started with"
    )]
    WrongToken,
    /// Decrypted, but the file list is cut short.
    #[error("the datastore's bootstrap data is truncated")]
    Truncated,
}

fn key(token: &str, salt: &[u8]) -> LessSafeKey {
    let mut bytes = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(ROUNDS).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, token.as_bytes(), &mut bytes);
    // A 32-byte key is always a valid AES-256 key.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32-byte AES-256 key"))
}

/// Seals `files` with `token`.
pub fn seal(token: &str, files: &Bundle) -> Vec<u8> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    // The system RNG failing leaves no way to make keys at all.
    rng.fill(&mut salt).expect("system random numbers");
    rng.fill(&mut nonce).expect("system random numbers");
    let mut plain = Vec::new();
    for (name, contents) in files {
        for part in [name.as_bytes(), contents.as_slice()] {
            plain.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            plain.extend_from_slice(part);
        }
    }
    key(token, &salt)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(MAGIC), &mut plain)
        .expect("AES-GCM sealing of an in-memory buffer");
    let mut out = Vec::with_capacity(MAGIC.len() + SALT_LEN + NONCE_LEN + plain.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plain);
    out
}

/// Opens what [`seal`] made with the same `token`.
pub fn open(token: &str, sealed: &[u8]) -> Result<Bundle, BootstrapError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(BootstrapError::Format)?;
    if rest.len() < SALT_LEN + NONCE_LEN {
        return Err(BootstrapError::Format);
    }
    let (salt, rest) = rest.split_at(SALT_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| BootstrapError::Format)?;
    let mut buf = ciphertext.to_vec();
    let plain =
        key(token, salt).open_in_place(nonce, Aad::from(MAGIC), &mut buf).map_err(|_| BootstrapError::WrongToken)?;
    let mut files = Bundle::new();
    let mut rest: &[u8] = plain;
    while !rest.is_empty() {
        let name = String::from_utf8(take(&mut rest)?.to_vec()).map_err(|_| BootstrapError::Truncated)?;
        let contents = take(&mut rest)?.to_vec();
        files.insert(name, contents);
    }
    Ok(files)
}

/// The next length-prefixed part of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], BootstrapError> {
    let (len, tail) = rest.split_first_chunk::<4>().ok_or(BootstrapError::Truncated)?;
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err(BootstrapError::Truncated);
    }
    let (part, tail) = tail.split_at(len);
    *rest = tail;
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle::from([
            ("tls/server-ca.crt".to_string(), b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            ("tls/service.key".to_string(), vec![0, 1, 2, 255]),
            ("cred/empty".to_string(), Vec::new()),
        ])
    }

    #[test]
    fn the_same_token_opens_what_it_sealed() {
        let sealed = seal("s3cret", &sample());
        assert_eq!(open("s3cret", &sealed).unwrap(), sample());
        // Nothing of the plaintext shows through.
        let needle = b"BEGIN CERTIFICATE";
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn a_wrong_token_or_a_changed_byte_is_refused() {
        let sealed = seal("s3cret", &sample());
        assert_eq!(open("other", &sealed), Err(BootstrapError::WrongToken));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(open("s3cret", &tampered), Err(BootstrapError::WrongToken));
        assert_eq!(open("s3cret", b"something else"), Err(BootstrapError::Format));
        assert_eq!(open("s3cret", &sealed[..MAGIC.len() + 3]), Err(BootstrapError::Format));
    }

    #[test]
    fn two_seals_of_the_same_files_differ() {
        assert_ne!(seal("t", &sample()), seal("t", &sample()));
    }
}
