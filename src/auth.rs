//! Password hashing and verification: salted argon2id, stored as PHC strings.
//!
//! Passwords are never stored, logged or echoed; only the PHC hash lives in the database.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Longest password accepted; a bound on the hashing work one login can cause.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes a password with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail on a valid salt")
        .to_string()
}

/// Whether `password` matches the stored PHC `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password's shape before it is hashed.
pub fn validate_new_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password must not be empty".into());
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_and_verify() {
        let a = hash_password("secret pw");
        let b = hash_password("secret pw");
        assert_ne!(a, b, "two hashes of one password must differ by salt");
        assert!(a.starts_with("$argon2id$"));
        assert!(!a.contains("secret"));
        assert!(verify_password("secret pw", &a));
        assert!(!verify_password("secret pX", &a));
        assert!(!verify_password("secret pw", "not a hash"));
    }
}
