//! Macaroons in the libmacaroons V2 binary format, as Go's `gopkg.in/macaroon.v2` and Python's
//! `pymacaroons` read and write them: first-party caveats only, which is all talos derives.
//!
//! Written here rather than taken from a crate: the one Rust macaroon crate depends on the
//! deprecated `sodiumoxide` (a libsodium C build), while the format is small: a version byte,
//! typed length-prefixed fields, and an HMAC-SHA256 chain
//! `sig₀ = HMAC(HMAC("macaroons-key-generator", root_key), id)`, `sigᵢ = HMAC(sigᵢ₋₁, caveatᵢ)`.
//! Interoperability is checked against `pymacaroons` by the SDK test suite.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const VERSION: u8 = 2;
const FIELD_EOS: u8 = 0;
const FIELD_LOCATION: u8 = 1;
const FIELD_IDENTIFIER: u8 = 2;
const FIELD_VID: u8 = 4;
const FIELD_SIGNATURE: u8 = 6;
const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";
/// Bounds for decoding attacker-supplied bytes.
const MAX_CAVEATS: usize = 64;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// A macaroon with first-party caveats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macaroon {
    pub location: Vec<u8>,
    pub identifier: Vec<u8>,
    pub caveats: Vec<Vec<u8>>,
    pub signature: [u8; 32],
}

/// Why bytes are not a macaroon we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacaroonError {
    #[error("malformed macaroon")]
    Malformed,
    #[error("third-party caveats are not supported")]
    ThirdParty,
}

impl Macaroon {
    /// Mints a macaroon under `root_key` with the given first-party caveats.
    pub fn mint(root_key: &[u8], location: &[u8], identifier: &[u8], caveats: Vec<Vec<u8>>) -> Self {
        let mut m =
            Macaroon { location: location.to_vec(), identifier: identifier.to_vec(), caveats, signature: [0; 32] };
        m.signature = m.expected_signature(root_key);
        m
    }

    fn expected_signature(&self, root_key: &[u8]) -> [u8; 32] {
        let derived = hmac(KEY_GENERATOR, root_key);
        let mut sig = hmac(&derived, &self.identifier);
        for caveat in &self.caveats {
            sig = hmac(&sig, caveat);
        }
        sig
    }

    /// Whether the signature chain holds under `root_key` (constant-time comparison).
    pub fn verify_signature(&self, root_key: &[u8]) -> bool {
        bool::from(self.expected_signature(root_key).ct_eq(&self.signature))
    }

    pub fn serialize_v2(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        if !self.location.is_empty() {
            put_field(&mut out, FIELD_LOCATION, &self.location);
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.identifier);
        out.push(FIELD_EOS);
        for caveat in &self.caveats {
            put_field(&mut out, FIELD_IDENTIFIER, caveat);
            out.push(FIELD_EOS);
        }
        out.push(FIELD_EOS);
        put_field(&mut out, FIELD_SIGNATURE, &self.signature);
        out
    }

    pub fn deserialize_v2(bytes: &[u8]) -> Result<Self, MacaroonError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != VERSION {
            return Err(MacaroonError::Malformed);
        }
        let mut location = Vec::new();
        let (mut t, mut data) = r.field()?;
        if t == FIELD_LOCATION {
            location = data.to_vec();
            (t, data) = r.field()?;
        }
        if t != FIELD_IDENTIFIER {
            return Err(MacaroonError::Malformed);
        }
        let identifier = data.to_vec();
        if r.byte()? != FIELD_EOS {
            return Err(MacaroonError::Malformed);
        }
        let mut caveats = Vec::new();
        loop {
            let (t, data) = match r.peek()? {
                FIELD_EOS => {
                    r.pos += 1;
                    break;
                }
                _ => r.field()?,
            };
            let (t, data) = if t == FIELD_LOCATION {
                // A caveat location without a verification id is still first-party; we ignore it.
                r.field()?
            } else {
                (t, data)
            };
            if t != FIELD_IDENTIFIER {
                return Err(MacaroonError::Malformed);
            }
            match r.byte()? {
                FIELD_EOS => caveats.push(data.to_vec()),
                FIELD_VID => return Err(MacaroonError::ThirdParty),
                _ => return Err(MacaroonError::Malformed),
            }
            if caveats.len() > MAX_CAVEATS {
                return Err(MacaroonError::Malformed);
            }
        }
        let (t, data) = r.field()?;
        if t != FIELD_SIGNATURE || data.len() != 32 || r.pos != bytes.len() {
            return Err(MacaroonError::Malformed);
        }
        let mut signature = [0; 32];
        signature.copy_from_slice(data);
        Ok(Macaroon { location, identifier, caveats, signature })
    }
}

fn put_field(out: &mut Vec<u8>, field: u8, data: &[u8]) {
    out.push(field);
    let mut n = data.len() as u64;
    // Unsigned LEB128 varint, as encoding/binary.PutUvarint.
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(data);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<u8, MacaroonError> {
        self.bytes.get(self.pos).copied().ok_or(MacaroonError::Malformed)
    }

    fn byte(&mut self) -> Result<u8, MacaroonError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<usize, MacaroonError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| MacaroonError::Malformed);
            }
        }
        Err(MacaroonError::Malformed)
    }

    fn field(&mut self) -> Result<(u8, &'a [u8]), MacaroonError> {
        let t = self.byte()?;
        if t == FIELD_EOS {
            return Err(MacaroonError::Malformed);
        }
        let len = self.varint()?;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.bytes.len()).ok_or(MacaroonError::Malformed)?;
        let data = &self.bytes[self.pos..end];
        self.pos = end;
        Ok((t, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_signature() {
        let m = Macaroon::mint(b"root", b"http://talos.test", br#"{"jti":"x"}"#, vec![b"{\"exp\":1}".to_vec()]);
        let bytes = m.serialize_v2();
        let back = Macaroon::deserialize_v2(&bytes).unwrap();
        assert_eq!(back, m);
        assert!(back.verify_signature(b"root"));
        assert!(!back.verify_signature(b"other"));
        let mut tampered = back.clone();
        tampered.caveats[0] = b"{\"exp\":2}".to_vec();
        assert!(!tampered.verify_signature(b"root"));
    }

    #[test]
    fn known_vector_from_libmacaroons() {
        // pymacaroons / libmacaroons: Macaroon(location='http://mybank/', identifier='we used our
        // secret key', key='this is our super secret key; only we should know it') has the
        // signature e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f.
        let m = Macaroon::mint(
            b"this is our super secret key; only we should know it",
            b"http://mybank/",
            b"we used our secret key",
            vec![],
        );
        let hex: String = m.signature.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [&b""[..], b"\x01", b"\x02", b"\x02\x02\x05abc", b"\x02\x02\x01a\x00\x00\x06\x01x"] {
            assert!(Macaroon::deserialize_v2(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Macaroon::deserialize_v2(&bytes);
        }
    }
}
