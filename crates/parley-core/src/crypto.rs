//! Secrets: generation, hashing, constant-time comparison.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of infobase keys, so a leaked one is recognizable in scans.
pub const INFOBASE_KEY_PREFIX: &str = "pbk_";
/// Prefix of session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "pst_";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS generator failing means the machine cannot make secrets at all;
    // nothing sensible can continue.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b
}

/// A numeric code of `len` digits, uniformly distributed (rejection sampling
/// keeps every digit equally likely).
pub fn numeric_code(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<16>() {
            if b < 250 && out.len() < len {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    out
}

/// A 256-bit secret with a recognizable prefix.
pub fn secret(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Hash of a registration code, bound to its e-mail and a per-code salt.
pub fn code_hash(salt: &[u8], email: &str, code: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(email.as_bytes());
    mac.update(b":");
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Prefix of WebSocket tickets.
pub const TICKET_PREFIX: &str = "pwt_";

/// HMAC-SHA256 of `parts` joined by `:` under `key` (signed links).
pub fn sign(key: &[u8], parts: &[&str]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b":");
        }
        mac.update(p.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

/// The `X-Parley-Signature` of a webhook delivery: `v1=` and the hex of
/// HMAC-SHA256 over `timestamp.body` under the endpoint's secret (the form
/// receivers recompute; docs/integrations.md).
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + 2 * sig.len());
    out.push_str("v1=");
    for b in sig {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The TURN REST API credential (coturn `use-auth-secret`):
/// base64(HMAC-SHA1(secret, username)), standard alphabet with padding.
pub fn turn_credential(secret: &[u8], username: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    // HMAC accepts keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// URL-safe base64 without padding (signatures in links).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn from_b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_turn_rest_api() {
        // Reference value from Python: base64.b64encode(hmac.new(b"north",
        // b"1433895918:alice", hashlib.sha1).digest()).
        assert_eq!(
            turn_credential(b"north", "1433895918:alice"),
            "RqMvcGPYTJMGThVLSi4amT4zFtI="
        );
    }

    #[test]
    fn codes_are_digits_of_the_right_length() {
        for len in 4..=10 {
            let c = numeric_code(len);
            assert_eq!(c.len(), len);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn secrets_differ_and_hashes_compare() {
        let a = secret(INFOBASE_KEY_PREFIX);
        let b = secret(INFOBASE_KEY_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("pbk_") && a.len() == 4 + 43);
        assert!(ct_eq(&sha256(a.as_bytes()), &sha256(a.as_bytes())));
        assert!(!ct_eq(&sha256(a.as_bytes()), &sha256(b.as_bytes())));
        let salt = random_bytes::<16>();
        assert_ne!(
            code_hash(&salt, "a@b.c", "123456"),
            code_hash(&salt, "a@b.c", "123457")
        );
    }
}
