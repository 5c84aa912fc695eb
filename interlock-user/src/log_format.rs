//! How log lines are written, cheaply enough for an access-log line per request.
//!
//! tracing-subscriber's default field formatter runs every field through `write!` with
//! styling wrappers (`{}{}{:?}`), even with colours off: about 900 instructions a field, 9,000
//! for an access-log line, a quarter of a proxied request. `PlainFields` copies plain values
//! as they are and goes through `fmt` only for values that need escaping or are `Debug`.
//! `UtcTime` writes the same RFC 3339 timestamp as the default timer with digits by hand
//! (the default's padded `write!`s cost 2,300 instructions a line).
use std::cell::Cell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FormatFields;

/// Timestamps like `2026-11-25T11:17:30.458061Z` (UTC, microseconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct UtcTime;

impl FormatTime for UtcTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        // Only ASCII digits and separators are written.
        w.write_str(std::str::from_utf8(&now_rfc3339()).map_err(|_| fmt::Error)?)
    }
}

thread_local! {
    /// The last second written and its text: lines within one second only write the
    /// microseconds.
    static LAST_SECOND: Cell<(u64, [u8; 27])> = const { Cell::new((u64::MAX, [0; 27])) };
}

/// The current time as [`UtcTime`] writes it.
pub(crate) fn now_rfc3339() -> [u8; 27] {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (last, mut text) = LAST_SECOND.get();
    if last != secs {
        rfc3339(secs, 0, &mut text);
        LAST_SECOND.set((secs, text));
    }
    put_digits(&mut text, 20, 6, u64::from(since.subsec_micros()));
    text
}

/// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` for a time in seconds since 1970 (UTC).
pub(crate) fn rfc3339(secs: u64, micros: u32, out: &mut [u8; 27]) {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let in_day = secs % 86_400;
    put_digits(out, 0, 4, year.clamp(0, 9999) as u64);
    put_digits(out, 5, 2, month as u64);
    put_digits(out, 8, 2, day as u64);
    put_digits(out, 11, 2, in_day / 3600);
    put_digits(out, 14, 2, in_day / 60 % 60);
    put_digits(out, 17, 2, in_day % 60);
    put_digits(out, 20, 6, micros.min(999_999) as u64);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = c;
    }
}

/// `value` as `width` zero-padded digits at `at`.
fn put_digits(out: &mut [u8; 27], at: usize, width: usize, mut value: u64) {
    for i in (at..at + width).rev() {
        out[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, public domain).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The field formatter of the agent's log lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl PlainVisitor<'_> {
    /// Writes the separator and `name=` (nothing for the message), then the value.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.writer.write_char(' ')?;
            }
            self.first = false;
            let name = field.name();
            if name != "message" {
                self.writer.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.writer.write_char('=')?;
            }
            value(&mut self.writer)
        })();
    }
}

/// A value that can be written as it is: no spaces, quotes or control characters, so a
/// line stays one line and splits unambiguously into fields.
pub(crate) fn is_plain(value: &str) -> bool {
    // A fold without early exit: vectorised, where `all` tests a byte at a time (values
    // are short and almost always plain).
    !value.is_empty()
        && value
            .bytes()
            .fold(true, |plain, b| plain & (b > b' ') & (b != b'"') & (b != 0x7f))
}

/// Passes text through with control characters escaped (`\n`, `\u{1b}`): a message or a
/// `Debug` value cannot break the line or drive a terminal.
struct EscapeControl<'a, 'writer>(&'a mut Writer<'writer>);

impl Write for EscapeControl<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.chars().any(char::is_control) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_debug())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.field(field, |w| {
            if is_plain(value) {
                w.write_str(value)
            } else if message {
                EscapeControl(w).write_str(value)
            } else {
                write!(w, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(EscapeControl(w), "{value:?}"));
    }
}

/// Lines as the agent's text format writes them (no time, level or target), for tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::PlainFields;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    pub fn logged(emit: impl FnOnce()) -> String {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .fmt_fields(PlainFields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_support::logged;

    #[test]
    fn plain_values_as_they_are_others_quoted() {
        let line = logged(|| {
            tracing::info!(
                client = "192.0.2.1",
                path = "/a?b=1",
                status = 200u16,
                delta = -3i64,
                ok = true,
                odd = "two words",
                nl = "a\nb",
                empty = "",
                dbg = ?Some(1),
                "done {}",
                7
            )
        });
        assert_eq!(
            line,
            "done 7 client=192.0.2.1 path=/a?b=1 status=200 delta=-3 ok=true odd=\"two words\" nl=\"a\\nb\" empty=\"\" dbg=Some(1)"
        );
    }

    #[test]
    fn timestamps_in_rfc3339() {
        let text = |secs, micros| {
            let mut out = [0u8; 27];
            rfc3339(secs, micros, &mut out);
            String::from_utf8(out.to_vec()).unwrap()
        };
        assert_eq!(text(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(text(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(text(1_795_605_450, 458_061), "2026-11-25T11:17:30.458061Z");
        assert_eq!(text(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z");
        // Within one second the cached date and time read as a full format does.
        for _ in 0..3 {
            let secs = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let before = secs();
            let (a, b) = (now_rfc3339(), now_rfc3339());
            if secs() == before {
                assert_eq!(a[..20], text(before, 0).as_bytes()[..20]);
                assert_eq!(b[..20], a[..20]);
                break;
            }
        }
        let mut w = String::new();
        UtcTime.format_time(&mut Writer::new(&mut w)).unwrap();
        assert!(w.starts_with("20") && w.ends_with('Z') && w.len() == 27, "{w}");
    }

    #[test]
    fn messages_keep_spaces_and_lose_control_characters() {
        assert_eq!(logged(|| tracing::warn!("backend ejected")), "backend ejected");
        assert_eq!(
            logged(|| tracing::warn!("{}", "evil\u{1b}[31m\nline")),
            "evil\\u{1b}[31m\\nline"
        );
    }
}
