//! The access-log line, one per proxied request, written without tracing's machinery.
//!
//! Through `tracing::info!` a line costs about 5,500 instructions (dispatch, the visitor
//! per field, the writer's formatting): a fifth of a proxied request. The proxy's own text
//! lines have a fixed shape, so they are written here straight into a reused buffer and
//! handed to the same non-blocking stderr writer (`log_writer`), in the same format tracing
//! would give them (`log_format`): timestamp, level, target, `name=value` fields with
//! values that need it quoted. Whether the line is wanted is still tracing's decision
//! (`RUST_LOG=info,interlock::access=off` turns it off). With JSON logs, or before
//! [`install`] (tests, tools), lines go through tracing as before.
use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;

use crate::log_format::{is_plain, now_rfc3339};
use crate::log_writer::LogSink;

static SINK: OnceLock<LogSink> = OnceLock::new();

/// Writes text access lines straight to `writer` from now on (the text log format's writer).
pub fn install(writer: LogSink) {
    let _ = SINK.set(writer);
}

/// What one access-log line says.
pub struct Line<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub status: u16,
    pub micros: u64,
    pub request_id: &'a str,
}

thread_local! {
    /// The line being written (reused).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Logs `line` at INFO under the target `interlock::access`.
pub fn write(line: &Line<'_>) {
    if !tracing::enabled!(target: "interlock::access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        return via_tracing(line);
    };
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(&now_rfc3339());
        buf.extend_from_slice(b"  INFO interlock::access: ");
        format_fields(line, buf);
        buf.push(b'\n');
        // Lossy and bounded (see `log_writer`): a full queue drops the line, never blocks.
        sink.push(buf);
    });
}

/// The fields as `log_format::PlainFields` writes them.
fn format_fields(line: &Line<'_>, buf: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    let fields: [(&str, &str); 6] = [
        ("client=", line.client),
        (" method=", line.method),
        (" host=", line.host),
        (" path=", line.path),
        (" route=", line.route),
        (" upstream=", line.upstream),
    ];
    for (name, value) in fields {
        buf.extend_from_slice(name.as_bytes());
        value_into(buf, value);
    }
    buf.extend_from_slice(b" status=");
    buf.extend_from_slice(num.format(line.status).as_bytes());
    buf.extend_from_slice(b" us=");
    buf.extend_from_slice(num.format(line.micros).as_bytes());
    buf.extend_from_slice(b" request_id=");
    value_into(buf, line.request_id);
}

/// A plain value as it is, any other quoted and escaped as `Debug` does.
fn value_into(buf: &mut Vec<u8>, value: &str) {
    if is_plain(value) {
        buf.extend_from_slice(value.as_bytes());
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

fn via_tracing(line: &Line<'_>) {
    tracing::info!(
        target: "interlock::access",
        client = line.client,
        method = line.method,
        host = line.host,
        path = line.path,
        route = line.route,
        upstream = line.upstream,
        status = line.status,
        us = line.micros,
        request_id = line.request_id,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_tracing_writes_them() {
        let line = Line {
            client: "192.0.2.1",
            method: "GET",
            host: "a.example",
            path: "/a b?\"q\"",
            route: "app",
            upstream: "-",
            status: 200,
            micros: 1434,
            request_id: "abc-1",
        };
        let mut buf = Vec::new();
        format_fields(&line, &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "client=192.0.2.1 method=GET host=a.example path=\"/a b?\\\"q\\\"\" route=app upstream=- \
             status=200 us=1434 request_id=abc-1"
        );
        // The same fields through tracing and the agent's field formatter.
        let through_tracing = crate::log_format::test_support::logged(|| via_tracing(&line));
        let mut buf = Vec::new();
        format_fields(&line, &mut buf);
        assert_eq!(through_tracing, String::from_utf8(buf).unwrap());
    }
}
