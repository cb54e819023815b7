//! WS-Security UsernameToken (OASIS Username Token Profile 1.0), as ONVIF clients send
//! it: PasswordDigest = Base64(SHA-1(nonce ‖ created ‖ password)), the nonce decoded from
//! Base64 and `created` hashed exactly as sent. As the ONVIF Core spec asks, a token
//! without both a nonce and a creation time is refused (so PasswordText is), and
//! `Replays` refuses a token created too far from now or whose nonce was seen.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Utc};
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

/// Whether `token` proves `user` knows `password`: a digest, with nonce and creation
/// time. Compared in constant time.
pub fn verify(token: &UsernameToken, user: &str, password: &str) -> bool {
    if token.username != user || !token.digest || token.nonce.is_empty() || token.created.is_empty()
    {
        return false;
    }
    match password_digest(&token.nonce, &token.created, password) {
        Some(expected) => bool::from(expected.as_bytes().ct_eq(token.password.trim().as_bytes())),
        None => false,
    }
}

/// How far a token's creation time may be from the camera's clock. Generous: Home
/// Assistant does not correct for a camera's clock, and both keep time by NTP.
pub const WINDOW: chrono::Duration = chrono::Duration::minutes(15);
/// Nonces remembered (a client polling once a second uses 900 in a window).
const NONCES: usize = 8192;

/// Refuses tokens replayed: created outside `WINDOW` of now, or with a nonce already
/// seen within it.
#[derive(Debug, Default)]
pub struct Replays {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Replays {
    /// Whether `token` is fresh (and remembers its nonce). Call only for tokens that
    /// verified, so guesses cannot push real nonces out.
    pub fn fresh(&self, token: &UsernameToken, now: DateTime<Utc>) -> bool {
        let Ok(created) = DateTime::parse_from_rfc3339(token.created.trim()) else {
            return false;
        };
        if (now - created.with_timezone(&Utc)).abs() > WINDOW {
            return false;
        }
        // A poisoned lock only means a handler panicked mid-update; the set stays usable.
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(token.nonce.clone()) {
            return false;
        }
        order.push_back(token.nonce.clone());
        while order.len() > NONCES {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }
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
        // The password in clear, or a digest without its nonce: refused.
        let text = UsernameToken {
            username: "edgecam".into(),
            password: "secret".into(),
            ..UsernameToken::default()
        };
        assert!(!verify(&text, "edgecam", "secret"));
        let no_nonce = UsernameToken {
            nonce: String::new(),
            ..token.clone()
        };
        assert!(!verify(&no_nonce, "edgecam", "secret"));
    }

    #[test]
    fn a_token_is_good_once_and_only_near_its_time() {
        let token = UsernameToken {
            username: "edgecam".into(),
            password: "x".into(),
            digest: true,
            nonce: "MDEyMzQ1Njc4OWFiY2RlZg==".into(),
            created: "2026-12-08T10:00:00+00:00".into(),
        };
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let replays = Replays::default();
        assert!(
            !replays.fresh(&token, at("2026-12-08T10:20:00Z")),
            "too late"
        );
        assert!(replays.fresh(&token, at("2026-12-08T10:05:00Z")));
        assert!(
            !replays.fresh(&token, at("2026-12-08T10:05:01Z")),
            "replayed"
        );
        let other = UsernameToken {
            nonce: "b3RoZXI=".into(),
            created: "2026-12-08T10:00:00.123Z".into(),
            ..token
        };
        assert!(
            replays.fresh(&other, at("2026-12-08T09:50:00Z")),
            "a slow camera clock"
        );
    }
}
