//! Web Push (RFC 8030) as an application server: the VAPID key and its
//! signed token (RFC 8292, ES256), and the message encryption of RFC 8291
//! (`aes128gcm` content coding, RFC 8188) — all with aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use aws_lc_rs::{aead, agreement, hkdf};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The record size written in the header (the whole message is one record).
const RECORD_SIZE: u32 = 4096;
/// Longest plaintext one record holds: the record size less the tag and
/// the delimiter byte.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - 16 - 1;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the subscription's key is not a P-256 public key")]
    BadSubscriptionKey,
    #[error("the subscription's auth secret must be 16 bytes")]
    BadAuthSecret,
    #[error("the payload is larger than one record ({MAX_PLAINTEXT} bytes)")]
    TooLarge,
    #[error("the VAPID key is not a P-256 PKCS#8 key")]
    BadVapidKey,
    #[error("crypto failure")]
    Crypto,
}

/// The application server's VAPID key pair.
pub struct VapidKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_key_b64())
            .finish()
    }
}

/// A new key pair as PKCS#8 (what is stored).
pub fn generate_vapid_pkcs8() -> Result<Vec<u8>, PushError> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| PushError::Crypto)?;
    Ok(doc.as_ref().to_vec())
}

impl VapidKey {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, PushError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| PushError::BadVapidKey)?;
        Ok(Self { pair })
    }

    /// The public key, uncompressed point, base64url: the browser's
    /// `applicationServerKey` and the `k` of the Authorization header.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// `Authorization: vapid t=…, k=…` for a push to `endpoint`: a JWT
    /// (ES256) for the endpoint's origin, valid `ttl_secs` from `now`.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<String, PushError> {
        let audience = origin(endpoint).ok_or(PushError::Crypto)?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": now + ttl_secs, "sub": subject});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| PushError::Crypto)?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(sig.as_ref()),
            self.public_key_b64()
        ))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Result<Vec<u8>, PushError> {
    let mut out = vec![0u8; len];
    prk.expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| PushError::Crypto)?;
    Ok(out)
}

/// Encrypts `plaintext` for a subscription (its `p256dh` key and `auth`
/// secret, raw bytes): the body of the push request, `Content-Encoding:
/// aes128gcm`.
pub fn encrypt(
    ua_public: &[u8],
    auth_secret: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PushError> {
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err(PushError::BadSubscriptionKey);
    }
    if auth_secret.len() != 16 {
        return Err(PushError::BadAuthSecret);
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(PushError::TooLarge);
    }
    let rng = SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| PushError::Crypto)?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| PushError::Crypto)?
        .as_ref()
        .to_vec();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let ecdh_secret =
        agreement::agree_ephemeral(ephemeral, peer, PushError::BadSubscriptionKey, |s| {
            Ok(s.to_vec())
        })?;
    // RFC 8291 §3.4: the input keying material from the ECDH secret and the
    // auth secret, bound to both public keys.
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth_secret).extract(&ecdh_secret);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", ua_public, &as_public], 32)?;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| PushError::Crypto)?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| PushError::Crypto)?,
    );
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| PushError::Crypto)?;
    // One record, the last: the plaintext and the delimiter 0x02.
    let mut record = Vec::with_capacity(plaintext.len() + 1 + 16);
    record.extend_from_slice(plaintext);
    record.push(2);
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| PushError::Crypto)?;
    // RFC 8188 header: salt, record size, key id (the sender's public key).
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vapid_token_names_the_endpoints_origin() {
        let key = VapidKey::from_pkcs8(&generate_vapid_pkcs8().expect("key")).expect("load");
        let auth = key
            .authorization(
                "https://push.example.net:8443/wpush/v2/abc?x=1",
                "mailto:ops@example.com",
                1_000,
                3600,
            )
            .expect("token");
        let t = auth
            .strip_prefix("vapid t=")
            .and_then(|r| r.split(", k=").next())
            .expect("form");
        let claims = t.split('.').nth(1).expect("claims");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 4600);
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key.public_key_b64())
                .expect("b64")
                .len(),
            65
        );
    }

    #[test]
    fn bad_subscription_keys_are_refused() {
        assert!(matches!(
            encrypt(&[4; 10], &[0; 16], b"x"),
            Err(PushError::BadSubscriptionKey)
        ));
        let mut k = vec![4u8];
        k.extend([1u8; 64]);
        assert!(matches!(
            encrypt(&k, &[0; 3], b"x"),
            Err(PushError::BadAuthSecret)
        ));
        assert!(matches!(
            encrypt(&k, &[0; 16], &vec![0; MAX_PLAINTEXT + 1]),
            Err(PushError::TooLarge)
        ));
    }
}
