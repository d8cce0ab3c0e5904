//! An RSA key's OpenSSH public key line, encoded by hand (not by the crate the server reads it
//! with): shared by the Refstack tests and benchmark, which sign uploads with such keys.

use base64::Engine;
use rsa::traits::PublicKeyParts;

/// `ssh-rsa BASE64 COMMENT` of `key`.
pub fn public_key_line(key: &impl PublicKeyParts, comment: &str) -> String {
    let line = rsa_line(&key.e().to_bytes_be(), &key.n().to_bytes_be());
    format!("{line} {comment}")
}

/// `ssh-rsa BASE64` of the RSA key of exponent `e` and modulus `n` (big-endian), whatever
/// their size.
pub fn rsa_line(e: &[u8], n: &[u8]) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&7u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-rsa");
    mpint(&mut blob, e);
    mpint(&mut blob, n);
    format!(
        "ssh-rsa {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// An SSH mpint: big-endian, with a zero byte before a set high bit.
fn mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let pad = bytes.first().is_some_and(|b| b & 0x80 != 0);
    out.extend_from_slice(&((bytes.len() + usize::from(pad)) as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(bytes);
}
