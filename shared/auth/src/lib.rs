//! Authentication building blocks, pure and free of HTTP and database code: roles, API
//! keys, user passwords and session tokens, JWT verification, short-lived download tokens
//! and a failure limiter. The API's middleware, tables and routes are built on them.
//!
//! Test fixtures (test-only RSA and EC key pairs and JWKS documents) live in
//! `shared/auth/src/testdata/`; they are read by tests only and never compiled in.

pub mod config;
pub mod file_token;
pub mod jwt;
pub mod keys;
pub mod limiter;
pub mod password;
pub mod role;
pub mod session;

pub use file_token::{FileTokenClaims, FileTokenSigner};
pub use jwt::{looks_like_jwt, Claims, Jwks, JwtConfig};
pub use keys::{GeneratedKey, ParsedKey};
pub use limiter::FailureLimiter;
pub use role::Role;
pub use session::{SessionClaims, SessionSigner};

/// Where the test fixtures are (test-only RSA / EC private keys in PEM, `jwks.json` with
/// their public halves as kids `test-rsa-1` and `test-ec-1`, and `jwks_mixed.json` with
/// keys that must be skipped). For tests in any crate of the workspace; the files are
/// never read by production code.
pub const TESTDATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata");

/// Why a credential was refused. The messages deliberately do not say which part of the
/// credential was wrong: the HTTP layer answers one `401` for all of them, and the variant
/// may be logged.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed, unknown, badly signed, not yet valid, or missing a required claim.
    #[error("invalid credentials")]
    Invalid,
    /// Well-formed and correctly signed, but past its expiry (beyond the leeway).
    #[error("expired credentials")]
    Expired,
    /// The server's own configuration is unusable (e.g. an unparsable JWKS document).
    /// Never caused by the caller's credential.
    #[error("{0}")]
    Config(String),
}
