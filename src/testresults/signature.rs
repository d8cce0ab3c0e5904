//! The optional signature of a `POST /v1/results/` body, as refstack-client makes it:
//! `X-Signature` is the hex of an RSA PKCS#1 v1.5 signature over SHA-256 of the raw body, and
//! `X-Public-Key` the signer's OpenSSH public key line (`ssh-rsa AAAA… comment`). Pure: no
//! I/O, no clock; hostile headers give a typed error, never a panic.

use base64::Engine;
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256};

/// The longest public key line or signature accepted, in bytes: a 16,384-bit key is well under.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The largest RSA modulus accepted, in bits: the largest key ssh-keygen makes. (The `rsa`
/// crate's own default stops at 4096, and refstack-client signs with whatever key it is given.)
pub const MAX_KEY_BITS: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Signature and X-Public-Key go together: give both or neither")]
    Incomplete,
    #[error("X-Signature is not hex")]
    BadHex,
    #[error("X-Public-Key is not an OpenSSH RSA public key: {0}")]
    BadKey(&'static str),
    #[error("X-Public-Key is a {0}-bit key; keys up to {MAX_KEY_BITS} bits are taken")]
    KeyTooLarge(usize),
    #[error("the signature does not verify with this public key")]
    Mismatch,
}

/// A body's signer: the public key line that verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// `ssh-rsa <base64>`, without the comment.
    pub public_key: String,
}

/// Verifies the signature of `body`, when one is given.
pub fn verify(
    body: &[u8],
    signature: Option<&str>,
    public_key: Option<&str>,
) -> Result<Option<Signer>, SignatureError> {
    let (signature, public_key) = match (signature, public_key) {
        (None, None) => return Ok(None),
        (Some(signature), Some(public_key)) => (signature.trim(), public_key.trim()),
        _ => return Err(SignatureError::Incomplete),
    };
    if signature.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::BadHex);
    }
    let signature = hex::decode(signature).map_err(|_| SignatureError::BadHex)?;
    let (key, line) = parse_openssh(public_key)?;
    let digest = Sha256::digest(body);
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(Some(Signer { public_key: line }))
}

/// Reads `ssh-rsa <base64> [comment]`: the base64 holds the string `ssh-rsa`, then the
/// exponent and the modulus as SSH mpints (RFC 4253, section 6.6).
fn parse_openssh(line: &str) -> Result<(RsaPublicKey, String), SignatureError> {
    if line.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::BadKey("it is too long"));
    }
    let mut words = line.split_ascii_whitespace();
    let (Some("ssh-rsa"), Some(encoded)) = (words.next(), words.next()) else {
        return Err(SignatureError::BadKey(
            "it does not start with ssh-rsa and a key",
        ));
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| SignatureError::BadKey("the key is not base64"))?;
    let mut rest = blob.as_slice();
    let mut field = || -> Result<&[u8], SignatureError> {
        let bad = SignatureError::BadKey("the key is truncated");
        let (length, tail) = rest.split_first_chunk::<4>().ok_or(bad.clone())?;
        let length = u32::from_be_bytes(*length) as usize;
        if tail.len() < length {
            return Err(bad);
        }
        let (value, tail) = tail.split_at(length);
        rest = tail;
        Ok(value)
    };
    if field()? != b"ssh-rsa" {
        return Err(SignatureError::BadKey("the key is not an RSA key"));
    }
    let exponent = BigUint::from_bytes_be(field()?);
    let modulus = BigUint::from_bytes_be(field()?);
    let bits = modulus.bits();
    if bits > MAX_KEY_BITS {
        return Err(SignatureError::KeyTooLarge(bits));
    }
    let key = RsaPublicKey::new_with_max_size(modulus, exponent, MAX_KEY_BITS)
        .map_err(|_| SignatureError::BadKey("the key's numbers are not an RSA key"))?;
    Ok((key, format!("ssh-rsa {encoded}")))
}
