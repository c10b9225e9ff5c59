//! API keys: `strata_<id>_<secret>`.
//!
//! - `<id>`: 12 lowercase hex characters (6 random bytes). Public: stored in clear and used
//!   to find the key's row; it may appear in logs and in the key list.
//! - `<secret>`: 64 lowercase hex characters (32 random bytes, 256 bits). Shown once, never
//!   stored: the database keeps [`hash_secret`] of it.
//!
//! Hex rather than base64url because base64url's alphabet contains `_`, the separator, and
//! `-`, which breaks double-click selection in terminals.
//!
//! The secret has 256 bits of entropy, so a fast domain-separated hash (BLAKE3 in key
//! derivation mode) is the right tool; a password hash (argon2) would only cost CPU on
//! every request without adding security.

use std::fmt;
use strata_core::errors::ErrorCode;

use subtle::ConstantTimeEq;

use strata_core::model::FieldError;

/// What every API key starts with (lets the middleware and secret scanners recognise one).
pub const PREFIX: &str = "strata_";
/// Length of the public id, in hex characters.
pub const ID_LEN: usize = 12;
/// Length of the secret, in hex characters.
pub const SECRET_LEN: usize = 64;
/// Length of a whole key: `strata_` + id + `_` + secret.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// BLAKE3 key-derivation context: changing it invalidates every stored hash.
const HASH_CONTEXT: &str = "strata 2026-11 api key secret hash v1";

/// The environment variable [`from_bootstrap`] errors name.
pub const BOOTSTRAP_VAR: &str = "STRATA_BOOTSTRAP_ADMIN_KEY";

/// A freshly made key: store `id` and `hash`, show `token` once.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// Public id (12 lowercase hex characters), the row's lookup key.
    pub id: String,
    /// The whole key, `strata_<id>_<secret>`: shown to the caller once, never stored or logged.
    pub token: String,
    /// [`hash_secret`] of the secret, hex: what the database stores.
    pub hash: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .field("hash", &self.hash)
            .finish()
    }
}

/// A key split into its parts by [`parse`]; the parts are well-formed, not yet verified.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// A new random key.
pub fn generate() -> GeneratedKey {
    let mut id = [0u8; ID_LEN / 2];
    let mut secret = [0u8; SECRET_LEN / 2];
    rand::fill(&mut id);
    rand::fill(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    let hash = hash_secret(&id, &secret);
    let token = format!("{PREFIX}{id}_{secret}");
    GeneratedKey { id, token, hash }
}

/// Whether `token` claims to be an API key (starts with `strata_`): lets the middleware
/// route a bearer token to the API key path rather than the JWT path. Says nothing about
/// validity.
pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Splits a key into id and secret; `None` for anything that is not exactly
/// `strata_<12 lowercase hex>_<64 lowercase hex>`. Never panics.
pub fn parse(token: &str) -> Option<ParsedKey> {
    let bytes = token.as_bytes();
    if bytes.len() != TOKEN_LEN || !token.starts_with(PREFIX) {
        return None;
    }
    let id_start = PREFIX.len();
    let sep = id_start + ID_LEN;
    let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if bytes[sep] != b'_'
        || !bytes[id_start..sep].iter().all(is_hex)
        || !bytes[sep + 1..].iter().all(is_hex)
    {
        return None;
    }
    // Every byte checked above is ASCII, so these are char boundaries.
    Some(ParsedKey {
        id: token[id_start..sep].to_string(),
        secret: token[sep + 1..].to_string(),
    })
}

/// The stored form of a secret: BLAKE3 (key derivation mode, context
/// `strata 2026-11 api key secret hash v1`) of the length-prefixed id and the secret,
/// 64 lowercase hex characters. Binding the id means a hash copied to another row
/// does not verify there.
pub fn hash_secret(id: &str, secret: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT);
    hasher.update(&(id.len() as u64).to_le_bytes());
    hasher.update(id.as_bytes());
    hasher.update(secret.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// Whether `parsed`'s secret is the one `stored_hash` was made from, compared in constant
/// time.
pub fn verify(parsed: &ParsedKey, stored_hash: &str) -> bool {
    let computed = hash_secret(&parsed.id, &parsed.secret);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// What a key looks like, for error messages and docs (never contains a key).
pub fn format_hint() -> &'static str {
    "strata_<12 lowercase hex characters>_<64 lowercase hex characters>, \
     e.g. generated with: echo \"strata_$(openssl rand -hex 6)_$(openssl rand -hex 32)\""
}

/// The operator's chosen first admin key (`STRATA_BOOTSTRAP_ADMIN_KEY`): it must have the
/// format of a generated key. The error names the variable and the format, never the value.
pub fn from_bootstrap(token: &str) -> Result<GeneratedKey, FieldError> {
    let token = token.trim();
    let parsed = parse(token).ok_or_else(|| {
        FieldError::new(
            ErrorCode::InvalidBootstrapKey,
            BOOTSTRAP_VAR,
            format!("must be an API key of the form {}", format_hint()),
        )
    })?;
    let hash = hash_secret(&parsed.id, &parsed.secret);
    Ok(GeneratedKey {
        id: parsed.id,
        token: token.to_string(),
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let key = generate();
        assert_eq!(key.token.len(), TOKEN_LEN);
        assert!(key.token.starts_with(PREFIX));
        assert!(looks_like_api_key(&key.token));
        assert_eq!(key.id.len(), ID_LEN);
        let parsed = parse(&key.token).expect("a generated key parses");
        assert_eq!(parsed.id, key.id);
        assert_eq!(key.hash.len(), 64);
        assert_eq!(key.hash, hash_secret(&parsed.id, &parsed.secret));
        assert!(verify(&parsed, &key.hash));
        // Two keys differ.
        let other = generate();
        assert_ne!(other.id, key.id);
        assert_ne!(other.token, key.token);
        assert!(!verify(&parse(&other.token).unwrap(), &key.hash));
    }

    #[test]
    fn key_tampered_secret_is_rejected() {
        let key = generate();
        let mut parsed = parse(&key.token).unwrap();
        let last = parsed.secret.pop().unwrap();
        parsed.secret.push(if last == '0' { '1' } else { '0' });
        assert!(!verify(&parsed, &key.hash));
    }

    #[test]
    fn key_hash_is_bound_to_the_id() {
        let key = generate();
        let mut parsed = parse(&key.token).unwrap();
        parsed.id = "000000000000".into();
        assert!(!verify(&parsed, &key.hash));
    }

    #[test]
    fn key_verify_rejects_malformed_stored_hashes() {
        let key = generate();
        let parsed = parse(&key.token).unwrap();
        assert!(!verify(&parsed, ""));
        assert!(!verify(&parsed, &key.hash[..63]));
        assert!(!verify(&parsed, &key.hash.to_uppercase()));
        assert!(!verify(&parsed, &format!("{}0", key.hash)));
    }

    #[test]
    fn key_hash_is_stable() {
        // Stored hashes must survive upgrades: pin the construction.
        let id = "0123456789ab";
        let secret = "00".repeat(32);
        let mut h = blake3::Hasher::new_derive_key("strata 2026-11 api key secret hash v1");
        h.update(&12u64.to_le_bytes());
        h.update(id.as_bytes());
        h.update(secret.as_bytes());
        assert_eq!(hash_secret(id, &secret), h.finalize().to_hex().to_string());
        assert_ne!(
            hash_secret(id, &secret),
            hash_secret("0123456789ac", &secret)
        );
    }

    #[test]
    fn key_parse_rejects_garbage() {
        let good = generate().token;
        let long = "a".repeat(1 << 20);
        let cases: Vec<String> = vec![
            String::new(),
            "strata_".into(),
            "strata__".into(),
            "Bearer x".into(),
            long,
            format!("{good}0"),
            good[..good.len() - 1].to_string(),
            good.replacen("strata_", "strata-", 1),
            good.replacen("strata_", "Strata_", 1),
            good.replacen("strata_", "strato_", 1),
            good.to_uppercase(),
            // separator moved / replaced
            format!("{}-{}", &good[..19], &good[20..]),
            format!("{}_{}", &good[..18], &good[19..]),
            // non-hex in id and in secret
            format!("{}g{}", &good[..7], &good[8..]),
            format!("{}z", &good[..good.len() - 1]),
            format!("{}A", &good[..good.len() - 1]),
            // whitespace
            format!(" {}", &good[1..]),
            format!("{} ", &good[..good.len() - 1]),
            // unicode of the right byte length and of the right char length
            format!("{}é{}", &good[..7], &good[9..]),
            format!("{}é", &good[..good.len() - 2]),
            format!("strata_{}_{}", "é".repeat(6), "0".repeat(64)),
            format!("strata_{}_{}", "0".repeat(12), "ü".repeat(64)),
            "strata_".to_string() + &"🔑".repeat(19),
            "\0".repeat(TOKEN_LEN),
        ];
        for case in &cases {
            assert!(parse(case).is_none(), "accepted {case:?}");
        }
        // Every single-byte length around the right one, and every byte value at every
        // position of a valid key: parse never panics.
        for len in 0..200 {
            let _ = parse(&"f".repeat(len));
        }
        for pos in 0..good.len() {
            for b in 0u8..128 {
                let mut bytes = good.clone().into_bytes();
                bytes[pos] = b;
                let s = String::from_utf8(bytes).unwrap();
                let _ = parse(&s);
            }
        }
    }

    #[test]
    fn key_debug_does_not_show_secrets() {
        let key = generate();
        let parsed = parse(&key.token).unwrap();
        let debug = format!("{key:?} {parsed:?}");
        assert!(!debug.contains(&parsed.secret), "{debug}");
        assert!(debug.contains(&key.id));
        assert!(debug.contains("[REDACTED]"));
    }

    #[test]
    fn key_from_bootstrap() {
        let chosen = generate();
        let key = from_bootstrap(&format!("  {}\n", chosen.token)).unwrap();
        assert_eq!(key, chosen);

        let err = from_bootstrap("my-very-secret-admin-password-0123456789").unwrap_err();
        assert_eq!(err.code, "invalid_bootstrap_key");
        assert_eq!(err.field, BOOTSTRAP_VAR);
        assert!(err.message.contains("strata_<12"), "{}", err.message);
        assert!(!err.message.contains("my-very-secret"), "{}", err.message);
        assert!(!format_hint().is_empty());
    }
}
