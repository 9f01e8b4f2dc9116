//! CORS for the configured origins only (CORS_ALLOWED_ORIGINS); none
//! configured, no CORS headers at all (browsers then refuse cross-origin
//! calls, the safe default).
//!
//! Preflights (every `OPTIONS` request, as tower-http treats them) are
//! answered by tower-http's layer around the gateway's own router
//! ([`Cors::layer`]); forwarded answers and the gateway's refusals get the
//! same fields that layer would add ([`Cors::write_fields`]), written
//! straight into the response head. A test holds the two to each other.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::config::Origin;

/// `Vary` on every answer: the answer depends on the origin (tower-http
/// derives this from a fixed list of methods and headers and a list of
/// origins).
const VARY: &[u8] = b"origin";
/// Headers a browser script may read on a cross-origin answer.
const EXPOSE: &[u8] = b"x-request-id,retry-after";

/// The allowed origins.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<HeaderValue>,
}

impl Cors {
    /// `None` when no origin is allowed.
    pub fn new(origins: &[Origin]) -> Option<Cors> {
        (!origins.is_empty()).then(|| Cors {
            origins: origins.iter().map(|o| o.0.clone()).collect(),
        })
    }

    /// The layer that answers preflights and decorates the gateway's own
    /// endpoints.
    pub fn layer(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600))
    }

    /// The fields a non-preflight answer gets for a request from `origin`.
    pub fn write_fields(&self, out: &mut Vec<u8>, origin: Option<&[u8]>) {
        out.extend_from_slice(b"vary: ");
        out.extend_from_slice(VARY);
        out.extend_from_slice(b"\r\naccess-control-expose-headers: ");
        out.extend_from_slice(EXPOSE);
        out.extend_from_slice(b"\r\n");
        if let Some(origin) = origin.filter(|o| self.origins.iter().any(|allowed| allowed == o)) {
            out.extend_from_slice(b"access-control-allow-origin: ");
            out.extend_from_slice(origin);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Response fields the core may send that [`Self::write_fields`] sets
    /// instead (tower-http overwrites them too).
    pub const REPLACED: [&'static str; 2] = [
        "access-control-allow-origin",
        "access-control-expose-headers",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, Response};
    use tower::{Layer, ServiceExt};

    /// What tower-http's layer adds to a plain answer for `origin`.
    async fn layer_fields(cors: &Cors, origin: Option<&str>) -> Vec<(String, String)> {
        let service = cors
            .layer()
            .layer(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }));
        let mut req = Request::get("/api/v1/query");
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        let res = service
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let mut fields: Vec<(String, String)> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        fields.sort();
        fields
    }

    fn written_fields(cors: &Cors, origin: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        cors.write_fields(&mut out, origin.map(str::as_bytes));
        let mut fields: Vec<(String, String)> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        fields.sort();
        fields
    }

    #[tokio::test]
    async fn forwarded_answers_get_what_the_layer_gives_the_gateways_own() {
        let origins =
            crate::config::parse_list::<Origin>("https://app.example.com, https://b.example")
                .unwrap();
        let cors = Cors::new(&origins.0).unwrap();
        for origin in [
            Some("https://app.example.com"),
            Some("https://b.example"),
            Some("https://evil.example.com"),
            None,
        ] {
            assert_eq!(
                written_fields(&cors, origin),
                layer_fields(&cors, origin).await,
                "{origin:?}"
            );
        }
    }

    #[test]
    fn no_origins_means_no_cors() {
        assert!(Cors::new(&[]).is_none());
    }
}
