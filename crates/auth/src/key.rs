//! The key format: generation, parsing, hashing and the constant-time comparison.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every Gleitzeit API key starts with this.
pub const KEY_PREFIX: &str = "gzt_";

const ID_HEX: usize = 12;
const SECRET_BYTES: usize = 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh key: its public id and the whole key string `gzt_<id>_<secret>`.
pub(crate) fn generate() -> (String, String) {
    let mut rng = rand::rng();
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let key = format!("{KEY_PREFIX}{id}_{}", hex(&secret));
    (id, key)
}

/// The id of a well-formed key, or `None`.
pub fn parse_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == ID_HEX
        && secret.len() == SECRET_BYTES * 2
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(id)
}

/// The stored form of a key: hex SHA-256 of the whole key string. Keys carry 256 random
/// bits, so a fast hash is enough (no password-stretching needed).
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Compares two hashes without leaking where they differ.
pub(crate) fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let (id, key) = generate();
        assert_eq!(parse_key(&key), Some(id.as_str()));
        assert_ne!(generate().1, key);
        assert_eq!(hash_key(&key).len(), 64);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "gzt_",
            "gzt_abc_def",
            "xyz_0123456789ab_00",
            "gzt_0123456789ag_",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
