//! WS-Security UsernameToken (OASIS Username Token Profile 1.0), as ONVIF clients send
//! it: PasswordDigest = Base64(SHA-1(nonce ‖ created ‖ password)), the nonce decoded from
//! Base64 and `created` hashed exactly as sent; PasswordText is accepted too.

use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The UsernameToken of a request's `wsse:Security` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsernameToken {
    pub username: String,
    pub password: String,
    /// The `Type` attribute of `wsse:Password`: digest unless it names PasswordText.
    pub digest: bool,
    /// Base64, as sent.
    pub nonce: String,
    /// As sent (clients differ: `…Z`, `…+00:00`, with or without fractions).
    pub created: String,
}

/// The digest of `password` for this nonce and creation time; `None` when the nonce is
/// not Base64.
pub fn password_digest(nonce_b64: &str, created: &str, password: &str) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let nonce = engine.decode(nonce_b64.trim()).ok()?;
    let mut sha = Sha1::new();
    sha.update(&nonce);
    sha.update(created.as_bytes());
    sha.update(password.as_bytes());
    Some(engine.encode(sha.finalize()))
}

/// Whether `token` proves `user` knows `password`. Compared in constant time.
pub fn verify(token: &UsernameToken, user: &str, password: &str) -> bool {
    if token.username != user {
        return false;
    }
    let expected = if token.digest {
        match password_digest(&token.nonce, &token.created, password) {
            Some(d) => d,
            None => return false,
        }
    } else {
        password.to_owned()
    };
    bool::from(expected.as_bytes().ct_eq(token.password.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_zeeps_for_both_forms_of_created() {
        // Nonce b"0123456789abcdef", password "secret"; the digests zeep computes.
        let nonce = "MDEyMzQ1Njc4OWFiY2RlZg==";
        assert_eq!(
            password_digest(nonce, "2024-01-01T00:00:00+00:00", "secret").as_deref(),
            Some("hsa+0/UeUo9Fys3zMYYFQ7JKg6c=")
        );
        assert_eq!(
            password_digest(nonce, "2024-01-01T00:00:00Z", "secret").as_deref(),
            Some("W+AMPWIcgBDGW9XpBeBhrAdNo+g=")
        );
        assert_eq!(password_digest("not base64!", "x", "secret"), None);
    }

    #[test]
    fn only_the_right_user_and_password_pass() {
        let token = UsernameToken {
            username: "edgecam".into(),
            password: "W+AMPWIcgBDGW9XpBeBhrAdNo+g=".into(),
            digest: true,
            nonce: "MDEyMzQ1Njc4OWFiY2RlZg==".into(),
            created: "2024-01-01T00:00:00Z".into(),
        };
        assert!(verify(&token, "edgecam", "secret"));
        assert!(!verify(&token, "edgecam", "Secret"));
        assert!(!verify(&token, "admin", "secret"));
        let text = UsernameToken {
            username: "edgecam".into(),
            password: "secret".into(),
            ..UsernameToken::default()
        };
        assert!(verify(&text, "edgecam", "secret"));
        assert!(!verify(&text, "edgecam", "secre"));
    }
}
