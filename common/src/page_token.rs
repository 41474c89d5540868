//! Opaque list page tokens (decisions.md §5.2): XChaCha20-Poly1305 over the cursor and the
//! network id, under `HMAC-SHA256(hmac secret, "talos/pagination/v1/cursor-key")`, with the random
//! 24-byte nonce in front, base64url without padding.
//!
//! Tokens are sealed with the current secret and opened with any active one, so a secret rotation
//! does not break a client half-way through a listing. Anything that does not open — tampered,
//! truncated, from another deployment — is simply invalid (a 400 upstream).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::key::Keyring;
use crate::model::KeyKind;
use crate::store::Cursor;

const KEY_LABEL: &[u8] = b"talos/pagination/v1/cursor-key";
const NONCE_LEN: usize = 24;

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// Cursor create time (Unix nanoseconds).
    c: i64,
    /// Cursor key id.
    k: String,
    /// Network id.
    n: String,
    /// The collection the token pages through.
    t: KeyKind,
}

/// Why a page token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    #[error("invalid page token")]
    Invalid,
    #[error("page token network mismatch")]
    NetworkMismatch,
}

/// Seals and opens page tokens with the HMAC keyring (plus legacy pagination secrets).
#[derive(Clone)]
pub struct PageTokens {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageTokens({} keys)", self.ciphers.len())
    }
}

impl PageTokens {
    /// `keyring` supplies the sealing key (its current secret) and opening keys; `legacy` are
    /// extra secrets (`secrets.default` / `secrets.pagination`) accepted for opening only.
    pub fn new(keyring: &Keyring, now_secs: i64, legacy: &[&[u8]]) -> Self {
        let mut ciphers: Vec<XChaCha20Poly1305> =
            keyring.active(now_secs).map(|k| XChaCha20Poly1305::new(&k.sign(&[KEY_LABEL]).into())).collect();
        for secret in legacy {
            let k = crate::key::HmacKey::new(secret, None);
            ciphers.push(XChaCha20Poly1305::new(&k.sign(&[KEY_LABEL]).into()));
        }
        Self { ciphers }
    }

    pub fn seal(&self, kind: KeyKind, cursor: &Cursor, nid: &str) -> String {
        let plain =
            serde_json::to_vec(&Sealed { c: cursor.create_time, k: cursor.key_id.clone(), n: nid.to_owned(), t: kind })
                .expect("a cursor serialises");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(self.ciphers[0].encrypt(&nonce, plain.as_slice()).expect("XChaCha20-Poly1305 seals any length"));
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, kind: KeyKind, token: &str, nid: &str) -> Result<Cursor, PageTokenError> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| PageTokenError::Invalid)?;
        if raw.len() <= NONCE_LEN {
            return Err(PageTokenError::Invalid);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::from_slice(nonce);
        let plain = self.ciphers.iter().find_map(|c| c.decrypt(nonce, sealed).ok()).ok_or(PageTokenError::Invalid)?;
        let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| PageTokenError::Invalid)?;
        if sealed.t != kind {
            return Err(PageTokenError::Invalid);
        }
        if sealed.n != nid {
            return Err(PageTokenError::NetworkMismatch);
        }
        Ok(Cursor { create_time: sealed.c, key_id: sealed.k })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NIL_NID;

    fn tokens(secret: &[u8], retired: Option<&[u8]>) -> PageTokens {
        let ring = Keyring::new(secret, retired.map(|r| (r.to_vec(), None)));
        PageTokens::new(&ring, 0, &[])
    }

    #[test]
    fn round_trip_and_tampering() {
        let t = tokens(b"secret-one-0123456789abcdef0123456789", None);
        let cursor = Cursor { create_time: 42, key_id: "k".into() };
        let token = t.seal(KeyKind::Issued, &cursor, NIL_NID);
        assert_eq!(t.open(KeyKind::Issued, &token, NIL_NID), Ok(cursor.clone()));
        assert_eq!(t.open(KeyKind::Imported, &token, NIL_NID), Err(PageTokenError::Invalid));
        assert_eq!(t.open(KeyKind::Issued, &token, "other"), Err(PageTokenError::NetworkMismatch));
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(t.open(KeyKind::Issued, &tampered, NIL_NID).is_err(), "tampered at {i}");
        }
        for junk in ["", "!!", "AAAA", &"A".repeat(500)] {
            assert_eq!(t.open(KeyKind::Issued, junk, NIL_NID), Err(PageTokenError::Invalid));
        }
    }

    #[test]
    fn retired_secret_opens_other_secret_does_not() {
        let old = tokens(b"secret-old-0123456789abcdef0123456789", None);
        let cursor = Cursor { create_time: 1, key_id: "x".into() };
        let token = old.seal(KeyKind::Issued, &cursor, NIL_NID);
        let rotated = tokens(b"secret-new-0123456789abcdef0123456789", Some(b"secret-old-0123456789abcdef0123456789"));
        assert_eq!(rotated.open(KeyKind::Issued, &token, NIL_NID), Ok(cursor));
        let stranger = tokens(b"secret-xxx-0123456789abcdef0123456789", None);
        assert_eq!(stranger.open(KeyKind::Issued, &token, NIL_NID), Err(PageTokenError::Invalid));
    }
}
