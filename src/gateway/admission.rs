//! Admission of forwarded requests, in this order: the client's rate
//! ([`super::rate_limit`]; an abusive client is refused before it takes a
//! concurrency permit), the gateway's concurrency ([`super::load_shed`]; the
//! permit is held until the core's response headers arrive), then the
//! declared body size (a chunked body is held to the same limit while it
//! streams, [`super::relay`]).

use std::net::IpAddr;

use tokio::sync::OwnedSemaphorePermit;

use super::load_shed::ConcurrencyLimit;
use super::rate_limit::RateLimit;
use crate::h1::Framing;
use crate::http::body_limit::BodyLimit;
use crate::http::error::ApiError;

/// The three checks.
#[derive(Debug)]
pub struct Admission {
    rate_limit: Option<RateLimit>,
    concurrency: ConcurrencyLimit,
    pub body_limit: BodyLimit,
}

impl Admission {
    pub fn new(
        rate_limit: Option<RateLimit>,
        concurrency: ConcurrencyLimit,
        body_limit: BodyLimit,
    ) -> Admission {
        Admission {
            rate_limit,
            concurrency,
            body_limit,
        }
    }

    /// Admits a request from `peer` (with these `X-Forwarded-For` values)
    /// whose body is framed by `framing`: a permit to hold, or the refusal.
    pub fn admit<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
        framing: Framing,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.check(peer, forwarded_for)?;
        }
        let permit = self.concurrency.acquire()?;
        if let Framing::Length(declared) = framing
            && declared > self.body_limit.0 as u64
        {
            return Err(self.body_limit.error());
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::rate_limit::RateLimiter;
    use std::sync::Arc;
    use std::time::Duration;

    fn admission(rate: u32, concurrency: usize, body: usize) -> Admission {
        Admission::new(
            Some(RateLimit {
                limiter: Arc::new(RateLimiter::new(rate, Duration::from_secs(60), rate)),
                trusted: Default::default(),
            }),
            ConcurrencyLimit::new(concurrency),
            BodyLimit(body),
        )
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_rate_is_checked_before_a_permit_is_taken() {
        let admission = admission(1, 1, 10);
        let held = admission.admit(PEER, [], Framing::Empty).unwrap();
        // Over its rate and with no permit left: the rate answers.
        let refused = admission.admit(PEER, [], Framing::Empty).unwrap_err();
        assert_eq!(refused.code, "rate_limited");
        drop(held);
    }

    #[test]
    fn concurrency_then_the_declared_body_size_refuse() {
        let admission = admission(100, 1, 10);
        let held = admission.admit(PEER, [], Framing::Length(10)).unwrap();
        assert_eq!(
            admission.admit(PEER, [], Framing::Empty).unwrap_err().code,
            "overloaded"
        );
        drop(held);
        assert_eq!(
            admission
                .admit(PEER, [], Framing::Length(11))
                .unwrap_err()
                .code,
            "body_too_large"
        );
        assert!(admission.admit(PEER, [], Framing::Chunked).is_ok());
    }
}
