//! The JSON log line, written by hand. It has the shape of
//! tracing-subscriber's `json().flatten_event(true)` without spans:
//! `{"timestamp":…,"level":…,<fields in recorded order>,"target":…}`, one
//! object per line. Strings and numbers are written as serde_json writes
//! them (same escapes, same shortest float digits, `null` for a non-finite
//! float), but straight into the line: no `String` per field and no serde
//! map, which made the stock formatter most of an access-logged request's
//! cost.

use std::fmt::{self, Write as _};

use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON line (see the module docs).
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        out.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut out, OffsetDateTime::now_utc())?;
        out.write_str("\",\"level\":\"")?;
        out.write_str(meta.level().as_str())?;
        out.write_char('"')?;
        let mut fields = JsonFields {
            out: &mut out,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        out.write_str(",\"target\":")?;
        write_string(&mut out, meta.target())?;
        out.write_str("}\n")
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's `SystemTime`
/// timer prints it: `2026-12-05T21:03:24.296461Z` (years 0 to 9999).
fn write_timestamp(out: &mut impl fmt::Write, now: OffsetDateTime) -> fmt::Result {
    let (year, month, day) = now.to_calendar_date();
    let (hour, minute, second, micros) = now.to_hms_micro();
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], year.clamp(0, 9999).unsigned_abs());
    put_digits(&mut text[5..7], u8::from(month).into());
    put_digits(&mut text[8..10], day.into());
    put_digits(&mut text[11..13], hour.into());
    put_digits(&mut text[14..16], minute.into());
    put_digits(&mut text[17..19], second.into());
    put_digits(&mut text[20..26], micros);
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// Writes `value` zero-padded into all of `digits`.
fn put_digits(digits: &mut [u8], mut value: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Writes each field as `,"name":value`, in the order the event recorded
/// them. The first error is kept and the rest of the fields are skipped.
struct JsonFields<'w, 'a> {
    out: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn entry(&mut self, field: &Field, write_value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .out
                .write_str(",\"")
                .and_then(|()| JsonEscaped(&mut *self.out).write_str(field.name()))
                .and_then(|()| self.out.write_str("\":"))
                .and_then(|()| write_value(self.out));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| write_string(out, value));
    }

    // `%x`, `?x`, the message, and what `Visit` routes here by default
    // (i128, u128, byte slices, errors): a string, as tracing-serde has it.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(JsonEscaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| {
            if value.is_finite() {
                out.write_str(zmij::Buffer::new().format_finite(value))
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }
}

/// Writes `text` as a JSON string, quotes included.
fn write_string(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    JsonEscaped(&mut *out).write_str(text)?;
    out.write_char('"')
}

/// Passes text through with JSON string escapes applied, as serde_json
/// escapes: `\"`, `\\`, the short escapes `\b \f \n \r \t`, other control
/// characters as `\u00XX`; everything else (non-ASCII included) verbatim.
struct JsonEscaped<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<W> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        while let Some(at) = text.bytes().position(needs_escape) {
            self.0.write_str(&text[..at])?;
            let byte = text.as_bytes()[at];
            match byte {
                b'"' => self.0.write_str("\\\""),
                b'\\' => self.0.write_str("\\\\"),
                b'\n' => self.0.write_str("\\n"),
                b'\r' => self.0.write_str("\\r"),
                b'\t' => self.0.write_str("\\t"),
                0x08 => self.0.write_str("\\b"),
                0x0c => self.0.write_str("\\f"),
                _ => write!(self.0, "\\u{byte:04x}"),
            }?;
            // An ASCII byte: the rest starts on a char boundary.
            text = &text[at + 1..];
        }
        self.0.write_str(text)
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::tests::Captured;

    #[derive(Debug)]
    #[allow(dead_code)] // read through `Debug` only
    struct Request {
        id: u32,
        path: &'static str,
    }

    /// Emits an event with every kind of field.
    fn emit_every_field_kind() {
        let path = "/api/v1/query";
        let request = Request {
            id: 7,
            path: "a \"quoted\" path",
        };
        let error: Box<dyn std::error::Error> = "boom \u{7}".into();
        tracing::warn!(
            text = "plain \"str\" \\ with\ttab",
            %path,
            ?request,
            negative = -42_i64,
            big = u64::MAX,
            ratio = 0.1_f64,
            whole = 3.0_f64,
            tiny = 1e-7_f64,
            huge = 1e300_f64,
            nan = f64::NAN,
            infinite = f64::NEG_INFINITY,
            flag = true,
            wide = i128::MIN,
            error = &*error as &dyn std::error::Error,
            "line\nbreak \"quoted\" ünïcødé 🦀 \u{0} \u{1f} \u{8}\u{c}\r \u{7f}"
        );
        tracing::info!("second event, message only");
    }

    /// What `layer` writes for [`emit_every_field_kind`], line by line.
    fn lines_from<L>(layer: impl FnOnce(Captured) -> L) -> Vec<String>
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync,
    {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(layer(captured.clone()));
        tracing::subscriber::with_default(subscriber, emit_every_field_kind);
        captured.text().lines().map(str::to_owned).collect()
    }

    /// The keys in the order the line has them, and the line without its
    /// timestamp.
    fn keys_and_values(line: &str) -> (Vec<String>, Value) {
        let KeysInOrder(keys) = serde_json::from_str(line).unwrap();
        let mut value: Value = serde_json::from_str(line).unwrap();
        let timestamp = value.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(
            is_rfc3339_micros(timestamp.as_str().unwrap()),
            "{timestamp}"
        );
        (keys, value)
    }

    /// An object's keys in order (`serde_json::Map` sorts them).
    struct KeysInOrder(Vec<String>);

    impl<'de> serde::Deserialize<'de> for KeysInOrder {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = KeysInOrder;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }

                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<KeysInOrder, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, serde::de::IgnoredAny)) = map.next_entry()? {
                        keys.push(key);
                    }
                    Ok(KeysInOrder(keys))
                }
            }
            deserializer.deserialize_map(Keys)
        }
    }

    fn after_timestamp(line: &str) -> &str {
        &line[line.find(",\"level\":").unwrap()..]
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    fn is_rfc3339_micros(text: &str) -> bool {
        let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
        text.len() == shape.len()
            && text
                .bytes()
                .zip(shape.bytes())
                .all(|(byte, expected)| match expected {
                    b'd' => byte.is_ascii_digit(),
                    _ => byte == expected,
                })
    }

    #[test]
    fn lines_match_tracing_subscribers_json_format() {
        let stock = lines_from(|out| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(out)
        });
        let ours = lines_from(|out| {
            tracing_subscriber::fmt::layer()
                .event_format(JsonFormat)
                .with_writer(out)
        });
        assert_eq!(ours.len(), 2);
        assert_eq!(stock.len(), ours.len());
        for (stock, ours) in stock.iter().zip(&ours) {
            let (stock_keys, stock_value) = keys_and_values(stock);
            let (our_keys, our_value) = keys_and_values(ours);
            assert_eq!(our_keys, stock_keys);
            assert_eq!(our_value, stock_value);
            // Byte for byte after the timestamp: same escapes, same digits.
            assert_eq!(after_timestamp(ours), after_timestamp(stock));
        }
    }

    #[test]
    fn keys_come_in_the_documented_order() {
        let lines = lines_from(|out| {
            tracing_subscriber::fmt::layer()
                .event_format(JsonFormat)
                .with_writer(out)
        });
        let (keys, _) = keys_and_values(&lines[1]);
        assert_eq!(keys, ["timestamp", "level", "message", "target"]);
    }

    #[test]
    fn timestamp_is_utc_with_microseconds() {
        for (unix_nanos, expected) in [
            (1_796_504_604_296_461_999, "2026-12-05T21:03:24.296461Z"),
            (1_000, "1970-01-01T00:00:00.000001Z"),
        ] {
            let mut text = String::new();
            let at = OffsetDateTime::from_unix_timestamp_nanos(unix_nanos).unwrap();
            write_timestamp(&mut text, at).unwrap();
            assert_eq!(text, expected);
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        for byte in 0_u8..=0x7f {
            let text = char::from(byte).to_string();
            let mut ours = String::new();
            write_string(&mut ours, &text).unwrap();
            assert_eq!(
                ours,
                serde_json::to_string(&text).unwrap(),
                "byte {byte:#04x}"
            );
        }
    }
}
