//! How log fields are written: `name=value`, copied straight into the line.
//!
//! tracing-subscriber's default field formatter runs every field through `write!` with
//! styling wrappers (`{}{}{:?}`), even with colours off: about 900 instructions a field, 9,000
//! for an access-log line, a quarter of a proxied request. This one copies plain values as
//! they are and goes through `fmt` only for values that need escaping or are `Debug`.
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

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
fn is_plain(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b > b' ' && b != b'"' && b != 0x7f)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

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

    fn logged(emit: impl FnOnce()) -> String {
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
    fn messages_keep_spaces_and_lose_control_characters() {
        assert_eq!(logged(|| tracing::warn!("backend ejected")), "backend ejected");
        assert_eq!(
            logged(|| tracing::warn!("{}", "evil\u{1b}[31m\nline")),
            "evil\\u{1b}[31m\\nline"
        );
    }
}
