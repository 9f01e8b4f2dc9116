//! The path a request is routed and forwarded by: its dot-segments removed
//! (RFC 3986 §5.2.4), so `/api/v1/../../metrics` is `/metrics` here and
//! for any upstream, never a path one reads as under `/api/v1/` and the
//! other as outside it. A segment of percent-encoded dots (`%2e%2E`) counts
//! as one: a server that decodes before it normalises would treat it so.
//! The query is left as it is.

use std::borrow::Cow;

/// `path_and_query` (origin form, starting with `/`) without dot-segments;
/// borrowed when it has none, as nearly every request.
pub fn normalize(path_and_query: &str) -> Cow<'_, str> {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    if !path.split('/').any(|segment| dots(segment).is_some()) {
        return Cow::Borrowed(path_and_query);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(segment) {
            Some(1) => {}
            Some(_) => {
                kept.pop();
            }
            None => {
                kept.push(segment);
                continue;
            }
        }
        // `/a/..` and `/a/.` name the directory: `/` stays at the end.
        if last {
            kept.push("");
        }
    }
    let mut normalized = String::with_capacity(path_and_query.len());
    for segment in kept {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    normalized.push_str(query);
    Cow::Owned(normalized)
}

/// `Some(1)` for `.`, `Some(2)` for `..` (either spelled with `%2e`),
/// `None` for any other segment.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return None,
        };
        count += 1;
        if count > 2 {
            return None;
        }
    }
    (count > 0).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        for (input, expected) in [
            ("/api/v1/query?q=1", "/api/v1/query?q=1"),
            ("/api/v1/../../metrics", "/metrics"),
            ("/api/v1/./query", "/api/v1/query"),
            ("/api/v1/x/../query?a=/../b", "/api/v1/query?a=/../b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../..", "/"),
            ("/./", "/"),
            ("/api/v1/%2e%2E/%2E/x", "/api/x"),
            ("/api/v1/...", "/api/v1/..."),
            ("/api/v1/.x/..y/%2e%2ex", "/api/v1/.x/..y/%2e%2ex"),
            ("/a//../b", "/a/b"),
        ] {
            assert_eq!(normalize(input), expected, "{input}");
        }
        assert!(matches!(normalize("/api/v1/query"), Cow::Borrowed(_)));
    }
}
