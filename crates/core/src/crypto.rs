//! Keys, signatures and secrets at rest.
//!
//! - API keys (`sk_`, `pk_`, `st_`) are random, high-entropy tokens. Only their SHA-256 digest is
//!   stored; a lookup by digest never compares secret bytes, so no timing leaks the key.
//! - Webhook signing secrets follow Standard Webhooks: `whsec_` + base64 of random bytes; signatures
//!   are `v1,` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")).
//! - Secrets at rest (credentials, signing secrets) are sealed with AES-256-GCM under a master key.
//!   Each ciphertext carries the id of the key that sealed it, so keys can rotate, and is bound to
//!   the record it belongs to (associated data), so ciphertexts cannot be swapped between records.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

const TOKEN_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TOKEN_BODY_LEN: usize = 40; // ~238 bits of entropy

/// A new random token with the given prefix, e.g. `sk_` for admin keys.
pub fn generate_token(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + TOKEN_BODY_LEN);
    s.push_str(prefix);
    for _ in 0..TOKEN_BODY_LEN {
        s.push(TOKEN_ALPHABET[rng.gen_range(0..TOKEN_ALPHABET.len())] as char);
    }
    s
}

/// The digest under which a token is stored and looked up (hex SHA-256).
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A short, non-secret hint for recognising a key in listings (`pk_ab12…`).
pub fn token_hint(token: &str) -> String {
    let cut = token.char_indices().nth(7).map(|(i, _)| i).unwrap_or(token.len());
    format!("{}…", &token[..cut])
}

/// Lower-case hex, two digits a byte. Every authenticated request hashes its token, so this is
/// on the hot path: one allocation, no formatting machinery (which cost about 20 times as much).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Constant-time equality for secrets compared directly (the bootstrap admin key from the environment).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A new Standard Webhooks signing secret.
pub fn generate_signing_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", B64.encode(bytes))
}

/// Signs one webhook attempt per Standard Webhooks: `v1,<base64 signature>`.
pub fn sign_webhook(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, CryptoError> {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).map_err(|_| CryptoError::MalformedSecret)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| CryptoError::MalformedSecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the signing secret is malformed")]
    MalformedSecret,
    #[error("the master key must be 32 bytes, base64-encoded")]
    MalformedMasterKey,
    #[error("the secret was sealed with master key {0}, which this server does not have")]
    UnknownKey(String),
    #[error("a sealed secret could not be opened: wrong master key or damaged data")]
    Undecryptable,
}

/// One 256-bit master key and its id (a digest prefix, safe to store and show).
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = B64.decode(encoded.trim()).map_err(|_| CryptoError::MalformedMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::MalformedMasterKey)?;
        let id = hex(&Sha256::digest(key))[..12].to_owned();
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| CryptoError::MalformedMasterKey)?;
        Ok(Self { id, cipher })
    }

    /// A fresh random key, base64-encoded, for first start of the embedded default.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        B64.encode(key)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Seals secrets with the current master key and opens them with any key it holds.
#[derive(Clone, Debug)]
pub struct SecretBox {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl SecretBox {
    pub fn new(current: MasterKey) -> Self {
        Self { current, previous: Vec::new() }
    }

    /// Also opens secrets sealed with `older` keys (during a master-key rotation).
    pub fn with_previous(mut self, older: Vec<MasterKey>) -> Self {
        self.previous = older;
        self
    }

    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// Seals `plaintext`, bound to `context` (the id of the record it belongs to).
    /// Format: `v1:<key id>:<base64(nonce || ciphertext)>`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("v1:{}:{}", self.current.id, B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Undecryptable);
        };
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let raw = B64.decode(body).map_err(|_| CryptoError::Undecryptable)?;
        if raw.len() < 12 {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ciphertext) = raw.split_at(12);
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| CryptoError::Undecryptable)
    }

    pub fn open_string(&self, sealed: &str, context: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| CryptoError::Undecryptable)
    }
}

/// A secret value whose `Debug` never shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_hashed_stably() {
        let a = generate_token("pk_");
        let b = generate_token("pk_");
        assert!(a.starts_with("pk_") && a.len() == 43);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!token_hint(&a).contains(&a[8..]));
        // The stored form: lower-case hex of SHA-256 (the known vector of "abc").
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // The example published with the Standard Webhooks specification.
        let sig =
            sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#)
                .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let vault = SecretBox::new(key);
        let sealed = vault.seal(b"hunter2", "conn_1");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(vault.open(&sealed, "conn_1").unwrap(), b"hunter2");
        assert_eq!(vault.open(&sealed, "conn_2"), Err(CryptoError::Undecryptable));

        let other = SecretBox::new(MasterKey::from_base64(&MasterKey::generate_base64()).unwrap());
        assert!(matches!(other.open(&sealed, "conn_1"), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let old = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = SecretBox::new(old.clone()).seal(b"s", "x");
        let new = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let vault = SecretBox::new(new).with_previous(vec![old]);
        assert_eq!(vault.open(&sealed, "x").unwrap(), b"s");
        assert!(vault.seal(b"s", "x").contains(vault.current_key_id()));
    }

    #[test]
    fn malformed_master_keys_are_refused() {
        assert!(MasterKey::from_base64("short").is_err());
        assert!(MasterKey::from_base64("not base64 at all!").is_err());
    }

    #[test]
    fn redacted_values_never_print() {
        assert_eq!(format!("{:?}", Redacted("hunter2")), "[redacted]");
    }
}
