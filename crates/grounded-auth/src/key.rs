//! The API key format: generating a key, parsing a presented one, and
//! checking its secret against the stored hash.
//!
//! A key reads `gnd_<id>_<secret><checksum>`, 66 characters:
//!
//! - `gnd_`, a prefix secret scanners can look for ([`KEY_PATTERN`]);
//! - the id, 12 characters of lowercase base32 (60 random bits): public,
//!   what lists, logs and the usage ledger name the key by;
//! - the secret, 43 characters of base62 (256 random bits);
//! - a checksum, the CRC32 of everything before it in 6 characters of
//!   base62, so a mistyped or made-up key is refused without a database
//!   lookup, and a scanner can tell a real key from a lookalike.
//!
//! Only the SHA-256 of the secret is stored. A plain hash (no salt, no slow
//! key derivation) is enough because the secret is 256 random bits, not a
//! password a person chose: nothing can be guessed from its hash.
//!
//! This module knows nothing of the store; see
//! [`Authenticator`](crate::Authenticator) for the lookup.

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::MalformedKey;

/// What every key starts with.
pub const KEY_PREFIX: &str = "gnd_";

/// A regular expression matching exactly our keys, for secret scanners.
pub const KEY_PATTERN: &str = r"gnd_[a-z2-7]{12}_[0-9A-Za-z]{49}";

/// Characters of the public id.
pub const ID_LEN: usize = 12;

/// Characters of the secret: 43 base62 characters hold 256.03 bits.
pub const SECRET_LEN: usize = 43;

/// Characters of the checksum: 62^6 exceeds 2^32, so any CRC32 fits.
pub const CHECKSUM_LEN: usize = 6;

/// Characters of a whole key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A whole API key, secret included.
///
/// It is handed out once, when the key is created or rotated, and never
/// stored. It is neither `Clone` nor `Display`, and its `Debug` shows only
/// the public id, so it does not end up in a log by accident; read it with
/// [`expose_secret`](Self::expose_secret) to show it to the operator.
pub struct ApiKey(String);

impl ApiKey {
    /// The whole key, to print once for the person who asked for it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The public id part.
    pub fn id(&self) -> &str {
        &self.0[KEY_PREFIX.len()..KEY_PREFIX.len() + ID_LEN]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({KEY_PREFIX}{}_…)", self.id())
    }
}

/// A freshly generated key and what to store about it.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The public id, to store as the record's id.
    pub id: String,
    /// The whole key, to show once.
    pub key: ApiKey,
    /// Lowercase hex SHA-256 of the secret, to store.
    pub secret_hash: String,
}

/// Generates a key from the thread's CSPRNG (ChaCha, seeded by the OS).
pub fn generate_key() -> GeneratedKey {
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect();
    let secret: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();

    let body = format!("{KEY_PREFIX}{id}_{secret}");
    let key = format!("{body}{}", checksum(&body));

    GeneratedKey {
        secret_hash: hash_secret(&secret),
        id,
        key: ApiKey(key),
    }
}

/// A presented key whose shape and checksum are right. Whether it exists
/// and its secret matches is for the store to say.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    id: &'a str,
    secret: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// Parses a presented key.
    ///
    /// # Errors
    /// [`MalformedKey`] when it is not exactly prefix, id, separator, secret
    /// and checksum, or the checksum does not match.
    pub fn parse(key: &'a str) -> Result<Self, MalformedKey> {
        let malformed = |reason| MalformedKey { reason };

        let rest = key
            .strip_prefix(KEY_PREFIX)
            .ok_or(malformed("missing gnd_ prefix"))?;
        if key.len() != KEY_LEN || !key.is_ascii() {
            return Err(malformed("wrong length"));
        }

        let (id, rest) = rest.split_at(ID_LEN);
        let (separator, rest) = rest.split_at(1);
        let (secret, sum) = rest.split_at(SECRET_LEN);
        if !id.bytes().all(|b| ID_ALPHABET.contains(&b)) || separator != "_" {
            return Err(malformed("bad id"));
        }
        if !secret
            .bytes()
            .chain(sum.bytes())
            .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(malformed("bad secret"));
        }

        let body = &key[..key.len() - CHECKSUM_LEN];
        if checksum(body).as_bytes().ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
            return Err(malformed("checksum does not match"));
        }
        Ok(ParsedKey { id, secret })
    }

    /// The public id part.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// Whether the secret hashes to `stored_hash`, compared in constant
    /// time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        verify_secret(self.secret, stored_hash)
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"…")
            .finish()
    }
}

/// Lowercase hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_hash` (lowercase or uppercase hex).
///
/// The digests are compared in constant time, so the time taken says
/// nothing about how much of the hash matched. A stored hash that is not
/// 64 hex digits matches nothing.
pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
    let Ok(stored) = hex::decode(stored_hash) else {
        return false;
    };
    let presented = Sha256::digest(secret.as_bytes());
    presented.as_slice().ct_eq(&stored).into()
}

/// The CRC32 of `body` in fixed-width base62.
fn checksum(body: &str) -> String {
    let mut value = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().copied().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    #[test]
    fn generated_key_has_the_documented_shape() {
        let generated = generate_key();
        let key = generated.key.expose_secret();

        assert_eq!(key.len(), KEY_LEN);
        assert!(
            Regex::new(&format!("^{KEY_PATTERN}$"))
                .unwrap()
                .is_match(key)
        );
        assert_eq!(generated.key.id(), generated.id);
        assert!(key.starts_with(&format!("gnd_{}_", generated.id)));
    }

    #[test]
    fn generated_key_parses_and_matches_its_hash() {
        let generated = generate_key();

        let parsed = ParsedKey::parse(generated.key.expose_secret()).unwrap();

        assert_eq!(parsed.id(), generated.id);
        assert!(parsed.matches(&generated.secret_hash));
    }

    #[test]
    fn stored_hash_is_the_sha256_of_the_secret_part() {
        let generated = generate_key();
        let key = generated.key.expose_secret();
        let secret = &key[KEY_PREFIX.len() + ID_LEN + 1..KEY_LEN - CHECKSUM_LEN];

        assert_eq!(secret.len(), SECRET_LEN);
        assert_eq!(generated.secret_hash, hash_secret(secret));
        assert_eq!(generated.secret_hash.len(), 64);
        assert_eq!(generated.secret_hash, generated.secret_hash.to_lowercase());
    }

    #[test]
    fn keys_differ() {
        let a = generate_key();
        let b = generate_key();

        assert_ne!(a.id, b.id);
        assert_ne!(a.secret_hash, b.secret_hash);
    }

    #[test]
    fn any_changed_character_fails_the_checksum_or_the_shape() {
        let generated = generate_key();
        let key = generated.key.expose_secret();

        for i in KEY_PREFIX.len()..key.len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();

            assert!(ParsedKey::parse(&changed).is_err(), "position {i} accepted");
        }
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        let generated = generate_key();
        let key = generated.key.expose_secret();
        let cases = [
            (String::new(), "missing gnd_ prefix"),
            (key.replacen("gnd_", "gnx_", 1), "missing gnd_ prefix"),
            (key[..key.len() - 1].to_owned(), "wrong length"),
            (format!("{key}x"), "wrong length"),
            (key.to_uppercase().replacen("GND_", "gnd_", 1), "bad id"),
            (format!("{}-{}", &key[..16], &key[17..]), "bad id"),
            (format!("{}!{}", &key[..30], &key[31..]), "bad secret"),
        ];

        for (presented, reason) in cases {
            assert_eq!(ParsedKey::parse(&presented).unwrap_err().reason, reason);
        }
    }

    #[test]
    fn a_made_up_key_of_the_right_shape_fails_the_checksum() {
        let fake = format!(
            "gnd_{}_{}",
            "a".repeat(ID_LEN),
            "A".repeat(SECRET_LEN + CHECKSUM_LEN)
        );

        assert_eq!(
            ParsedKey::parse(&fake).unwrap_err().reason,
            "checksum does not match"
        );
    }

    #[test]
    fn verify_secret_refuses_a_different_secret_and_bad_hashes() {
        let hash = hash_secret("right");

        assert!(verify_secret("right", &hash));
        assert!(verify_secret("right", &hash.to_uppercase()));
        assert!(!verify_secret("wrong", &hash));
        assert!(!verify_secret("right", &hash[..62]));
        assert!(!verify_secret("right", "not hex"));
        assert!(!verify_secret("right", ""));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let generated = generate_key();
        let key = generated.key.expose_secret();
        let secret = &key[KEY_PREFIX.len() + ID_LEN + 1..];
        let parsed = ParsedKey::parse(key).unwrap();

        for shown in [format!("{:?}", generated), format!("{parsed:?}")] {
            assert!(shown.contains(&generated.id), "{shown}");
            assert!(!shown.contains(&secret[..8]), "{shown}");
        }
    }

    #[test]
    fn checksum_is_fixed_width_base62() {
        assert_eq!(checksum(""), "000000");
        for body in ["a", "gnd_x", "something longer"] {
            let sum = checksum(body);

            assert_eq!(sum.len(), CHECKSUM_LEN);
            assert!(sum.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
