//! The access-log line, one per proxied request, written without tracing's machinery.
//!
//! Through `tracing::info!` a line costs about 5,500 instructions (dispatch, the visitor
//! per field, the writer's formatting): a fifth of a proxied request. The lines have a fixed
//! shape, so they are written here straight into a reused buffer and handed to a
//! non-blocking writer thread (`log_writer`): stderr's (shared with the agent's log) or a
//! file's (`--access-log <path>`), or nowhere (`--access-log off`). Three formats
//! (`--access-log-format`): `text`, as tracing would write the line (`log_format`:
//! timestamp, level, target, `name=value` fields, values that need it quoted); `json`, the
//! shape of tracing's JSON lines (`timestamp`, `level`, `fields`, `target`), strings escaped
//! only when they hold a quote, a backslash or a control character; `combined`, Apache's and
//! nginx's combined log format (`"` `\` and bytes outside printable ASCII as `\xHH`, as
//! nginx does). On stderr, whether the line is wanted is still tracing's decision
//! (`RUST_LOG=info,interlock::access=off`); a file gets every line. Before [`configure`]
//! and [`install`] (tests, tools), lines go through tracing as before.
//!
//! `bytes` is the response body's length when it is known as the head is answered (its
//! `Content-Length`, or the proxy's own answer), else `-`: a streamed body's size is known
//! only once it has been sent, after the line is written.
use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use crate::config::args::AccessLogFormat;
use crate::log_format::{is_plain, now_rfc3339};
use crate::log_writer::{FlushGuard, LogSink};

/// stderr's writer (the agent's own log lines go there too).
static STDERR: OnceLock<LogSink> = OnceLock::new();

/// Where and how lines are written, once the HTTP plane has said (`configure`).
static CONFIG: OnceLock<Config> = OnceLock::new();

struct Config {
    format: AccessLogFormat,
    out: Out,
}

enum Out {
    Off,
    Stderr,
    File(LogSink),
}

/// Where access lines go (`--access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Off,
    File(std::path::PathBuf),
}

/// stderr's writer, for text lines written straight to it (`--log-format text`) and for
/// [`configure`]d lines bound for stderr.
pub fn install(writer: LogSink) {
    let _ = STDERR.set(writer);
}

/// Sets the access log's format and destination for the process (the first call counts).
/// A file is opened for appending (created if missing) now, so a bad path fails the start;
/// the guard writes the lines still queued when dropped.
pub fn configure(format: AccessLogFormat, destination: &Destination) -> std::io::Result<Option<FlushGuard>> {
    let (out, guard) = match destination {
        Destination::Off => (Out::Off, None),
        Destination::Stderr => (Out::Stderr, None),
        Destination::File(path) => {
            let (sink, guard) = crate::log_writer::file(path)?;
            (Out::File(sink), Some(guard))
        }
    };
    let _ = CONFIG.set(Config { format, out });
    Ok(guard)
}

/// `--access-log`'s value: `stderr` (or empty), `off`, else a file path.
pub fn destination(value: &str) -> Destination {
    match value {
        "stderr" | "" => Destination::Stderr,
        "off" => Destination::Off,
        path => Destination::File(Path::new(path).to_path_buf()),
    }
}

/// What one access-log line says.
pub struct Line<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub status: u16,
    /// The response body's length, when known as the head is answered.
    pub bytes: Option<u64>,
    pub micros: u64,
    pub request_id: &'a str,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
}

thread_local! {
    /// The line being written (reused).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

fn stderr_wanted() -> bool {
    tracing::enabled!(target: "interlock::access", tracing::Level::INFO)
}

/// Whether a line would be written now: the proxy looks up the fields only a line needs
/// (user agent, referer) only then.
pub fn wanted() -> bool {
    match CONFIG.get().map(|c| &c.out) {
        Some(Out::Off) => false,
        Some(Out::File(_)) => true,
        Some(Out::Stderr) | None => stderr_wanted(),
    }
}

/// Writes `line` where the access log goes (INFO, target `interlock::access` on stderr).
pub fn write(line: &Line<'_>) {
    let (format, sink) = match CONFIG.get() {
        Some(Config { out: Out::Off, .. }) => return,
        Some(Config {
            format,
            out: Out::File(sink),
        }) => (*format, sink),
        Some(Config {
            format,
            out: Out::Stderr,
        }) => {
            if !stderr_wanted() {
                return;
            }
            match STDERR.get() {
                Some(sink) => (*format, sink),
                None => return via_tracing(line),
            }
        }
        None => {
            if !stderr_wanted() {
                return;
            }
            match STDERR.get() {
                Some(sink) => (AccessLogFormat::Text, sink),
                None => return via_tracing(line),
            }
        }
    };
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        format_line(format, line, buf);
        // Lossy and bounded (see `log_writer`): a full queue drops the line, never blocks.
        sink.push(buf);
    });
}

/// The whole line, its end included.
fn format_line(format: AccessLogFormat, line: &Line<'_>, buf: &mut Vec<u8>) {
    match format {
        AccessLogFormat::Text => {
            buf.extend_from_slice(&now_rfc3339());
            buf.extend_from_slice(b"  INFO interlock::access: ");
            format_fields(line, buf);
        }
        AccessLogFormat::Json => format_json(line, &now_rfc3339(), buf),
        AccessLogFormat::Combined => format_combined(line, &now_clf(), buf),
    }
    buf.push(b'\n');
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
    buf.extend_from_slice(b" bytes=");
    match line.bytes {
        Some(n) => buf.extend_from_slice(num.format(n).as_bytes()),
        None => buf.push(b'-'),
    }
    buf.extend_from_slice(b" us=");
    buf.extend_from_slice(num.format(line.micros).as_bytes());
    buf.extend_from_slice(b" request_id=");
    value_into(buf, line.request_id);
    if let Some(ua) = line.user_agent {
        buf.extend_from_slice(b" user_agent=");
        value_into(buf, ua);
    }
    if let Some(referer) = line.referer {
        buf.extend_from_slice(b" referer=");
        value_into(buf, referer);
    }
}

/// A plain value as it is, any other quoted and escaped as `Debug` does.
fn value_into(buf: &mut Vec<u8>, value: &str) {
    if is_plain(value) {
        buf.extend_from_slice(value.as_bytes());
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

/// tracing's JSON line: `{"timestamp":..,"level":"INFO","fields":{..},"target":..}`.
fn format_json(line: &Line<'_>, timestamp: &[u8], buf: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"timestamp\":\"");
    buf.extend_from_slice(timestamp);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"client\":");
    json_str(buf, line.client);
    let fields: [(&str, &str); 6] = [
        (",\"method\":", line.method),
        (",\"host\":", line.host),
        (",\"path\":", line.path),
        (",\"protocol\":", line.protocol),
        (",\"route\":", line.route),
        (",\"upstream\":", line.upstream),
    ];
    for (name, value) in fields {
        buf.extend_from_slice(name.as_bytes());
        json_str(buf, value);
    }
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(num.format(line.status).as_bytes());
    buf.extend_from_slice(b",\"bytes\":");
    match line.bytes {
        Some(n) => buf.extend_from_slice(num.format(n).as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"us\":");
    buf.extend_from_slice(num.format(line.micros).as_bytes());
    buf.extend_from_slice(b",\"request_id\":");
    json_str(buf, line.request_id);
    if let Some(ua) = line.user_agent {
        buf.extend_from_slice(b",\"user_agent\":");
        json_str(buf, ua);
    }
    if let Some(referer) = line.referer {
        buf.extend_from_slice(b",\"referer\":");
        json_str(buf, referer);
    }
    buf.extend_from_slice(b"},\"target\":\"interlock::access\"}");
}

/// A JSON string; escaped only when it holds a quote, a backslash or a control character.
fn json_str(buf: &mut Vec<u8>, value: &str) {
    let plain = value
        .bytes()
        .fold(true, |plain, b| plain & (b >= b' ') & (b != b'"') & (b != b'\\'));
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *buf, value);
    }
}

/// `client - - [time] "METHOD path PROTOCOL" status bytes "referer" "user agent"`.
fn format_combined(line: &Line<'_>, time: &[u8], buf: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    clf_into(buf, line.client);
    buf.extend_from_slice(b" - - [");
    buf.extend_from_slice(time);
    buf.extend_from_slice(b"] \"");
    clf_into(buf, line.method);
    buf.push(b' ');
    clf_into(buf, line.path);
    buf.push(b' ');
    clf_into(buf, line.protocol);
    buf.extend_from_slice(b"\" ");
    buf.extend_from_slice(num.format(line.status).as_bytes());
    buf.push(b' ');
    match line.bytes {
        Some(n) => buf.extend_from_slice(num.format(n).as_bytes()),
        None => buf.push(b'-'),
    }
    buf.extend_from_slice(b" \"");
    clf_into(buf, line.referer.unwrap_or("-"));
    buf.extend_from_slice(b"\" \"");
    clf_into(buf, line.user_agent.unwrap_or("-"));
    buf.push(b'"');
}

/// A value of a combined line, escaped as nginx does: `"`, `\` and bytes outside printable
/// ASCII as `\xHH`.
fn clf_into(buf: &mut Vec<u8>, value: &str) {
    let escape = |b: u8| !(b' '..0x7f).contains(&b) || b == b'"' || b == b'\\';
    if !value.bytes().fold(false, |any, b| any | escape(b)) {
        buf.extend_from_slice(value.as_bytes());
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if escape(b) {
            buf.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            buf.push(b);
        }
    }
}

/// Now as the combined format writes it: `07/Dec/2026:16:40:30 +0000`.
fn now_clf() -> [u8; 26] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    clf_time(secs)
}

fn clf_time(secs: u64) -> [u8; 26] {
    // From the RFC 3339 text: `YYYY-MM-DDTHH:MM:SS`.
    let mut rfc = [0u8; 27];
    crate::log_format::rfc3339(secs, 0, &mut rfc);
    const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";
    let month = usize::from((rfc[5] - b'0') * 10 + (rfc[6] - b'0')).clamp(1, 12) - 1;
    let mut out = *b"DD/Mon/YYYY:HH:MM:SS +0000";
    out[0..2].copy_from_slice(&rfc[8..10]);
    out[3..6].copy_from_slice(&MONTHS[month * 3..month * 3 + 3]);
    out[7..11].copy_from_slice(&rfc[0..4]);
    out[12..20].copy_from_slice(&rfc[11..19]);
    out
}

/// `bytes` as the text line writes it.
struct Bytes(Option<u64>);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
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
        bytes = ?Bytes(line.bytes),
        us = line.micros,
        request_id = line.request_id,
        user_agent = line.user_agent,
        referer = line.referer,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line<'static> {
        Line {
            client: "192.0.2.1",
            method: "GET",
            host: "a.example",
            path: "/a b?\"q\"",
            protocol: "HTTP/1.1",
            route: "app",
            upstream: "-",
            status: 200,
            bytes: Some(512),
            micros: 1434,
            request_id: "abc-1",
            user_agent: None,
            referer: None,
        }
    }

    #[test]
    fn fields_read_as_tracing_writes_them() {
        let mut line = line();
        let mut buf = Vec::new();
        format_fields(&line, &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "client=192.0.2.1 method=GET host=a.example path=\"/a b?\\\"q\\\"\" route=app upstream=- \
             status=200 bytes=512 us=1434 request_id=abc-1"
        );
        // The same fields through tracing and the agent's field formatter, with and without
        // the optional ones.
        for (bytes, ua, referer) in [
            (Some(512), None, None),
            (None, Some("curl/8.5 \"x\""), Some("http://r.example/")),
        ] {
            line.bytes = bytes;
            line.user_agent = ua;
            line.referer = referer;
            let through_tracing = crate::log_format::test_support::logged(|| via_tracing(&line));
            let mut buf = Vec::new();
            format_fields(&line, &mut buf);
            assert_eq!(through_tracing, String::from_utf8(buf).unwrap());
        }
        let mut buf = Vec::new();
        format_fields(&line, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.ends_with(
                " bytes=- us=1434 request_id=abc-1 user_agent=\"curl/8.5 \\\"x\\\"\" referer=http://r.example/"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_lines_parse_and_escape_only_what_needs_it() {
        let mut line = line();
        let mut buf = Vec::new();
        format_json(&line, b"2026-12-07T16:40:30.000001Z", &mut buf);
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-12-07T16:40:30.000001Z\",\"level\":\"INFO\",\"fields\":{\"client\":\"192.0.2.1\",\
             \"method\":\"GET\",\"host\":\"a.example\",\"path\":\"/a b?\\\"q\\\"\",\"protocol\":\"HTTP/1.1\",\
             \"route\":\"app\",\"upstream\":\"-\",\"status\":200,\"bytes\":512,\"us\":1434,\"request_id\":\"abc-1\"},\
             \"target\":\"interlock::access\"}"
        );
        line.bytes = None;
        line.user_agent = Some("Mozilla/5.0 \\ \u{1}\n\u{e9}");
        line.referer = Some("http://r.example/?a=\"b\"");
        let mut buf = Vec::new();
        format_json(&line, b"2026-12-07T16:40:30.000001Z", &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("one JSON object");
        let fields = &v["fields"];
        assert_eq!(fields["bytes"], serde_json::Value::Null);
        assert_eq!(fields["user_agent"], "Mozilla/5.0 \\ \u{1}\n\u{e9}");
        assert_eq!(fields["referer"], "http://r.example/?a=\"b\"");
        assert_eq!(fields["path"], "/a b?\"q\"");
        assert_eq!(v["target"], "interlock::access");
        assert!(!buf.contains(&b'\n'), "one line");
    }

    #[test]
    fn combined_lines_are_apaches_with_nginxs_escapes() {
        let mut line = line();
        line.user_agent = Some("curl/8.5");
        let mut buf = Vec::new();
        format_combined(&line, &clf_time(1_796_661_630), &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "192.0.2.1 - - [07/Dec/2026:16:40:30 +0000] \"GET /a b?\\x22q\\x22 HTTP/1.1\" 200 512 \"-\" \"curl/8.5\""
        );
        line.bytes = None;
        line.user_agent = None;
        line.referer = Some("http://r.example/\\\u{7}\u{e9}");
        let mut buf = Vec::new();
        format_combined(&line, &clf_time(0), &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "192.0.2.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /a b?\\x22q\\x22 HTTP/1.1\" 200 - \
             \"http://r.example/\\x5C\\x07\\xC3\\xA9\" \"-\""
        );
    }

    #[test]
    fn every_format_ends_its_line() {
        for format in [AccessLogFormat::Text, AccessLogFormat::Json, AccessLogFormat::Combined] {
            let mut buf = Vec::new();
            format_line(format, &line(), &mut buf);
            assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1, "{format:?}");
            assert!(buf.ends_with(b"\n"));
        }
    }
}
