//! User passwords: the policy a new password must meet, and argon2id hashes in the PHC
//! string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), which carry their own
//! parameters, so stronger ones can be chosen later without breaking stored hashes.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// The shortest password accepted (characters, not bytes).
pub const MIN_LEN: usize = 12;
/// The longest (bytes): hashing cost must not be the caller's to choose.
pub const MAX_BYTES: usize = 1024;

/// Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~20–40 ms here.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password is refused (the message names no part of it).
pub fn check_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("must be at most {MAX_BYTES} bytes"));
    }
    if password.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    Ok(())
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let hashed = hasher()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hashed.to_string())
}

/// Whether `password` matches the PHC string `phc` (a damaged string matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    hasher().verify_password(password.as_bytes(), phc).is_ok()
}

/// Spends the time a verification costs, for a login with an unknown email, so the
/// answer's timing does not say whether the account exists.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("not a password of anyone").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify_only_their_password() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a phc string"));
    }

    #[test]
    fn the_policy_counts_characters_and_bounds_bytes() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("ééééééééééé").is_err(), "11 characters");
        assert!(
            check_policy("éééééééééééé").is_ok(),
            "12 characters, 24 bytes"
        );
        assert!(check_policy(&"x".repeat(MAX_BYTES + 1)).is_err());
        assert!(check_policy("twelve chars\0").is_err());
    }
}
