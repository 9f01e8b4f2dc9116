//! The HTTP request metrics — `http_requests_total`,
//! `http_request_duration_seconds` (a histogram) and `http_requests_in_flight`
//! — counted per thread and summed when `/metrics` is rendered.
//!
//! Why not the `metrics` recorder's counter, histogram and gauge: every
//! request updated them, and they are shared by all worker threads, so each
//! request paid about ten atomic read-modify-writes on cache lines the other
//! workers had just written (the histogram also takes a crossbeam epoch and
//! a clock read per sample). Profiled on the shipped jessy-core, that was
//! 3 % of a `/health` request's time (docs/src/performance-history.md).
//! Here a request touches only its own thread's tally: an uncontended lock
//! and two uncontended atomic adds. The rendering follows the Prometheus
//! text format as the exporter writes it (tests below).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::Method;
use thread_local::ThreadLocal;

/// Latency buckets in seconds: 1 ms .. 10 s.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The request metrics of one service.
#[derive(Default)]
pub struct HttpRequests {
    tallies: ThreadLocal<Arc<Tally>>,
}

/// One request being counted as in flight, until dropped (also when the
/// request's future is cancelled). Keeps the tally of the thread it began
/// on; should the request move to another thread, both may write it, which
/// the tally allows.
pub struct InFlight(Arc<Tally>);

/// The counts of one thread; its own line, so neighbours do not share it.
#[derive(Default)]
#[repr(align(128))]
struct Tally {
    in_flight: AtomicI64,
    answered: Mutex<foldhash::HashMap<Labels, Answered>>,
}

/// method, route template, status: the labels of the request metrics.
type Labels = (Method, &'static str, u16);

/// The requests answered with one set of labels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Answered {
    count: u64,
    seconds: f64,
    /// Per bucket, the answers that took at most its bound and more than the
    /// one before (made cumulative when rendered).
    buckets: [u64; LATENCY_BUCKETS.len()],
}

impl Answered {
    fn add(&mut self, seconds: f64) {
        self.count += 1;
        self.seconds += seconds;
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
    }

    fn merge(&mut self, other: &Answered) {
        self.count += other.count;
        self.seconds += other.seconds;
        for (sum, add) in self.buckets.iter_mut().zip(other.buckets) {
            *sum += add;
        }
    }
}

impl HttpRequests {
    /// Counts a request as in flight until the guard is dropped.
    pub fn begin(&self) -> InFlight {
        let tally = self.tallies.get_or(Arc::default);
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(tally))
    }

    /// Renders the three metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut answered: BTreeMap<(String, &'static str, u16), Answered> = BTreeMap::new();
        let mut in_flight = 0;
        for tally in self.tallies.iter() {
            in_flight += tally.in_flight.load(Ordering::Relaxed);
            let counts = tally
                .answered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for ((method, route, status), counted) in counts.iter() {
                answered
                    .entry((method.as_str().to_owned(), *route, *status))
                    .or_default()
                    .merge(counted);
            }
        }
        render(out, &answered, in_flight);
    }
}

impl InFlight {
    /// Counts the request as answered with `status` on `route` after `elapsed`.
    pub fn answered(&self, route: &'static str, method: &Method, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut counts = self
            .0
            .answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match counts.get_mut(&(method.clone(), route, status)) {
            Some(counted) => counted.add(seconds),
            None => {
                let mut counted = Answered::default();
                counted.add(seconds);
                counts.insert((method.clone(), route, status), counted);
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn render(out: &mut String, answered: &BTreeMap<(String, &str, u16), Answered>, in_flight: i64) {
    let labels = |method: &str, route: &str, status: u16| {
        format!(
            "method=\"{}\",route=\"{}\",status=\"{status}\"",
            escape(method),
            escape(route)
        )
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP http_requests_total HTTP requests answered, by method, matched route and status.\n\
         # TYPE http_requests_total counter"
    );
    for ((method, route, status), counted) in answered {
        let _ = writeln!(
            out,
            "http_requests_total{{{}}} {}",
            labels(method, route, *status),
            counted.count
        );
    }
    let _ = writeln!(
        out,
        "\n# HELP http_request_duration_seconds Time to answer HTTP requests, by method, matched route and status.\n\
         # TYPE http_request_duration_seconds histogram"
    );
    for ((method, route, status), counted) in answered {
        let labels = labels(method, route, *status);
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(counted.buckets) {
            cumulative += count;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
             http_request_duration_seconds_sum{{{labels}}} {}\n\
             http_request_duration_seconds_count{{{labels}}} {}",
            counted.count, counted.seconds, counted.count
        );
    }
    let _ = writeln!(
        out,
        "\n# HELP http_requests_in_flight HTTP requests currently being served.\n\
         # TYPE http_requests_in_flight gauge\n\
         http_requests_in_flight {in_flight}\n"
    );
}

/// A label value as the text format wants it.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(requests: &HttpRequests) -> String {
        let mut out = String::new();
        requests.render(&mut out);
        out
    }

    #[test]
    fn requests_are_counted_and_timed_by_labels_across_threads() {
        let requests = Arc::new(HttpRequests::default());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let requests = Arc::clone(&requests);
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        let request = requests.begin();
                        request.answered("/health", &Method::GET, 200, Duration::from_micros(300));
                    }
                    let request = requests.begin();
                    request.answered("unmatched", &Method::POST, 404, Duration::from_millis(30));
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let text = rendered(&requests);
        for line in [
            r#"http_requests_total{method="GET",route="/health",status="200"} 1000"#,
            r#"http_requests_total{method="POST",route="unmatched",status="404"} 4"#,
            // 0.3 ms: in the first bucket and every one after it.
            r#"http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="0.001"} 1000"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"} 1000"#,
            r#"http_request_duration_seconds_count{method="GET",route="/health",status="200"} 1000"#,
            // 30 ms: above 0.025, within 0.05.
            r#"http_request_duration_seconds_bucket{method="POST",route="unmatched",status="404",le="0.025"} 0"#,
            r#"http_request_duration_seconds_bucket{method="POST",route="unmatched",status="404",le="0.05"} 4"#,
            r#"http_request_duration_seconds_bucket{method="POST",route="unmatched",status="404",le="10"} 4"#,
            "# TYPE http_requests_total counter",
            "# TYPE http_request_duration_seconds histogram",
            "# TYPE http_requests_in_flight gauge",
            "http_requests_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"http_request_duration_seconds_sum{method="GET",route="/health",status="200"} "#)
            })
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 0.3).abs() < 1e-9, "sum {sum}");
    }

    #[test]
    fn a_request_is_in_flight_until_its_guard_goes_also_from_another_thread() {
        let requests = HttpRequests::default();
        let first = requests.begin();
        let second = requests.begin();
        assert!(rendered(&requests).contains("\nhttp_requests_in_flight 2\n"));
        std::thread::spawn(move || drop(second)).join().unwrap();
        assert!(rendered(&requests).contains("\nhttp_requests_in_flight 1\n"));
        drop(first);
        assert!(rendered(&requests).contains("\nhttp_requests_in_flight 0\n"));
    }

    #[test]
    fn an_answer_over_every_bound_is_only_in_the_infinite_bucket() {
        let requests = HttpRequests::default();
        requests
            .begin()
            .answered("/slow", &Method::GET, 503, Duration::from_secs(11));
        let text = rendered(&requests);
        assert!(text.contains(r#"status="503",le="10"} 0"#), "{text}");
        assert!(text.contains(r#"status="503",le="+Inf"} 1"#), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("/plain"), "/plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_exposition_parses_as_the_text_format() {
        let requests = HttpRequests::default();
        requests
            .begin()
            .answered("/health", &Method::GET, 200, Duration::from_millis(2));
        // Every line is a comment, blank, or `name{labels} value` with a
        // number for value.
        for line in rendered(&requests).lines() {
            if line.is_empty() || line.starts_with("# ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(
                series.starts_with("http_") && (series.ends_with('}') || !series.contains('{')),
                "{line}"
            );
        }
    }
}
