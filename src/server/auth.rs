//! The optional shared secret: `?token=`, `X-Printbell-Token`, or an HMAC-SHA256 signature of
//! the raw body in `X-Printbell-Signature: sha256=<hex>`. All comparisons are constant-time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const TOKEN_HEADER: &str = "x-printbell-token";
pub const SIGNATURE_HEADER: &str = "x-printbell-signature";

/// What a request offered to prove it knows the secret.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    pub query_token: Option<&'a str>,
    pub header_token: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

/// Whether any offered credential matches. Tokens are compared through their SHA-256 so the
/// comparison takes the same time whatever their length.
pub fn verify(secret: &str, creds: &Credentials<'_>, body: &[u8]) -> bool {
    let expected = Sha256::digest(secret.as_bytes());
    let token_ok = |t: &[u8]| bool::from(Sha256::digest(t).ct_eq(&expected));
    if creds.query_token.is_some_and(|t| token_ok(t.as_bytes())) {
        return true;
    }
    if creds.header_token.is_some_and(token_ok) {
        return true;
    }
    if let Some(sig) = creds.signature {
        return signature_ok(secret, sig, body);
    }
    false
}

fn signature_ok(secret: &str, header: &[u8], body: &[u8]) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    let hex_sig = header.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `sha256=<hex>` signature of a body; what a sender puts in `X-Printbell-Signature`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_credential_works_alone() {
        let body = b"{}";
        let q = Credentials {
            query_token: Some("s3cret"),
            ..Default::default()
        };
        assert!(verify("s3cret", &q, body));
        let h = Credentials {
            header_token: Some(b"s3cret"),
            ..Default::default()
        };
        assert!(verify("s3cret", &h, body));
        let sig = sign("s3cret", body);
        let s = Credentials {
            signature: Some(sig.as_bytes()),
            ..Default::default()
        };
        assert!(verify("s3cret", &s, body));
    }

    #[test]
    fn wrong_or_missing_is_refused() {
        assert!(!verify("s3cret", &Credentials::default(), b"{}"));
        let q = Credentials {
            query_token: Some("s3cre"),
            ..Default::default()
        };
        assert!(!verify("s3cret", &q, b"{}"));
        let sig = sign("s3cret", b"{\"a\":1}");
        let s = Credentials {
            signature: Some(sig.as_bytes()),
            ..Default::default()
        };
        assert!(
            !verify("s3cret", &s, b"{\"a\":2}"),
            "signature over another body"
        );
    }
}
