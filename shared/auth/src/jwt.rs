//! Bearer JWTs from an identity provider.
//!
//! Accepted: HS256 with a secret chosen by the header's `kid` from
//! [`JwtConfig::hs256_keys`] (several keys at once, so a secret can be rotated with a grace
//! period), and RS256 / ES256 (P-256) with a public key chosen by `kid` from a JWKS document.
//! Everything else is refused with [`AuthError::Invalid`]: a missing `kid`, an unknown `kid`,
//! `alg: none` or any other algorithm, a header algorithm that is not the key's, a `crit`
//! header, a bad signature.
//!
//! Claims are checked here rather than by `jsonwebtoken` so that the clock can be injected
//! (`now`, unix seconds), in this order:
//! `iss` (when configured) → `aud` (when configured) → `sub` → the role claim → `nbf` → `exp`.
//! Every failure is [`AuthError::Invalid`] except an `exp` older than `now - leeway` on an
//! otherwise valid token, which is [`AuthError::Expired`]. A token whose `nbf` is later than
//! `now + leeway` is **Invalid** (it is not expired; it is not valid yet).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Once;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

pub use super::AuthError;
use super::Role;
use strata_core::config::Secret;

/// The signature algorithms of `jsonwebtoken`; only HS256, RS256 and ES256 are accepted.
pub use jsonwebtoken::Algorithm;

/// Default allowance for clock skew on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Default name of the claim that holds the caller's role.
pub const DEFAULT_ROLE_CLAIM: &str = "role";
/// Longer bearer tokens are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// HS256 secrets shorter than this are refused by [`JwtConfig::validate`] (RFC 7518 §3.2:
/// a key at least as long as the hash output).
pub const MIN_HS256_SECRET_LEN: usize = 32;
/// RSA keys of a JWKS with a shorter modulus are skipped.
pub const MIN_RSA_BITS: usize = 2048;

/// How JWTs are verified. `Default` accepts nothing (no keys), with a 60 s leeway and the
/// role in the `role` claim.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// HS256 secrets by `kid`. Several at once: during a rotation, the old key stays listed
    /// until the last token signed with it has expired. The secret's UTF-8 bytes are the
    /// HMAC key.
    pub hs256_keys: Vec<(String, Secret)>,
    /// RS256 / ES256 public keys by `kid`, from a JWKS document.
    pub jwks: Option<Jwks>,
    /// When set, the `iss` claim must equal it.
    pub issuer: Option<String>,
    /// When set, the `aud` claim (a string or an array of strings) must contain it.
    /// Leaving it unset accepts tokens minted for any audience by the same issuer/keys:
    /// set it whenever the identity provider serves more than Strata.
    pub audience: Option<String>,
    /// Allowance for clock skew on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Name of the claim holding the role: a string, or an array of strings (the most
    /// powerful known role wins; unknown strings are ignored). Looked up as a top-level
    /// claim first; if there is none and the name contains dots, as a path into nested
    /// objects (`realm_access.roles`). A name such as `https://strata.example/role`
    /// therefore works as a top-level claim.
    pub role_claim: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_keys: Vec::new(),
            jwks: None,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            role_claim: DEFAULT_ROLE_CLAIM.to_string(),
        }
    }
}

impl JwtConfig {
    /// Whether any key is configured (otherwise every JWT is refused).
    pub fn is_enabled(&self) -> bool {
        !self.hs256_keys.is_empty() || self.jwks.as_ref().is_some_and(|j| !j.is_empty())
    }

    /// Checks the configuration at start-up: non-empty and unique HS256 `kid`s, HS256
    /// secrets of at least [`MIN_HS256_SECRET_LEN`] bytes, a non-empty role claim, a leeway
    /// of at most 10 minutes. Errors name the `kid`, never a secret.
    pub fn validate(&self) -> Result<(), AuthError> {
        let mut seen = std::collections::HashSet::new();
        for (kid, secret) in &self.hs256_keys {
            if kid.is_empty() {
                return Err(AuthError::Config("an HS256 key has an empty kid".into()));
            }
            if !seen.insert(kid.as_str()) {
                return Err(AuthError::Config(format!(
                    "HS256 kid {kid:?} is configured more than once"
                )));
            }
            if secret.expose().len() < MIN_HS256_SECRET_LEN {
                return Err(AuthError::Config(format!(
                    "the HS256 secret of kid {kid:?} must be at least {MIN_HS256_SECRET_LEN} bytes"
                )));
            }
        }
        if self.role_claim.trim().is_empty() {
            return Err(AuthError::Config("the JWT role claim name is empty".into()));
        }
        if self.leeway_secs > 600 {
            return Err(AuthError::Config(format!(
                "a JWT leeway of {} s is more than the 600 s allowed",
                self.leeway_secs
            )));
        }
        Ok(())
    }
}

/// Public keys by `kid`, parsed from a JWKS document (RFC 7517).
#[derive(Clone, Default)]
pub struct Jwks {
    keys: HashMap<String, JwksKey>,
}

#[derive(Clone)]
struct JwksKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.iter().map(|(k, v)| (k.as_str(), v.alg)).collect();
        kids.sort_by_key(|(kid, _)| *kid);
        f.debug_struct("Jwks").field("keys", &kids).finish()
    }
}

impl Jwks {
    /// Parses a JWKS document. Keeps RSA keys of at least 2048 bits (as RS256) and EC P-256
    /// keys (as ES256) that have a `kid`, whose `alg` (if any) is that algorithm, whose `use`
    /// (if any) is `sig` and whose `key_ops` (if any) include `verify`; skips every other
    /// key without error (other key types and curves, encryption keys, symmetric keys,
    /// unparsable entries). Errors: not JSON, no `keys` array, or two kept keys with one
    /// `kid` (ambiguous).
    pub fn parse(json: &[u8]) -> Result<Self, AuthError> {
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| AuthError::Config(format!("JWKS document is not valid JSON: {e}")))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AuthError::Config("JWKS document has no \"keys\" array".into()))?;
        let mut keys = HashMap::new();
        for entry in entries {
            let Some((kid, key)) = usable_jwk(entry) else {
                let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("");
                let (kid, kty) = (field("kid"), field("kty"));
                tracing::debug!(
                    kid,
                    kty,
                    "JWKS key skipped: not an RS256 or ES256 signing key"
                );
                continue;
            };
            if keys.insert(kid.clone(), key).is_some() {
                return Err(AuthError::Config(format!(
                    "JWKS document has two keys with kid {kid:?}"
                )));
            }
        }
        Ok(Self { keys })
    }

    /// Reads and parses a JWKS file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|e| {
            AuthError::Config(format!("cannot read JWKS file {}: {e}", path.display()))
        })?;
        Self::parse(&bytes)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys (any order).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The algorithm a `kid`'s key verifies, if the set has that `kid`.
    pub fn algorithm(&self, kid: &str) -> Option<Algorithm> {
        self.keys.get(kid).map(|k| k.alg)
    }
}

fn usable_jwk(entry: &Value) -> Option<(String, JwksKey)> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return None,
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return None;
        }
    }
    let declared = jwk.common.key_algorithm;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            if !matches!(declared, None | Some(KeyAlgorithm::RS256)) {
                return None;
            }
            if modulus_bits(&rsa.n)? < MIN_RSA_BITS {
                return None;
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            if ec.curve != EllipticCurve::P256
                || !matches!(declared, None | Some(KeyAlgorithm::ES256))
                || b64url_decode(&ec.x)?.len() != 32
                || b64url_decode(&ec.y)?.len() != 32
            {
                return None;
            }
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, JwksKey { alg, key }))
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn modulus_bits(n: &str) -> Option<usize> {
    let bytes = b64url_decode(n)?;
    let first = bytes.iter().position(|&b| b != 0)?;
    let significant = &bytes[first..];
    Some(significant.len() * 8 - significant[0].leading_zeros() as usize)
}

/// Who a verified JWT says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The `sub` claim.
    pub subject: String,
    pub role: Role,
    /// The `exp` claim (without leeway).
    pub expires_at: DateTime<Utc>,
    /// The `iss` claim, when it is a string.
    pub issuer: Option<String>,
    /// The header's `kid`: which key verified the token.
    pub key_id: String,
}

/// Whether `token` has the shape of a compact JWS: three non-empty base64url segments
/// separated by dots. Lets the middleware route a bearer token to [`verify`] or to the API
/// key path; says nothing about validity. (An unsigned `alg: none` token, whose third
/// segment is empty, does not look like a JWT.)
pub fn looks_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        if segments > 3
            || segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    segments == 3
}

/// Installs `jsonwebtoken`'s aws-lc-rs provider unless one is installed already: without
/// it, enabling its `rust_crypto` feature anywhere in the build (feature unification)
/// would make every verification panic.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
    });
}

/// Verifies a bearer JWT at time `now` (unix seconds). See the module documentation for
/// the rules and which error each failure gives.
pub fn verify(token: &str, cfg: &JwtConfig, now: i64) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN_LEN || !looks_like_jwt(token) {
        return Err(AuthError::Invalid);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
    // No extension is understood (RFC 7515 §4.1.11); JWE-only parameters mean it is not a JWS.
    if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
        return Err(AuthError::Invalid);
    }
    let kid = header
        .kid
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(AuthError::Invalid)?;
    let key = match header.alg {
        Algorithm::HS256 => {
            let (_, secret) = cfg
                .hs256_keys
                .iter()
                .find(|(k, _)| *k == kid)
                .ok_or(AuthError::Invalid)?;
            DecodingKey::from_secret(secret.expose().as_bytes())
        }
        Algorithm::RS256 | Algorithm::ES256 => {
            let entry = cfg
                .jwks
                .as_ref()
                .and_then(|j| j.keys.get(&kid))
                .ok_or(AuthError::Invalid)?;
            if entry.alg != header.alg {
                return Err(AuthError::Invalid);
            }
            entry.key.clone()
        }
        _ => return Err(AuthError::Invalid),
    };

    // Signature and algorithm only; the claims are checked below with the injected clock.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    ensure_crypto_provider();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|_| AuthError::Invalid)?;
    check_claims(&data.claims, cfg, now, kid)
}

fn check_claims(
    claims: &Map<String, Value>,
    cfg: &JwtConfig,
    now: i64,
    kid: String,
) -> Result<Claims, AuthError> {
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(expected) = &cfg.issuer {
        if issuer.as_deref() != Some(expected.as_str()) {
            return Err(AuthError::Invalid);
        }
    }
    if let Some(expected) = &cfg.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == expected,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected)),
            _ => false,
        };
        if !ok {
            return Err(AuthError::Invalid);
        }
    }
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(AuthError::Invalid),
    };
    let role = role_from_claims(claims, &cfg.role_claim).ok_or(AuthError::Invalid)?;

    let leeway = i64::try_from(cfg.leeway_secs).unwrap_or(i64::MAX);
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(AuthError::Invalid)?;
        if nbf > now.saturating_add(leeway) {
            return Err(AuthError::Invalid);
        }
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(AuthError::Invalid)?;
    let expires_at = DateTime::<Utc>::from_timestamp(exp, 0).ok_or(AuthError::Invalid)?;
    // RFC 7519 §4.1.4: valid only while now is before exp (plus the leeway).
    if now >= exp.saturating_add(leeway) {
        return Err(AuthError::Expired);
    }
    Ok(Claims {
        subject,
        role,
        expires_at,
        issuer,
        key_id: kid,
    })
}

/// A NumericDate: integer seconds, or a finite fractional number (floored).
fn numeric_date(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    if f.is_finite() && f.abs() < 1e15 {
        Some(f.floor() as i64)
    } else {
        None
    }
}

fn role_from_claims(claims: &Map<String, Value>, name: &str) -> Option<Role> {
    let value = match claims.get(name) {
        Some(v) => v,
        None if name.contains('.') => {
            let mut parts = name.split('.');
            let first = claims.get(parts.next()?)?;
            parts.try_fold(first, |v, part| v.get(part))?
        }
        None => return None,
    };
    match value {
        Value::String(s) => Role::from_wire(s),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().and_then(Role::from_wire))
            .max(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Test helpers. Plain public functions so that integration tests in other crates can mint
// tokens; they panic on bad input and must never be called by production code.
// ---------------------------------------------------------------------------------------

/// **Test helper.** An HS256 JWT with header `{"alg":"HS256","typ":"JWT","kid":kid}`
/// signed with `secret`'s bytes.
pub fn sign_hs256_for_tests(claims: &impl serde::Serialize, kid: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    ensure_crypto_provider();
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

/// **Test helper.** A JWT signed with a private key in PEM form: RS256 (PKCS#1 `RSA PRIVATE
/// KEY` or PKCS#8) or ES256 (PKCS#8 `PRIVATE KEY`). Fixtures are in
/// [`super::TESTDATA_DIR`].
pub fn sign_with_pem_for_tests(
    alg: Algorithm,
    kid: &str,
    pem: &str,
    claims: &impl serde::Serialize,
) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(pem.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        other => panic!("sign_with_pem_for_tests: unsupported algorithm {other:?}"),
    }
    .expect("test PEM key");
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    ensure_crypto_provider();
    jsonwebtoken::encode(&header, claims, &key).expect("PEM signing")
}

/// **Test helper.** A token with an arbitrary header (e.g. `{"alg":"RS256","kid":"k"}` or
/// `{"alg":"none"}`) whose signature is HMAC-SHA256 of `header.payload` with
/// `hmac_secret`, whatever the header says: for algorithm-confusion tests.
pub fn forge_for_tests(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    hmac_secret: &[u8],
) -> String {
    let message = format!("{}.{}", b64url_json(header), b64url_json(claims));
    ensure_crypto_provider();
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(hmac_secret),
        Algorithm::HS256,
    )
    .expect("HMAC signing");
    format!("{message}.{signature}")
}

/// **Test helper.** `base64url(header).base64url(claims).` with an empty signature (the
/// shape of an `alg: none` token).
pub fn unsigned_for_tests(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!("{}.{}.", b64url_json(header), b64url_json(claims))
}

fn b64url_json(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const OLD_SECRET: &str = "old-secret-0123456789-0123456789-0123456789";
    const NEW_SECRET: &str = "new-secret-0123456789-0123456789-0123456789";
    const RSA_PEM: &str = include_str!("testdata/rsa_private.pem");
    const RSA_OTHER_PEM: &str = include_str!("testdata/rsa_other_private.pem");
    const EC_PEM: &str = include_str!("testdata/ec_private.pem");
    const JWKS: &str = include_str!("testdata/jwks.json");
    const JWKS_MIXED: &str = include_str!("testdata/jwks_mixed.json");
    const RSA_KID: &str = "test-rsa-1";
    const EC_KID: &str = "test-ec-1";

    fn cfg() -> JwtConfig {
        JwtConfig {
            hs256_keys: vec![
                ("k-old".into(), Secret::new(OLD_SECRET)),
                ("k-new".into(), Secret::new(NEW_SECRET)),
            ],
            jwks: Some(Jwks::parse(JWKS.as_bytes()).unwrap()),
            issuer: Some("https://idp.example".into()),
            audience: Some("strata".into()),
            leeway_secs: 60,
            role_claim: "role".into(),
        }
    }

    fn claims() -> Value {
        json!({
            "sub": "alice",
            "role": "backup_operator",
            "iss": "https://idp.example",
            "aud": "strata",
            "iat": NOW - 10,
            "exp": NOW + 300,
        })
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn without(mut base: Value, key: &str) -> Value {
        base.as_object_mut().unwrap().remove(key);
        base
    }

    fn hs(claims: &Value) -> String {
        sign_hs256_for_tests(claims, "k-new", NEW_SECRET)
    }

    fn assert_invalid(token: &str, cfg: &JwtConfig) {
        match verify(token, cfg, NOW) {
            Err(AuthError::Invalid) => {}
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn jwt_valid_hs256_with_kid() {
        let c = verify(&hs(&claims()), &cfg(), NOW).unwrap();
        assert_eq!(c.subject, "alice");
        assert_eq!(c.role, Role::BackupOperator);
        assert_eq!(c.expires_at.timestamp(), NOW + 300);
        assert_eq!(c.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(c.key_id, "k-new");
    }

    #[test]
    fn jwt_rotation_old_and_new_kids_both_verify() {
        let cfg = cfg();
        let old = sign_hs256_for_tests(&claims(), "k-old", OLD_SECRET);
        let new = sign_hs256_for_tests(&claims(), "k-new", NEW_SECRET);
        assert_eq!(verify(&old, &cfg, NOW).unwrap().key_id, "k-old");
        assert_eq!(verify(&new, &cfg, NOW).unwrap().key_id, "k-new");
        // A kid names the key: the old secret under the new kid is a bad signature.
        assert_invalid(&sign_hs256_for_tests(&claims(), "k-new", OLD_SECRET), &cfg);
        // Once the old key is removed, its tokens stop verifying.
        let mut after = cfg.clone();
        after.hs256_keys.retain(|(kid, _)| kid != "k-old");
        assert_invalid(&old, &after);
        assert!(verify(&new, &after, NOW).is_ok());
    }

    #[test]
    fn jwt_unknown_or_missing_kid_is_invalid() {
        assert_invalid(
            &sign_hs256_for_tests(&claims(), "k-unknown", NEW_SECRET),
            &cfg(),
        );
        assert_invalid(&sign_hs256_for_tests(&claims(), "", NEW_SECRET), &cfg());
        let no_kid = forge_for_tests(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &claims(),
            NEW_SECRET.as_bytes(),
        );
        assert_invalid(&no_kid, &cfg());
        // RS256 with a kid that is only an HS256 kid, and vice versa.
        assert_invalid(
            &sign_with_pem_for_tests(Algorithm::RS256, "k-new", RSA_PEM, &claims()),
            &cfg(),
        );
        assert_invalid(
            &sign_hs256_for_tests(&claims(), RSA_KID, NEW_SECRET),
            &cfg(),
        );
    }

    #[test]
    fn jwt_alg_none_is_invalid() {
        for header in [
            json!({"alg": "none", "kid": "k-new"}),
            json!({"alg": "None", "kid": "k-new"}),
            json!({"alg": "NONE", "kid": "k-new"}),
        ] {
            assert_invalid(&unsigned_for_tests(&header, &claims()), &cfg());
            // Even with a (meaningless) signature attached.
            assert_invalid(
                &forge_for_tests(&header, &claims(), NEW_SECRET.as_bytes()),
                &cfg(),
            );
        }
    }

    #[test]
    fn jwt_other_algorithms_are_invalid() {
        for alg in ["HS384", "HS512", "RS384", "PS256", "ES384", "EdDSA", "XX1"] {
            let t = forge_for_tests(
                &json!({"alg": alg, "kid": "k-new"}),
                &claims(),
                NEW_SECRET.as_bytes(),
            );
            assert_invalid(&t, &cfg());
        }
    }

    #[test]
    fn jwt_hmac_with_rs256_header_is_invalid() {
        // The right HS256 secret, but the header claims RS256 (for an HS kid and for a JWKS kid).
        for kid in ["k-new", RSA_KID] {
            let t = forge_for_tests(
                &json!({"alg": "RS256", "kid": kid}),
                &claims(),
                NEW_SECRET.as_bytes(),
            );
            assert_invalid(&t, &cfg());
        }
        // Classic confusion: HMAC keyed with the RSA public key's bytes, header HS256 with
        // the JWKS kid.
        let jwk: Value = serde_json::from_str(JWKS).unwrap();
        let n = jwk["keys"][0]["n"].as_str().unwrap();
        let t = forge_for_tests(
            &json!({"alg": "HS256", "kid": RSA_KID}),
            &claims(),
            n.as_bytes(),
        );
        assert_invalid(&t, &cfg());
    }

    #[test]
    fn jwt_alg_must_match_the_jwks_key() {
        // An ES256 token under the RSA key's kid, and an RS256 token under the EC key's kid.
        assert_invalid(
            &sign_with_pem_for_tests(Algorithm::ES256, RSA_KID, EC_PEM, &claims()),
            &cfg(),
        );
        assert_invalid(
            &sign_with_pem_for_tests(Algorithm::RS256, EC_KID, RSA_PEM, &claims()),
            &cfg(),
        );
    }

    #[test]
    fn jwt_expiry_and_leeway() {
        let cfg = cfg();
        // Expired 30 s ago: within the 60 s leeway.
        let t = hs(&with(claims(), "exp", json!(NOW - 30)));
        assert!(verify(&t, &cfg, NOW).is_ok());
        // Expired 61 s ago: beyond it.
        let t = hs(&with(claims(), "exp", json!(NOW - 61)));
        assert!(matches!(verify(&t, &cfg, NOW), Err(AuthError::Expired)));
        // Boundary: valid strictly before exp + leeway.
        let t = hs(&with(claims(), "exp", json!(NOW - 60)));
        assert!(matches!(verify(&t, &cfg, NOW), Err(AuthError::Expired)));
        assert!(verify(&t, &cfg, NOW - 1).is_ok());
        // No leeway.
        let strict = JwtConfig {
            leeway_secs: 0,
            ..cfg.clone()
        };
        let t = hs(&with(claims(), "exp", json!(NOW - 1)));
        assert!(matches!(verify(&t, &strict, NOW), Err(AuthError::Expired)));
        // Fractional NumericDate.
        let t = hs(&with(claims(), "exp", json!((NOW + 100) as f64 + 0.5)));
        assert_eq!(
            verify(&t, &cfg, NOW).unwrap().expires_at.timestamp(),
            NOW + 100
        );
    }

    #[test]
    fn jwt_exp_is_required_and_numeric() {
        assert_invalid(&hs(&without(claims(), "exp")), &cfg());
        assert_invalid(&hs(&with(claims(), "exp", json!("1900000000"))), &cfg());
        assert_invalid(&hs(&with(claims(), "exp", json!(null))), &cfg());
        assert_invalid(&hs(&with(claims(), "exp", json!(1e300))), &cfg());
    }

    #[test]
    fn jwt_expired_with_a_bad_signature_is_invalid_not_expired() {
        let t = sign_hs256_for_tests(
            &with(claims(), "exp", json!(NOW - 1000)),
            "k-new",
            OLD_SECRET,
        );
        assert_invalid(&t, &cfg());
    }

    #[test]
    fn jwt_nbf_in_the_future_is_invalid() {
        let cfg = cfg();
        let t = hs(&with(claims(), "nbf", json!(NOW + 61)));
        assert_invalid(&t, &cfg);
        let t = hs(&with(claims(), "nbf", json!(NOW + 30)));
        assert!(verify(&t, &cfg, NOW).is_ok(), "within leeway");
        let t = hs(&with(claims(), "nbf", json!(NOW - 30)));
        assert!(verify(&t, &cfg, NOW).is_ok());
        let t = hs(&with(claims(), "nbf", json!("soon")));
        assert_invalid(&t, &cfg);
    }

    #[test]
    fn jwt_wrong_or_missing_audience_is_invalid() {
        assert_invalid(&hs(&with(claims(), "aud", json!("other"))), &cfg());
        assert_invalid(
            &hs(&with(claims(), "aud", json!(["other", "another"]))),
            &cfg(),
        );
        assert_invalid(&hs(&without(claims(), "aud")), &cfg());
        assert_invalid(&hs(&with(claims(), "aud", json!(["STRATA"]))), &cfg());
        let t = hs(&with(claims(), "aud", json!(["other", "strata"])));
        assert!(verify(&t, &cfg(), NOW).is_ok());
        // Without a configured audience, any aud is accepted.
        let t = hs(&with(claims(), "aud", json!("other")));
        let cfg = JwtConfig {
            audience: None,
            ..cfg()
        };
        assert!(verify(&t, &cfg, NOW).is_ok());
    }

    #[test]
    fn jwt_wrong_or_missing_issuer_is_invalid() {
        assert_invalid(
            &hs(&with(claims(), "iss", json!("https://evil.example"))),
            &cfg(),
        );
        assert_invalid(
            &hs(&with(claims(), "iss", json!(["https://idp.example"]))),
            &cfg(),
        );
        assert_invalid(&hs(&without(claims(), "iss")), &cfg());
        let cfg = JwtConfig {
            issuer: None,
            ..cfg()
        };
        let c = verify(&hs(&without(claims(), "iss")), &cfg, NOW).unwrap();
        assert_eq!(c.issuer, None);
    }

    #[test]
    fn jwt_missing_or_empty_subject_is_invalid() {
        assert_invalid(&hs(&without(claims(), "sub")), &cfg());
        assert_invalid(&hs(&with(claims(), "sub", json!(""))), &cfg());
        assert_invalid(&hs(&with(claims(), "sub", json!(42))), &cfg());
    }

    #[test]
    fn jwt_missing_or_unknown_role_is_invalid() {
        assert_invalid(&hs(&without(claims(), "role")), &cfg());
        assert_invalid(&hs(&with(claims(), "role", json!("root"))), &cfg());
        assert_invalid(&hs(&with(claims(), "role", json!("Admin"))), &cfg());
        assert_invalid(
            &hs(&with(claims(), "role", json!(["root", "superuser"]))),
            &cfg(),
        );
        assert_invalid(&hs(&with(claims(), "role", json!([]))), &cfg());
        assert_invalid(&hs(&with(claims(), "role", json!({"admin": true}))), &cfg());
        assert_invalid(&hs(&with(claims(), "role", json!(3))), &cfg());
    }

    #[test]
    fn jwt_array_role_claim_picks_the_most_powerful() {
        let t = hs(&with(
            claims(),
            "role",
            json!(["viewer", "admin", "backup_operator", "root", 7]),
        ));
        assert_eq!(verify(&t, &cfg(), NOW).unwrap().role, Role::Admin);
        let t = hs(&with(claims(), "role", json!(["viewer", "unknown"])));
        assert_eq!(verify(&t, &cfg(), NOW).unwrap().role, Role::Viewer);
    }

    #[test]
    fn jwt_role_claim_name_is_configurable() {
        let c = with(without(claims(), "role"), "strata_role", json!("admin"));
        let cfg1 = JwtConfig {
            role_claim: "strata_role".into(),
            ..cfg()
        };
        assert_eq!(verify(&hs(&c), &cfg1, NOW).unwrap().role, Role::Admin);
        assert_invalid(&hs(&c), &cfg());

        // Namespaced top-level claim containing dots.
        let c = with(
            without(claims(), "role"),
            "https://strata.example/role",
            json!("viewer"),
        );
        let cfg2 = JwtConfig {
            role_claim: "https://strata.example/role".into(),
            ..cfg()
        };
        assert_eq!(verify(&hs(&c), &cfg2, NOW).unwrap().role, Role::Viewer);

        // Nested path.
        let c = with(
            without(claims(), "role"),
            "realm_access",
            json!({"roles": ["offline", "admin"]}),
        );
        let cfg3 = JwtConfig {
            role_claim: "realm_access.roles".into(),
            ..cfg()
        };
        assert_eq!(verify(&hs(&c), &cfg3, NOW).unwrap().role, Role::Admin);
    }

    #[test]
    fn jwt_rs256_and_es256_via_jwks() {
        let cfg = cfg();
        let rs = sign_with_pem_for_tests(Algorithm::RS256, RSA_KID, RSA_PEM, &claims());
        let c = verify(&rs, &cfg, NOW).unwrap();
        assert_eq!((c.key_id.as_str(), c.role), (RSA_KID, Role::BackupOperator));
        let es = sign_with_pem_for_tests(Algorithm::ES256, EC_KID, EC_PEM, &claims());
        let c = verify(&es, &cfg, NOW).unwrap();
        assert_eq!(c.key_id, EC_KID);
        // Signed by a key the JWKS does not have, under a kid it has.
        assert_invalid(
            &sign_with_pem_for_tests(Algorithm::RS256, RSA_KID, RSA_OTHER_PEM, &claims()),
            &cfg,
        );
        // Expired RS256 is Expired.
        let t = sign_with_pem_for_tests(
            Algorithm::RS256,
            RSA_KID,
            RSA_PEM,
            &with(claims(), "exp", json!(NOW - 3600)),
        );
        assert!(matches!(verify(&t, &cfg, NOW), Err(AuthError::Expired)));
        // Without a JWKS, RS256 tokens are refused.
        let no_jwks = JwtConfig {
            jwks: None,
            ..cfg.clone()
        };
        assert_invalid(&rs, &no_jwks);
        assert_invalid(&es, &no_jwks);
    }

    #[test]
    fn jwt_tampered_payload_or_signature_is_invalid() {
        for token in [
            hs(&claims()),
            sign_with_pem_for_tests(Algorithm::RS256, RSA_KID, RSA_PEM, &claims()),
            sign_with_pem_for_tests(Algorithm::ES256, EC_KID, EC_PEM, &claims()),
        ] {
            let parts: Vec<&str> = token.split('.').collect();
            let admin = b64url_json(&with(claims(), "role", json!("admin")));
            assert_invalid(&format!("{}.{}.{}", parts[0], admin, parts[2]), &cfg());
            let mut sig = parts[2].to_string();
            let last = sig.pop().unwrap();
            sig.push(if last == 'A' { 'B' } else { 'A' });
            assert_invalid(&format!("{}.{}.{}", parts[0], parts[1], sig), &cfg());
            assert_invalid(&format!("{}.{}", parts[0], parts[1]), &cfg());
            assert_invalid(&format!("{token}.{}", parts[2]), &cfg());
        }
    }

    #[test]
    fn jwt_crit_header_is_invalid() {
        // Build a properly signed HS256 token whose header has a crit parameter.
        let t = forge_for_tests(
            &json!({"alg": "HS256", "kid": "k-new", "crit": ["exp"], "exp": 1}),
            &claims(),
            NEW_SECRET.as_bytes(),
        );
        assert_invalid(&t, &cfg());
        // The same construction without crit verifies, so crit is what is refused.
        let t = forge_for_tests(
            &json!({"alg": "HS256", "kid": "k-new"}),
            &claims(),
            NEW_SECRET.as_bytes(),
        );
        assert!(verify(&t, &cfg(), NOW).is_ok());
    }

    #[test]
    fn jwt_garbage_is_invalid_and_never_panics() {
        let long = format!("{}.{}.{}", "a".repeat(MAX_TOKEN_LEN), "b", "c");
        for t in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "strata_0123",
            "é.é.é",
            "eyJ.eyJ.sig",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            long.as_str(),
            "\0.\0.\0",
        ] {
            assert_invalid(t, &cfg());
        }
    }

    #[test]
    fn jwt_disabled_config_refuses_everything() {
        let cfg = JwtConfig::default();
        assert!(!cfg.is_enabled());
        assert_invalid(&hs(&claims()), &cfg);
        assert!(self::cfg().is_enabled());
    }

    #[test]
    fn jwt_error_messages_do_not_say_what_was_wrong() {
        assert_eq!(AuthError::Invalid.to_string(), "invalid credentials");
        assert_eq!(AuthError::Expired.to_string(), "expired credentials");
    }

    #[test]
    fn jwt_looks_like_jwt() {
        assert!(looks_like_jwt(&hs(&claims())));
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("eyJ-_9.AZaz09.x-_"));
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            ".b.c",
            "a.b.",
            "a.b=.c",
            "a b.c.d",
            "strata_0123abcd_00",
            "é.b.c",
        ] {
            assert!(!looks_like_jwt(t), "{t:?}");
        }
    }

    #[test]
    fn jwks_parse_keeps_rs256_and_es256_and_skips_the_rest() {
        let jwks = Jwks::parse(JWKS_MIXED.as_bytes()).unwrap();
        let mut kids: Vec<_> = jwks.kids().collect();
        kids.sort();
        assert_eq!(kids, [EC_KID, RSA_KID]);
        assert_eq!(jwks.len(), 2);
        assert_eq!(jwks.algorithm(RSA_KID), Some(Algorithm::RS256));
        assert_eq!(jwks.algorithm(EC_KID), Some(Algorithm::ES256));
        assert_eq!(jwks.algorithm("test-rsa-weak"), None);
        assert_eq!(jwks.algorithm("symmetric"), None);
        let dbg = format!("{jwks:?}");
        assert!(dbg.contains(RSA_KID), "{dbg}");
        // The parsed set verifies.
        let cfg = JwtConfig {
            jwks: Some(jwks),
            ..cfg()
        };
        let t = sign_with_pem_for_tests(Algorithm::ES256, EC_KID, EC_PEM, &claims());
        assert!(verify(&t, &cfg, NOW).is_ok());
    }

    #[test]
    fn jwks_parse_errors() {
        assert!(matches!(
            Jwks::parse(b"not json"),
            Err(AuthError::Config(_))
        ));
        assert!(matches!(Jwks::parse(b"{}"), Err(AuthError::Config(_))));
        assert!(matches!(
            Jwks::parse(br#"{"keys": {}}"#),
            Err(AuthError::Config(_))
        ));
        assert!(Jwks::parse(br#"{"keys": []}"#).unwrap().is_empty());
        // Duplicate kid among usable keys is ambiguous.
        let doc: Value = serde_json::from_str(JWKS).unwrap();
        let rsa = doc["keys"][0].clone();
        let dup = json!({"keys": [rsa.clone(), rsa]});
        assert!(matches!(
            Jwks::parse(dup.to_string().as_bytes()),
            Err(AuthError::Config(_))
        ));
    }

    #[test]
    fn jwks_load_from_file() {
        let path = Path::new(super::super::TESTDATA_DIR).join("jwks.json");
        assert_eq!(Jwks::load(&path).unwrap().len(), 2);
        assert!(matches!(
            Jwks::load(Path::new("/nonexistent/jwks.json")),
            Err(AuthError::Config(_))
        ));
    }

    #[test]
    fn jwt_config_validate() {
        assert!(cfg().validate().is_ok());
        let short = JwtConfig {
            hs256_keys: vec![("k".into(), Secret::new("short"))],
            ..cfg()
        };
        let err = short.validate().unwrap_err().to_string();
        assert!(err.contains("\"k\"") && !err.contains("short\""), "{err}");
        let dup = JwtConfig {
            hs256_keys: vec![
                ("k".into(), Secret::new(OLD_SECRET)),
                ("k".into(), Secret::new(NEW_SECRET)),
            ],
            ..cfg()
        };
        assert!(dup.validate().is_err());
        let empty_kid = JwtConfig {
            hs256_keys: vec![(String::new(), Secret::new(OLD_SECRET))],
            ..cfg()
        };
        assert!(empty_kid.validate().is_err());
        assert!(JwtConfig {
            role_claim: " ".into(),
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(JwtConfig {
            leeway_secs: 3600,
            ..cfg()
        }
        .validate()
        .is_err());
        // Debug of a config never shows a secret.
        let dbg = format!("{:?}", cfg());
        assert!(
            !dbg.contains(OLD_SECRET) && !dbg.contains(NEW_SECRET),
            "{dbg}"
        );
    }
}
