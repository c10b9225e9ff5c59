//! User session tokens, issued at login.
//!
//! A session token is a JWT (HS256, header `kid` [`KID`], issuer [`ISSUER`]) signed with a
//! secret every API instance shares, with the claims `sub` (the user's id), `sid` (the
//! session's id), `iat`, `exp` and `type: "auth"`. It is a JWT so that clients which read
//! their token's expiry (the PocketBase SDKs' `authStore.isValid`) work unchanged; the
//! signature only keeps forgeries from reaching the database: every request still looks
//! the session up, so logging out, deleting the user or changing their role applies at
//! once. Tokens of an external identity provider never carry this `kid`, and a token with
//! it is checked against this secret only.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;

/// The `kid` of every session token.
pub const KID: &str = "strata-session-1";
/// The `iss` of every session token.
pub const ISSUER: &str = "strata";
/// Default lifetime of a session.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Longer strings are refused before any work.
const MAX_TOKEN_LEN: usize = 4096;

/// Issues and verifies session tokens with one 32-byte secret.
#[derive(Clone)]
pub struct SessionSigner {
    secret: [u8; 32],
}

impl fmt::Debug for SessionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSigner([REDACTED])")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    iss: String,
    sub: String,
    sid: String,
    #[serde(rename = "type")]
    kind: String,
    iat: i64,
    exp: i64,
}

/// What a verified session token says (the session must still be looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub user_id: String,
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

/// Whether a token is meant to be a session token (its header names [`KID`]); it may
/// still be invalid.
pub fn looks_like_session(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN
        && jsonwebtoken::decode_header(token).is_ok_and(|h| h.kid.as_deref() == Some(KID))
}

impl SessionSigner {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// A token for session `session_id` of user `user_id`, expiring at `expires_at`.
    pub fn issue(&self, user_id: &str, session_id: &str, now: i64, expires_at: i64) -> String {
        super::jwt::ensure_crypto_provider();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.to_string());
        let payload = Payload {
            iss: ISSUER.into(),
            sub: user_id.into(),
            sid: session_id.into(),
            kind: "auth".into(),
            iat: now,
            exp: expires_at,
        };
        jsonwebtoken::encode(&header, &payload, &EncodingKey::from_secret(&self.secret))
            .expect("an HS256 token always encodes")
    }

    /// Checks the signature, the issuer and the expiry (no leeway: the server issued it)
    /// at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, AuthError> {
        if !looks_like_session(token) {
            return Err(AuthError::Invalid);
        }
        super::jwt::ensure_crypto_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<Payload>(
            token,
            &DecodingKey::from_secret(&self.secret),
            &validation,
        )
        .map_err(|_| AuthError::Invalid)?;
        let p = data.claims;
        if p.kind != "auth" || p.sid.is_empty() || p.sub.is_empty() {
            return Err(AuthError::Invalid);
        }
        if p.exp <= now {
            return Err(AuthError::Expired);
        }
        let expires_at = Utc
            .timestamp_opt(p.exp, 0)
            .single()
            .ok_or(AuthError::Invalid)?;
        Ok(SessionClaims {
            user_id: p.sub,
            session_id: p.sid,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_token_verifies_with_its_secret_only_and_until_it_expires() {
        let signer = SessionSigner::new([7; 32]);
        let token = signer.issue("u1", "s1", NOW, NOW + 3600);
        assert!(crate::jwt::looks_like_jwt(&token) && looks_like_session(&token));
        let claims = signer.verify(&token, NOW + 10).unwrap();
        assert_eq!(
            (claims.user_id.as_str(), claims.session_id.as_str()),
            ("u1", "s1")
        );
        assert_eq!(claims.expires_at.timestamp(), NOW + 3600);
        assert!(matches!(
            signer.verify(&token, NOW + 3600),
            Err(AuthError::Expired)
        ));
        assert!(matches!(
            SessionSigner::new([8; 32]).verify(&token, NOW),
            Err(AuthError::Invalid)
        ));
        // One changed character of the payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let swap = if parts[1].starts_with('e') { "f" } else { "e" };
        parts[1].replace_range(0..1, swap);
        assert!(signer.verify(&parts.join("."), NOW).is_err());
    }

    #[test]
    fn other_jwts_are_not_session_tokens() {
        assert!(!looks_like_session("a.b.c"));
        assert!(!looks_like_session("strata_0123456789ab_x"));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("someone-else".into());
        crate::jwt::ensure_crypto_provider();
        let other = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": NOW + 60}),
            &EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert!(!looks_like_session(&other));
        assert!(SessionSigner::new([7; 32]).verify(&other, NOW).is_err());
    }
}
