//! Where the gateway decides a client is over its rate: a token bucket per
//! client IP. Each client may spend `burst` requests at once; tokens refill
//! at `requests / window`. Over the limit → 429 `rate_limited` with
//! `Retry-After` (whole seconds until one token is back).
//!
//! Only `/api/v1/*` is limited; the gateway's health and metrics are exempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::client_ip::TrustedProxies;
use crate::http::error::ApiError;

/// The outcome of asking for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by client IP.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `requests` per `window`, with up to `burst` at once.
    pub fn new(requests: u32, window: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(requests.max(1)) / window.as_secs_f64().max(1e-3),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client` at time `now`, if there is one.
    pub fn check(&self, client: IpAddr, now: Instant) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Decision::Limited {
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }

    /// Forgets clients whose bucket has refilled completely (they are
    /// indistinguishable from new clients), so memory follows active clients only.
    pub fn forget_idle(&self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
    }

    /// Number of clients tracked.
    pub fn tracked_clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Runs [`Self::forget_idle`] every minute until the task is aborted.
    pub async fn run_cleanup(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            self.forget_idle(Instant::now());
        }
    }
}

/// The limiter and who the client is.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limiter: Arc<RateLimiter>,
    pub trusted: TrustedProxies,
}

impl RateLimit {
    /// Takes one token for the client behind `peer` (whose
    /// `X-Forwarded-For` fields are `forwarded_for`), or refuses with 429.
    pub fn check<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), ApiError> {
        let client = self.trusted.client_ip(peer, forwarded_for);
        match self.limiter.check(client, Instant::now()) {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil() as u64;
                tracing::debug!(%client, seconds, "rate limited");
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "too many requests from {client}; retry in {} s",
                        seconds.max(1)
                    ),
                )
                .with_retry_after(seconds))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_rate() {
        // 2 per second, burst 3.
        let limiter = RateLimiter::new(2, Duration::from_secs(1), 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), t0), Decision::Allowed);
        }
        match limiter.check(ip(1), t0) {
            Decision::Limited { retry_after } => {
                assert!(
                    (retry_after.as_secs_f64() - 0.5).abs() < 1e-6,
                    "{retry_after:?}"
                )
            }
            d => panic!("expected limited, got {d:?}"),
        }
        // Half a second later exactly one token is back.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(ip(1), t1), Decision::Allowed);
        assert!(matches!(limiter.check(ip(1), t1), Decision::Limited { .. }));
    }

    #[test]
    fn clients_are_limited_independently() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60), 1);
        let t = Instant::now();
        assert_eq!(limiter.check(ip(1), t), Decision::Allowed);
        assert!(matches!(limiter.check(ip(1), t), Decision::Limited { .. }));
        assert_eq!(limiter.check(ip(2), t), Decision::Allowed);
    }

    #[test]
    fn over_any_period_a_client_gets_at_most_burst_plus_rate_times_time() {
        let limiter = RateLimiter::new(10, Duration::from_secs(1), 5);
        let t0 = Instant::now();
        let mut allowed = 0;
        // One attempt every 10 ms for 2 s: 200 attempts.
        for step in 0..200u64 {
            if limiter.check(ip(3), t0 + Duration::from_millis(step * 10)) == Decision::Allowed {
                allowed += 1;
            }
        }
        // burst 5 + 10/s * 1.99 s = 24.9
        assert!((20..=25).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn idle_clients_are_forgotten_once_full() {
        let limiter = RateLimiter::new(1, Duration::from_secs(1), 2);
        let t = Instant::now();
        limiter.check(ip(1), t);
        limiter.check(ip(2), t + Duration::from_secs(5));
        assert_eq!(limiter.tracked_clients(), 2);
        limiter.forget_idle(t + Duration::from_secs(6));
        assert_eq!(
            limiter.tracked_clients(),
            1,
            "ip(1) refilled after 2 s; ip(2) is recent"
        );
    }
}
