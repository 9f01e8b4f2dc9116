//! `jessy_api_rejections_total{reason}`: every request the gateway itself
//! refused or could not complete, counted in one place from the error code
//! the refusal carries.

use crate::http::error::ApiError;

/// The rejection reason for an error code, if it is a rejection.
pub fn reason(code: &str) -> Option<&'static str> {
    match code {
        "rate_limited" => Some("rate_limited"),
        "body_too_large" => Some("body_too_large"),
        "upstream_timeout" => Some("timeout"),
        "body_timeout" => Some("body_timeout"),
        "upstream_unavailable" => Some("upstream_unavailable"),
        "overloaded" => Some("overloaded"),
        _ => None,
    }
}

pub fn describe() {
    metrics::describe_counter!(
        "jessy_api_rejections_total",
        "Requests the gateway refused or could not complete, by reason (rate_limited, body_too_large, body_timeout, timeout, upstream_unavailable, overloaded)."
    );
    for reason in [
        "rate_limited",
        "body_too_large",
        "body_timeout",
        "timeout",
        "upstream_unavailable",
        "overloaded",
    ] {
        // Start every series at zero so rate() works from the first scrape.
        metrics::counter!("jessy_api_rejections_total", "reason" => reason).increment(0);
    }
}

/// Counts `error` if it is a rejection.
pub fn record(error: &ApiError) {
    if let Some(reason) = reason(error.code) {
        metrics::counter!("jessy_api_rejections_total", "reason" => reason).increment(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_gateway_refusals_are_rejections() {
        assert_eq!(super::reason("upstream_timeout"), Some("timeout"));
        assert_eq!(super::reason("rate_limited"), Some("rate_limited"));
        assert_eq!(super::reason("not_found"), None);
        assert_eq!(super::reason("internal_error"), None);
    }
}
