//! Agent identity on the wire: every record an agent produces carries its
//! Ed25519 public key and a signature over the record's value, in two
//! Kafka headers. The collector pins a key per asset; a record is only
//! taken as the asset's word when signed by its pinned key.
//!
//! The contract (so that any producer can sign, see `schemas/README.md`):
//! - header [`SIGNER_HEADER`] = `ed25519:` followed by the standard base64
//!   (with padding) of the 32-byte public key;
//! - header [`SIGNATURE_HEADER`] = the standard base64 of the 64-byte
//!   Ed25519 signature of [`SIGNING_CONTEXT`] followed by the record's
//!   value (the Avro single-object encoding, exactly as produced);
//! - a key's fingerprint is `sha256:` and the lower-case hex of the SHA-256
//!   of the 32 public-key bytes ([`PublicKey::fingerprint`]).
//!
//! The value names its asset, so a signature binds the record to the asset
//! it speaks for; the context string keeps these signatures from being
//! taken for any other use of the same key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// Header with the signer's public key.
pub const SIGNER_HEADER: &str = "driftwatch.signer";
/// Header with the signature of the record's value.
pub const SIGNATURE_HEADER: &str = "driftwatch.signature";
/// Signed before the value (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"driftwatch-record-v1\n";
const SIGNER_PREFIX: &str = "ed25519:";
/// The longest header value either header may have (base64 of 64 bytes is
/// 88 characters): longer ones are refused before any decoding.
const MAX_HEADER: usize = 128;

/// Why a record's identity could not be read or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("header {SIGNER_HEADER} is not `ed25519:` and the base64 of a 32-byte key")]
    BadSigner,
    #[error("header {SIGNATURE_HEADER} is not the base64 of a 64-byte signature")]
    BadSignatureEncoding,
    #[error("header {SIGNER_HEADER} without {SIGNATURE_HEADER}, or the reverse")]
    HalfSigned,
    #[error("the signature does not verify with key {0}: the record was altered or not signed by that key")]
    Forged(String),
    #[error("key file: {0}")]
    KeyFile(String),
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// `sha256:<hex>` of the key's 32 bytes: how operators name a key.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.0)))
    }

    /// The [`SIGNER_HEADER`] value.
    pub fn header(&self) -> String {
        format!("{SIGNER_PREFIX}{}", STANDARD.encode(self.0))
    }

    /// Parses a [`SIGNER_HEADER`] value.
    pub fn from_header(value: &[u8]) -> Result<PublicKey, IdentityError> {
        if value.len() > MAX_HEADER {
            return Err(IdentityError::BadSigner);
        }
        let b64 = value.strip_prefix(SIGNER_PREFIX.as_bytes()).ok_or(IdentityError::BadSigner)?;
        let bytes = STANDARD.decode(b64).map_err(|_| IdentityError::BadSigner)?;
        Ok(PublicKey(bytes.try_into().map_err(|_| IdentityError::BadSigner)?))
    }
}

/// Whether `s` is a well-formed key fingerprint (`sha256:` + 64 hex digits).
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// An agent's key pair.
pub struct KeyPair {
    inner: Ed25519KeyPair,
    public: PublicKey,
    signer_header: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("KeyPair").field("fingerprint", &self.public.fingerprint()).finish()
    }
}

impl KeyPair {
    /// A new key pair, as PKCS#8 (v2) bytes to keep; load with [`Self::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Vec<u8>, IdentityError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| IdentityError::KeyFile("the system's random source failed".into()))
    }

    /// The key pair kept as PKCS#8 bytes.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<KeyPair, IdentityError> {
        let inner = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
            .map_err(|e| IdentityError::KeyFile(format!("not an Ed25519 PKCS#8 key ({e})")))?;
        Ok(Self::wrap(inner))
    }

    /// The key pair of a 32-byte seed (tests and tools that derive keys).
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        // A 32-byte seed is always a valid Ed25519 private key.
        let inner = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32-byte seed is an Ed25519 key");
        Self::wrap(inner)
    }

    fn wrap(inner: Ed25519KeyPair) -> KeyPair {
        let mut public = [0u8; 32];
        public.copy_from_slice(inner.public_key().as_ref());
        let public = PublicKey(public);
        KeyPair { inner, signer_header: public.header(), public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The two headers of a record whose value is `payload`:
    /// ([`SIGNER_HEADER`] value, [`SIGNATURE_HEADER`] value).
    pub fn sign(&self, payload: &[u8]) -> (&str, String) {
        let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
        msg.extend_from_slice(SIGNING_CONTEXT);
        msg.extend_from_slice(payload);
        (&self.signer_header, STANDARD.encode(self.inner.sign(&msg).as_ref()))
    }
}

/// Checks a record's signature headers against its value. `Ok(None)`: the
/// record is unsigned (neither header); `Ok(Some(key))`: signed by `key`.
pub fn verify(signer: Option<&[u8]>, signature: Option<&[u8]>, payload: &[u8]) -> Result<Option<PublicKey>, IdentityError> {
    let (signer, signature) = match (signer, signature) {
        (None, None) => return Ok(None),
        (Some(k), Some(s)) => (k, s),
        _ => return Err(IdentityError::HalfSigned),
    };
    let key = PublicKey::from_header(signer)?;
    if signature.len() > MAX_HEADER {
        return Err(IdentityError::BadSignatureEncoding);
    }
    let sig = STANDARD.decode(signature).map_err(|_| IdentityError::BadSignatureEncoding)?;
    if sig.len() != 64 {
        return Err(IdentityError::BadSignatureEncoding);
    }
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(payload);
    UnparsedPublicKey::new(&ED25519, key.0).verify(&msg, &sig).map_err(|_| IdentityError::Forged(key.fingerprint()))?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_value_verifies_and_names_its_key() {
        let k = KeyPair::from_pkcs8(&KeyPair::generate_pkcs8().unwrap()).unwrap();
        let (signer, sig) = k.sign(b"value");
        assert_eq!(verify(Some(signer.as_bytes()), Some(sig.as_bytes()), b"value"), Ok(Some(k.public())));
        assert!(is_fingerprint(&k.public().fingerprint()), "{}", k.public().fingerprint());
    }

    #[test]
    fn an_altered_value_or_another_key_does_not_verify() {
        let (a, b) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let (signer, sig) = a.sign(b"value");
        let forged = Err(IdentityError::Forged(a.public().fingerprint()));
        assert_eq!(verify(Some(signer.as_bytes()), Some(sig.as_bytes()), b"valuE"), forged);
        // B's key presented with A's signature.
        let b_signer = b.public().header();
        assert!(matches!(verify(Some(b_signer.as_bytes()), Some(sig.as_bytes()), b"value"), Err(IdentityError::Forged(_))));
        // The signature is over the context too: the bare value's does not pass.
        let bare = STANDARD.encode(a.inner.sign(b"value").as_ref());
        assert!(matches!(verify(Some(signer.as_bytes()), Some(bare.as_bytes()), b"value"), Err(IdentityError::Forged(_))));
    }

    #[test]
    fn malformed_headers_are_named() {
        let k = KeyPair::from_seed(&[3; 32]);
        let (signer, sig) = k.sign(b"v");
        assert_eq!(verify(None, None, b"v"), Ok(None));
        assert_eq!(verify(Some(signer.as_bytes()), None, b"v"), Err(IdentityError::HalfSigned));
        assert_eq!(verify(None, Some(sig.as_bytes()), b"v"), Err(IdentityError::HalfSigned));
        assert_eq!(verify(Some(b"rsa:AAAA"), Some(sig.as_bytes()), b"v"), Err(IdentityError::BadSigner));
        assert_eq!(verify(Some(b"ed25519:AAAA"), Some(sig.as_bytes()), b"v"), Err(IdentityError::BadSigner));
        assert_eq!(verify(Some(&[b'a'; 10_000]), Some(sig.as_bytes()), b"v"), Err(IdentityError::BadSigner));
        assert_eq!(verify(Some(signer.as_bytes()), Some(b"!!"), b"v"), Err(IdentityError::BadSignatureEncoding));
        assert_eq!(verify(Some(signer.as_bytes()), Some(b"AAAA"), b"v"), Err(IdentityError::BadSignatureEncoding));
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_key_bytes() {
        let k = PublicKey([0; 32]);
        assert_eq!(k.fingerprint(), "sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
        assert!(!is_fingerprint("sha256:66687AADF862BD776C8FC18B8E9F8E20089714856EE233B3902A591D0D5F2925"));
        assert!(!is_fingerprint("sha256:abc"));
        assert_eq!(PublicKey::from_header(k.header().as_bytes()), Ok(k));
    }
}
