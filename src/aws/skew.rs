//! SigV4 with the service's time: a camera whose clock is off (no real-time clock, not
//! yet set) is refused with "Signature expired". Every SDK client of an `Aws` signs with
//! `Skew`'s time source, and `LearnSkew` reads the `Date` of every response: when the
//! service's clock and ours differ by more than a minute, later requests (the SDK's own
//! retry included) are signed with the service's time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tracing::warn;

/// The service's clock minus ours, ms, shared by the clients of one `Aws`.
#[derive(Debug, Clone, Default)]
pub struct Skew(Arc<AtomicI64>);

impl Skew {
    pub fn ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Learns from a response's `Date` header (RFC 7231 date) read at `local`.
    pub fn learn(&self, date: Option<&str>, local: SystemTime) {
        let Some(server) = date.and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok()) else {
            return;
        };
        let local = chrono::DateTime::<chrono::Utc>::from(local);
        let signing = local + chrono::Duration::milliseconds(self.ms());
        // Within a minute of the time we sign with: nothing to learn (the header has
        // whole seconds, and SigV4 allows minutes).
        if skew_ms(server.to_utc(), signing).is_none() {
            return;
        }
        let skew = skew_ms(server.to_utc(), local).unwrap_or(0);
        warn!(
            skew_ms = skew,
            "the local clock is off from AWS's; signing with AWS's time"
        );
        self.0.store(skew, Ordering::Relaxed);
    }
}

impl TimeSource for Skew {
    fn now(&self) -> SystemTime {
        skewed(SystemTime::now(), self.ms())
    }
}

/// Reads the `Date` of every response into a `Skew`.
#[derive(Debug)]
pub struct LearnSkew(pub Skew);

impl Intercept for LearnSkew {
    fn name(&self) -> &'static str {
        "LearnSkew"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0
            .learn(context.response().headers().get("date"), SystemTime::now());
        Ok(())
    }
}

/// Clock skew from a server `Date` header, in ms (server − local), when it matters
/// (over 60 s; smaller skews are within what SigV4 tolerates).
pub fn skew_ms(
    server: chrono::DateTime<chrono::Utc>,
    local: chrono::DateTime<chrono::Utc>,
) -> Option<i64> {
    let ms = (server - local).num_milliseconds();
    (ms.abs() > 60_000).then_some(ms)
}

/// The skew a response's `Date` header shows against `local` (see `skew_ms`).
pub fn skew_from_date(
    date: Option<&http::HeaderValue>,
    local: chrono::DateTime<chrono::Utc>,
) -> Option<i64> {
    let date = chrono::DateTime::parse_from_rfc2822(date?.to_str().ok()?).ok()?;
    skew_ms(date.to_utc(), local)
}

/// `SystemTime` corrected by a measured offset to the service's clock.
pub fn skewed(now: SystemTime, skew_ms: i64) -> SystemTime {
    let d = Duration::from_millis(skew_ms.unsigned_abs());
    if skew_ms >= 0 {
        now + d
    } else {
        now.checked_sub(d).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_off_is_learned_and_small_differences_are_not() {
        let skew = Skew::default();
        let local = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200);
        // 2026-12-01T00:00:00Z is local; the service says 20 s later: nothing learned.
        skew.learn(Some("Tue, 01 Dec 2026 00:00:20 GMT"), local);
        assert_eq!(skew.ms(), 0);
        // The service is an hour ahead.
        skew.learn(Some("Tue, 01 Dec 2026 01:00:00 GMT"), local);
        assert_eq!(skew.ms(), 3_600_000);
        // Signing with the learned time, the same answer teaches nothing new.
        skew.learn(Some("Tue, 01 Dec 2026 01:00:01 GMT"), local);
        assert_eq!(skew.ms(), 3_600_000);
        skew.learn(Some("not a date"), local);
        skew.learn(None, local);
        assert_eq!(skew.ms(), 3_600_000);
    }
}
