//! The route label of a request's metrics and access-log line: the template
//! of the route it matched, or `"unmatched"` (so a scan of random URLs cannot
//! explode label cardinality).
//!
//! Every route of both services is a fixed path, so a route's template is
//! its path: [`Routes`] adds each route to the router and to the
//! [`RouteLabels`] together, and [`RouteLabels::of`] labels a request from
//! its path before it is routed. Why not read axum's `MatchedPath` after
//! routing: that needs a route layer that carries the template out on the
//! response, which cost a boxed service clone and three allocations per
//! request (docs/src/performance-history.md). A template with parameters
//! would not be its own path, so [`Routes::route`] refuses one.

use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;

/// The label of every request whose path is not a route.
pub const UNMATCHED: &str = "unmatched";

/// The route templates of a service.
#[derive(Debug, Clone, Default)]
pub struct RouteLabels(Arc<[&'static str]>);

impl RouteLabels {
    /// The template of the route `path` is, or [`UNMATCHED`]. (A route with
    /// the wrong method is still that route: its 405 carries its template.)
    pub fn of(&self, path: &str) -> &'static str {
        self.0
            .iter()
            .find(|template| **template == path)
            .copied()
            .unwrap_or(UNMATCHED)
    }
}

/// A router whose routes are all fixed paths, and their labels.
pub struct Routes<S> {
    router: Router<S>,
    templates: Vec<&'static str>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            templates: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// Adds the route `path` (a fixed path: no `{parameter}`, no wildcard).
    ///
    /// # Panics
    /// When `path` has a parameter or a wildcard: its label would not be
    /// its template. This is a programming error, caught by every test that
    /// builds the router.
    pub fn route(mut self, path: &'static str, method_router: MethodRouter<S>) -> Self {
        assert!(
            !path.contains(['{', '}', '*']),
            "route {path}: only fixed paths can be labelled by their path (src/http/routes.rs)"
        );
        self.router = self.router.route(path, method_router);
        self.templates.push(path);
        self
    }

    /// The router, and the labels of its routes.
    pub fn into_parts(self) -> (Router<S>, RouteLabels) {
        (self.router, RouteLabels(self.templates.into()))
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[test]
    fn a_request_is_labelled_by_the_route_its_path_is_and_nothing_else() {
        let (_, labels) = Routes::<()>::default()
            .route("/health", get(|| async {}))
            .route("/api/v1/query", get(|| async {}))
            .into_parts();
        assert_eq!(labels.of("/health"), "/health");
        assert_eq!(labels.of("/api/v1/query"), "/api/v1/query");
        for other in [
            "/",
            "/health/",
            "/Health",
            "/healthz",
            "/heal%74h",
            "/api/v1",
            "",
        ] {
            assert_eq!(labels.of(other), UNMATCHED, "{other:?}");
        }
    }

    #[test]
    #[should_panic(expected = "only fixed paths")]
    fn a_route_with_a_parameter_is_refused() {
        let _ = Routes::<()>::default().route("/items/{id}", get(|| async {}));
    }
}
