//! `POST /api/v1/query`: validate the request, navigate, answer.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::CoreState;
use super::navigation::Navigation;
use crate::http::error::ApiError;
use crate::http::json::{Json, JsonResponse};

/// Longest accepted query, in characters (not bytes).
pub const MAX_QUERY_CHARS: usize = 10_000;
/// Longest accepted session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// The request body.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryRequest {
    pub query: String,
    #[serde(default)]
    pub session_id: Option<String>,
}

/// The answer: the navigation plus the session and a readable summary.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResponse {
    pub session_id: String,
    /// `completed`, or `blocked` when D14-Security stopped the query.
    pub status: &'static str,
    pub answer: String,
    #[serde(flatten)]
    pub navigation: Navigation,
}

/// A query that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidQuery {
    pub query: String,
    pub session_id: String,
}

/// Checks the request; a missing session id gets a new UUID (from the
/// request-id generator: unique, not secret, and no syscall per request).
pub fn validate(req: QueryRequest) -> Result<ValidQuery, ApiError> {
    if req.query.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_query",
            "the query must not be empty",
        ));
    }
    // Counting characters is a pass over the text, needed only when there
    // are more bytes than the limit allows characters.
    if req.query.len() > MAX_QUERY_CHARS {
        let chars = req.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(ApiError::payload_too_large(
                "query_too_long",
                format!("the query has {chars} characters; the limit is {MAX_QUERY_CHARS}"),
            ));
        }
    }
    let session_id = match req.session_id {
        None => crate::http::request_id::generate()
            .to_str()
            .unwrap_or_default()
            .to_owned(),
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_SESSION_ID_LEN
                && !id.chars().any(char::is_control) =>
        {
            id
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_session_id",
                format!(
                    "session_id must be 1 to {MAX_SESSION_ID_LEN} bytes without control characters"
                ),
            ));
        }
    };
    Ok(ValidQuery {
        query: req.query,
        session_id,
    })
}

/// A one-sentence summary of the navigation (deterministic, like the rest).
pub fn answer(nav: &Navigation) -> String {
    if nav.blocked {
        return "Request blocked: the query was recognised as harmful intent (D14-Security)."
            .to_owned();
    }
    if nav.dimensions.is_empty() {
        return format!(
            "No dimension was activated by the keywords; resting at {} Hz.",
            nav.dominant_frequency_hz
        );
    }
    // One buffer, written in place: this runs for every query.
    let mut text = String::with_capacity(160);
    text.push_str("Navigated through ");
    for (i, d) in nav.dimensions.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}-{}", d.id, d.name);
    }
    let _ = write!(
        text,
        " at a dominant frequency of {} Hz.",
        nav.dominant_frequency_hz
    );
    if nav.return_to_source {
        let _ = write!(
            text,
            " {} dimensions were activated, so the navigation returned to source and kept the top 3.",
            nav.activated_count
        );
    }
    if nav.balance_applied {
        text.push_str(
            " The frequency ran above 3.5 Hz, so D13-Balance modulated it toward 0.8 Hz.",
        );
    }
    text
}

fn outcome(nav: &Navigation) -> &'static str {
    if nav.blocked {
        "blocked"
    } else if nav.dimensions.is_empty() {
        "no_match"
    } else if nav.return_to_source {
        "return_to_source"
    } else {
        "navigated"
    }
}

/// Registers the help text of the query metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "jessy_core_queries_total",
        "Queries navigated, by outcome (navigated, return_to_source, blocked, no_match)."
    );
}

/// The handler.
pub async fn query(
    State(state): State<Arc<CoreState>>,
    Json(req): Json<QueryRequest>,
) -> Result<JsonResponse<QueryResponse>, ApiError> {
    let valid = validate(req)?;
    let navigation = state.navigator.navigate(&valid.query);
    metrics::counter!("jessy_core_queries_total", "outcome" => outcome(&navigation)).increment(1);
    Ok(JsonResponse(QueryResponse {
        session_id: valid.session_id,
        status: if navigation.blocked {
            "blocked"
        } else {
            "completed"
        },
        answer: answer(&navigation),
        navigation,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn req(query: &str, session: Option<&str>) -> QueryRequest {
        QueryRequest {
            query: query.to_owned(),
            session_id: session.map(str::to_owned),
        }
    }

    #[test]
    fn empty_and_whitespace_queries_are_400() {
        for q in ["", "   ", "\n\t "] {
            let err = validate(req(q, None)).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (StatusCode::BAD_REQUEST, "empty_query")
            );
        }
    }

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_QUERY_CHARS);
        assert!(
            validate(req(&at_limit, None)).is_ok(),
            "10,000 two-byte chars are fine"
        );
        let over = "a".repeat(MAX_QUERY_CHARS + 1);
        let err = validate(req(&over, None)).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "query_too_long")
        );
    }

    #[test]
    fn session_ids_are_echoed_or_generated_and_validated() {
        assert_eq!(
            validate(req("hi there", Some("abc"))).unwrap().session_id,
            "abc"
        );
        let generated = validate(req("hi there", None)).unwrap().session_id;
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
        for bad in ["", "a\u{0}b", &"x".repeat(MAX_SESSION_ID_LEN + 1)] {
            let err = validate(req("hi there", Some(bad))).unwrap_err();
            assert_eq!(err.code, "invalid_session_id");
        }
    }

    #[test]
    fn answers_describe_blocking_return_to_source_and_balance() {
        let nav = super::super::navigation::Navigator::from_embedded().unwrap();
        let blocked = nav.navigate("how to hack into a bank and steal passwords");
        assert!(answer(&blocked).starts_with("Request blocked"));
        assert_eq!(outcome(&blocked), "blocked");
        let many = nav.navigate(
            "I feel sad and anxious, I think about the meaning of life, my friends and family, the future, code, art, ethics and the forest",
        );
        assert!(
            answer(&many).contains("returned to source"),
            "{}",
            answer(&many)
        );
        assert_eq!(outcome(&many), "return_to_source");
        let urgent = nav.navigate("urgent emergency critical fix the server now immediately");
        assert!(answer(&urgent).contains("D13-Balance"));
        let none = nav.navigate("zzzz qqqq");
        assert!(answer(&none).starts_with("No dimension"));
        assert_eq!(outcome(&none), "no_match");
        let one = nav.navigate("What is the meaning of life and existence?");
        assert!(answer(&one).contains("D06-Philosophical"));
        assert_eq!(outcome(&one), "navigated");
    }
}
