//! Detached JWS signatures of the `cluster-info` kubeconfig, as Kubernetes' bootstrap
//! signer makes them: HS256 keyed by a bootstrap token (`<id>.<secret>`), header
//! `{"alg":"HS256","kid":"<id>"}`, and the payload left out (`<header>..<signature>`). An
//! agent that holds the token can then trust the CA it reads from `cluster-info` without
//! being handed a CA hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The detached signature of `content` with the bootstrap token `id`.`secret`.
pub fn sign_detached(content: &[u8], id: &str, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#));
    let signature = mac(&header, content, id, secret);
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// Whether `signature` is a detached HS256 signature of `content` made with the token
/// `id`.`secret` (compared in constant time) and names `id`.
pub fn verify_detached(signature: &str, content: &[u8], id: &str, secret: &str) -> bool {
    let mut parts = signature.split('.');
    let (Some(header), Some(""), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(header_json) = URL_SAFE_NO_PAD.decode(header) else { return false };
    let Ok(header_value) = header_fields(&header_json) else { return false };
    if header_value != ("HS256".to_string(), id.to_string()) {
        return false;
    }
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, format!("{id}.{secret}").as_bytes());
    hmac::verify(&key, &signing_input(header, content), &sig).is_ok()
}

fn signing_input(header: &str, content: &[u8]) -> Vec<u8> {
    format!("{header}.{}", URL_SAFE_NO_PAD.encode(content)).into_bytes()
}

fn mac(header: &str, content: &[u8], id: &str, secret: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, format!("{id}.{secret}").as_bytes());
    hmac::sign(&key, &signing_input(header, content))
}

/// `(alg, kid)` of a JWS header.
fn header_fields(header: &[u8]) -> Result<(String, String), ()> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        #[serde(default)]
        kid: String,
    }
    let h: Header = serde_json::from_slice(header).map_err(|_| ())?;
    Ok((h.alg, h.kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_token_only() {
        let content = b"apiVersion: v1\nkind: Config\n";
        let sig = sign_detached(content, "abcdef", "0123456789abcdef");
        assert!(sig.contains(".."), "detached: {sig}");
        let header = URL_SAFE_NO_PAD.decode(sig.split('.').next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"HS256","kid":"abcdef"}"#);
        assert!(verify_detached(&sig, content, "abcdef", "0123456789abcdef"));
        assert!(!verify_detached(&sig, content, "abcdef", "0123456789abcdeX"), "another secret");
        assert!(!verify_detached(&sig, b"apiVersion: v1\nkind: Konfig\n", "abcdef", "0123456789abcdef"), "tampered");
        assert!(!verify_detached(&sig, content, "bcdefa", "0123456789abcdef"), "another id");
        let attached = sig.replacen("..", &format!(".{}.", URL_SAFE_NO_PAD.encode(content)), 1);
        assert!(!verify_detached(&attached, content, "abcdef", "0123456789abcdef"), "not detached");
        for junk in ["", "..", "a..b..c", "e30..AAAA"] {
            assert!(!verify_detached(junk, content, "abcdef", "0123456789abcdef"), "{junk}");
        }
    }
}
