//! Short-lived download tokens, passed as `?token=` so that a browser link works.
//!
//! Format: `sft1.<payload>.<tag>` where
//! - `payload` is base64url (no padding) of the JSON
//!   `{"v":1,"purpose":"download","sub":…,"role":…,"iat":…,"exp":…}`;
//! - `tag` is base64url of the 32-byte keyed BLAKE3 hash of `sft1.<payload>` (the exact
//!   bytes received), with a key derived from the signer's secret for this purpose only.
//!
//! The purpose sits inside the signed payload and the key is domain-separated, so a file
//! token cannot be taken for any other credential (and no other tag made with the same
//! secret is a file token tag). Tokens are self-contained: every API instance that shares
//! the 32-byte secret accepts them; none can be revoked before it expires, hence short
//! lifetimes.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{AuthError, Role};

/// The token's first segment (format version).
pub const TOKEN_PREFIX: &str = "sft1";
/// The only purpose a file token has.
pub const PURPOSE: &str = "download";
/// Default lifetime of a file token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(180);
/// Longest lifetime [`FileTokenSigner::issue`] grants; longer requests are cut to it.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longer strings are refused before any work.
const MAX_TOKEN_LEN: usize = 4096;

const MAC_KEY_CONTEXT: &str = "strata 2026-11 file token mac key v1";
const MATERIAL_CONTEXT: &str = "strata 2026-11 file token secret from material v1";

/// Issues and verifies file tokens with one 32-byte secret.
#[derive(Clone)]
pub struct FileTokenSigner {
    mac_key: [u8; 32],
}

impl fmt::Debug for FileTokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileTokenSigner([REDACTED])")
    }
}

/// What a verified file token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTokenClaims {
    pub subject: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    /// The one backup the token may download, when it was issued for one.
    pub backup: Option<String>,
}

/// Limits a token carries beyond its lifetime.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this backup may be downloaded with the token.
    pub backup: Option<String>,
    /// The token expires no later than this (unix seconds): the expiry of the
    /// credential that asked for it.
    pub not_after: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    v: u8,
    purpose: String,
    sub: String,
    role: Role,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
}

impl FileTokenSigner {
    /// A signer with this secret. Instances that must accept each other's tokens need the
    /// same secret.
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            mac_key: blake3::derive_key(MAC_KEY_CONTEXT, &secret),
        }
    }

    /// A signer with a random secret: its tokens are valid only in this process.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self::new(secret)
    }

    /// A signer whose secret is derived from other high-entropy key material (e.g. a
    /// configured server secret), domain-separated so the material's other uses are
    /// unaffected.
    pub fn from_material(material: &[u8]) -> Self {
        Self::new(blake3::derive_key(MATERIAL_CONTEXT, material))
    }

    /// A token for `subject` with `role`, valid for `ttl` (at most [`MAX_TTL`]) from `now`
    /// (unix seconds), and when it expires.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        ttl: Duration,
        now: i64,
    ) -> (String, DateTime<Utc>) {
        self.issue_scoped(subject, role, ttl, now, &Scope::default())
    }

    /// [`issue`](Self::issue), limited by `scope`: bound to one backup, and expiring no
    /// later than the credential that asked for it.
    pub fn issue_scoped(
        &self,
        subject: &str,
        role: Role,
        ttl: Duration,
        now: i64,
        scope: &Scope,
    ) -> (String, DateTime<Utc>) {
        let ttl = ttl.min(MAX_TTL).as_secs() as i64;
        let mut exp = now.saturating_add(ttl);
        if let Some(limit) = scope.not_after {
            exp = exp.min(limit);
        }
        let payload = Payload {
            v: 1,
            purpose: PURPOSE.to_string(),
            sub: subject.to_string(),
            role,
            iat: now,
            exp,
            backup: scope.backup.clone(),
        };
        let json = serde_json::to_vec(&payload).expect("serializing a file token payload");
        let signed = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = self.tag(signed.as_bytes());
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag));
        let expires_at =
            DateTime::<Utc>::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
        (token, expires_at)
    }

    /// Checks a token at `now` (unix seconds): [`AuthError::Invalid`] unless it is a file
    /// token made with this signer's secret (tag compared in constant time), for the
    /// download purpose; [`AuthError::Expired`] from its expiry on (no leeway: the same
    /// server issued it).
    pub fn verify(&self, token: &str, now: i64) -> Result<FileTokenClaims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let (signed, tag_b64) = token.rsplit_once('.').ok_or(AuthError::Invalid)?;
        let (prefix, payload_b64) = signed.split_once('.').ok_or(AuthError::Invalid)?;
        if prefix != TOKEN_PREFIX {
            return Err(AuthError::Invalid);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| AuthError::Invalid)?;
        let expected = self.tag(signed.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(tag.as_slice())) {
            return Err(AuthError::Invalid);
        }
        // Authentic from here on.
        let json = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| AuthError::Invalid)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| AuthError::Invalid)?;
        if payload.v != 1 || payload.purpose != PURPOSE {
            return Err(AuthError::Invalid);
        }
        let expires_at =
            DateTime::<Utc>::from_timestamp(payload.exp, 0).ok_or(AuthError::Invalid)?;
        if now >= payload.exp {
            return Err(AuthError::Expired);
        }
        Ok(FileTokenClaims {
            subject: payload.sub,
            role: payload.role,
            expires_at,
            backup: payload.backup,
        })
    }

    fn tag(&self, signed: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.mac_key, signed).as_bytes()
    }
}

/// Whether `token` claims to be a file token (starts with `sft1.`). Says nothing about
/// validity.
pub fn looks_like_file_token(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signer() -> FileTokenSigner {
        FileTokenSigner::new([7u8; 32])
    }

    #[test]
    fn file_token_round_trip() {
        let (token, expires) = signer().issue("key:0123456789ab", Role::Viewer, DEFAULT_TTL, NOW);
        assert_eq!(expires.timestamp(), NOW + 180);
        assert!(token.starts_with("sft1."));
        assert!(looks_like_file_token(&token));
        // Not an API key; the JWT path refuses it (its header is no JWS header).
        assert!(crate::keys::parse(&token).is_none());
        let jwt_cfg = crate::JwtConfig {
            hs256_keys: vec![("k".into(), strata_core::config::Secret::new("x".repeat(32)))],
            ..Default::default()
        };
        assert!(matches!(
            crate::jwt::verify(&token, &jwt_cfg, NOW),
            Err(AuthError::Invalid)
        ));
        // URL-safe as it is: no escaping needed in ?token=.
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        let claims = signer().verify(&token, NOW + 179).unwrap();
        assert_eq!(
            claims,
            FileTokenClaims {
                subject: "key:0123456789ab".into(),
                role: Role::Viewer,
                expires_at: expires,
                backup: None,
            }
        );
        // Unicode and quotes in the subject survive.
        let (token, _) = signer().issue("ünï \"cödé\"", Role::Admin, DEFAULT_TTL, NOW);
        assert_eq!(
            signer().verify(&token, NOW).unwrap().subject,
            "ünï \"cödé\""
        );
    }

    #[test]
    fn file_token_expired() {
        let (token, _) = signer().issue("alice", Role::Admin, Duration::from_secs(60), NOW);
        assert!(signer().verify(&token, NOW + 59).is_ok());
        assert!(matches!(
            signer().verify(&token, NOW + 60),
            Err(AuthError::Expired)
        ));
        assert!(matches!(
            signer().verify(&token, NOW + 100_000),
            Err(AuthError::Expired)
        ));
        let (token, _) = signer().issue("alice", Role::Admin, Duration::ZERO, NOW);
        assert!(matches!(
            signer().verify(&token, NOW),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn file_token_ttl_is_capped() {
        let (_, expires) = signer().issue("a", Role::Viewer, Duration::from_secs(u64::MAX), NOW);
        assert_eq!(expires.timestamp(), NOW + MAX_TTL.as_secs() as i64);
    }

    #[test]
    fn file_token_tampered_is_invalid() {
        let s = signer();
        let (token, _) = s.issue("alice", Role::Viewer, DEFAULT_TTL, NOW);
        let (signed, tag) = token.rsplit_once('.').unwrap();
        let (_, payload) = signed.split_once('.').unwrap();

        // A forged payload (role admin) with the original tag.
        let forged = serde_json::json!({
            "v": 1, "purpose": "download", "sub": "alice", "role": "admin",
            "iat": NOW, "exp": NOW + 180,
        });
        let forged = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert!(matches!(
            s.verify(&format!("sft1.{forged}.{tag}"), NOW),
            Err(AuthError::Invalid)
        ));

        // Flipped characters in the tag and in the payload.
        let mut t = tag.to_string();
        let c = t.pop().unwrap();
        t.push(if c == 'A' { 'Q' } else { 'A' });
        assert!(matches!(
            s.verify(&format!("{signed}.{t}"), NOW),
            Err(AuthError::Invalid)
        ));
        let mut p = payload.to_string();
        let c = p.remove(0);
        p.insert(0, if c == 'e' { 'f' } else { 'e' });
        assert!(matches!(
            s.verify(&format!("sft1.{p}.{tag}"), NOW),
            Err(AuthError::Invalid)
        ));

        // Other prefix, truncated, extended, padded tag.
        for bad in [
            format!("sft2.{payload}.{tag}"),
            format!("{signed}."),
            signed.to_string(),
            format!("{token}.{tag}"),
            format!("{token}="),
            format!(".{payload}.{tag}"),
        ] {
            assert!(
                matches!(s.verify(&bad, NOW), Err(AuthError::Invalid)),
                "{bad}"
            );
        }
    }

    #[test]
    fn file_token_wrong_signer_secret_is_invalid() {
        let (token, _) = signer().issue("alice", Role::Admin, DEFAULT_TTL, NOW);
        let other = FileTokenSigner::new([8u8; 32]);
        assert!(matches!(other.verify(&token, NOW), Err(AuthError::Invalid)));
        assert!(matches!(
            FileTokenSigner::random().verify(&token, NOW),
            Err(AuthError::Invalid)
        ));
        // Derived signers are stable for the same material and differ from `new(material)`.
        let a = FileTokenSigner::from_material(b"server secret material, 32 bytes+");
        let b = FileTokenSigner::from_material(b"server secret material, 32 bytes+");
        let (token, _) = a.issue("alice", Role::Admin, DEFAULT_TTL, NOW);
        assert!(b.verify(&token, NOW).is_ok());
        assert!(matches!(
            signer().verify(&token, NOW),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn file_token_needs_the_download_purpose() {
        // A payload with another purpose, correctly tagged, is refused.
        let s = signer();
        let payload = serde_json::json!({
            "v": 1, "purpose": "upload", "sub": "alice", "role": "admin",
            "iat": NOW, "exp": NOW + 180,
        });
        let signed = format!("sft1.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
        let tag = URL_SAFE_NO_PAD.encode(s.tag(signed.as_bytes()));
        assert!(matches!(
            s.verify(&format!("{signed}.{tag}"), NOW),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn file_token_garbage_is_invalid_and_never_panics() {
        let s = signer();
        let long = "a".repeat(10_000);
        for t in [
            "",
            ".",
            "..",
            "sft1",
            "sft1.",
            "sft1..",
            "sft1.a.b",
            "é.é.é",
            long.as_str(),
        ] {
            assert!(matches!(s.verify(t, NOW), Err(AuthError::Invalid)), "{t:?}");
        }
        assert!(!looks_like_file_token("sft1"));
        assert!(!looks_like_file_token("strata_x"));
    }

    #[test]
    fn file_token_signer_debug_is_redacted() {
        assert_eq!(format!("{:?}", signer()), "FileTokenSigner([REDACTED])");
    }

    #[test]
    fn a_scoped_token_names_its_backup_and_ends_with_its_credential() {
        let scope = Scope {
            backup: Some("app_20261203".into()),
            not_after: Some(NOW + 30),
        };
        let (token, expires) =
            signer().issue_scoped("key:0123456789ab", Role::Admin, DEFAULT_TTL, NOW, &scope);
        assert_eq!(expires.timestamp(), NOW + 30);
        let claims = signer().verify(&token, NOW + 29).unwrap();
        assert_eq!(claims.backup.as_deref(), Some("app_20261203"));
        assert!(matches!(
            signer().verify(&token, NOW + 30),
            Err(AuthError::Expired)
        ));
        // The scope is signed: dropping it from the payload breaks the tag.
        let (signed, tag) = token.rsplit_once('.').unwrap();
        let payload = signed.strip_prefix("sft1.").unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let widened = json.replace(",\"backup\":\"app_20261203\"", "");
        assert_ne!(widened, json);
        let forged = format!("sft1.{}.{tag}", URL_SAFE_NO_PAD.encode(widened));
        assert!(matches!(
            signer().verify(&forged, NOW),
            Err(AuthError::Invalid)
        ));
    }
}
