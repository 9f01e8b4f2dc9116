//! The `Date` field of answers the gateway writes itself (RFC 9110 §6.6.1:
//! an origin server with a clock sends one; hyper did for the core's).
//! Formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second last formatted, and its text.
    static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `date: <IMF-fixdate>\r\n` for now.
pub fn write_field(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            *cached_second = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_field_is_an_imf_fixdate_that_parses_back() {
        let mut out = Vec::new();
        super::write_field(&mut out);
        let text = String::from_utf8(out).unwrap();
        let value = text
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        assert_eq!(value.len(), 29, "{value}");
        assert!(value.ends_with(" GMT"), "{value}");
        assert!(httpdate::parse_http_date(value).is_ok(), "{value}");
    }
}
