//! HTTP/1 conformance: tables of raw requests, what the client must be answered and what the
//! backend must have received (byte for byte: request line, Host, which headers, body), run
//! on each server path:
//!
//! - lean: each case on a fresh plain connection (the lean loop serves body-less HTTP/1.1
//!   requests and hands anything else to hyper, `front/h1_server`);
//! - hyper: a warm-up request with a body first on the same connection (the lean loop hands
//!   the connection to hyper for good), then the case;
//! - tls: TLS with ALPN http/1.1 (hyper's server).
//!
//! A row may be marked `.pending(finding)` while a known finding is being fixed: it states
//! the behaviour after the fix, and its result is reported without failing the test (the
//! findings of issue 27 were written that way and are all fixed now). Every other row must pass. `cargo test --test
//! l7_conformance -- --nocapture` prints the pending rows; with `CONFORMANCE_VERBOSE=1`,
//! every row and the status it got. The backend is `common::recording`: `200 ok` to
//! everything, `101` and an echo to a request carrying `Upgrade`.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::recording::{RawClient, RawResponse, Recorded, RecordingBackend, Reply};
use common::tls::{connector, make_cert_for, tls_connect, write_secret};
use common::{snapshot, TestProxy};
use interlock::model::{Backend, HttpRoute, ServiceRef, TlsMode};
use tokio_rustls::TlsConnector;

/// How long a case waits for its answer.
const WAIT: Duration = Duration::from_secs(2);
/// How long after the answer the backends are looked at (a request the proxy forwarded
/// beside its answer, or a pipelined one, has arrived by then).
const SETTLE: Duration = Duration::from_millis(30);

/// What a case must lead to.
#[derive(Debug)]
enum Expect {
    /// Answered with one of these statuses (0: the connection ended without an answer);
    /// no backend received anything.
    Refused(&'static [u16]),
    /// Answered with this status; exactly one request reached a backend, whole, and it
    /// passes the checks (backend a unless `OnB`).
    Served(u16, &'static [Check]),
    /// Either is safe: refused with one of these statuses, or served `200` with the checks.
    Either(&'static [u16], &'static [Check]),
    /// A body that breaks after its head was accepted: an error status or a cut connection,
    /// and no backend ever received a complete request.
    BodyError,
    /// `BodyError`, or served `200` with the checks.
    BodyErrorOr(&'static [Check]),
}

/// What the backend's request (or the client's answer) must show.
#[derive(Debug)]
enum Check {
    /// The request line exactly.
    Line(&'static str),
    /// Header `name` present with exactly these values, in order (names in any case).
    Header(&'static str, &'static [&'static str]),
    Absent(&'static str),
    /// Header `name` lists this token (any case).
    Token(&'static str, &'static str),
    /// Header `name`, if present, does not list this token.
    NoToken(&'static str, &'static str),
    /// The body, with any chunked coding undone.
    Body(&'static [u8]),
    /// Went to backend b (b.example) rather than a.
    OnB,
    /// Exactly one `x-forwarded-proto`, the scheme the client used.
    Proto,
    /// The client's answer has header `name` with exactly these values.
    RespHeader(&'static str, &'static [&'static str]),
    /// The backend got a fresh `x-request-id` (32 hex digits) and the client's answer
    /// carries the same.
    FreshId,
    /// After the `101`, bytes sent come back (the tunnel is up).
    Echo,
    /// The proxy closes the connection after its answer.
    Closed,
}

struct Case {
    name: &'static str,
    bytes: &'static [u8],
    expect: Expect,
    /// The finding whose fix this row waits for.
    pending: Option<&'static str>,
}

const fn case(name: &'static str, bytes: &'static [u8], expect: Expect) -> Case {
    Case {
        name,
        bytes,
        expect,
        pending: None,
    }
}

impl Case {
    #[allow(dead_code)] // no row is pending now
    const fn pending(self, finding: &'static str) -> Case {
        Case {
            pending: Some(finding),
            ..self
        }
    }
}

use Check::*;
use Expect::*;

/// Content-Length with Transfer-Encoding: hyper reads the body as chunked, drops the
/// Content-Length and closes the connection after answering (RFC 9112 6.1 allows exactly
/// that), so `normalize`'s "both" rule never sees one. The request after the
/// chunked body (`GET /smuggled`) must never be served.
const CHUNKED_OVER_LENGTH: &[Check] = &[Absent("content-length"), Body(b""), Closed];

/// Every request the proxy forwards carries these.
const FORWARDED: &[Check] = &[
    Header("x-forwarded-for", &["127.0.0.1"]),
    Proto,
    Header("x-forwarded-host", &["a.example"]),
];

static BASELINE: &[Case] = &[
    case(
        "plain GET",
        b"GET /x?y=1 HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n",
        Served(
            200,
            &[
                Line("GET /x?y=1 HTTP/1.1"),
                Header("host", &["a.example"]),
                Header("accept", &["*/*"]),
                Header("x-forwarded-for", &["127.0.0.1"]),
                Proto,
                Header("x-forwarded-host", &["a.example"]),
                Body(b""),
            ],
        ),
    ),
    case(
        "HEAD",
        b"HEAD /h HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("HEAD /h HTTP/1.1"), Header("host", &["a.example"])]),
    ),
    case(
        "POST with Content-Length",
        b"POST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
        Served(
            200,
            &[
                Line("POST /p HTTP/1.1"),
                Header("host", &["a.example"]),
                Header("content-length", &["5"]),
                Body(b"hello"),
                Header("x-forwarded-for", &["127.0.0.1"]),
                Proto,
            ],
        ),
    ),
    case(
        "POST chunked",
        b"POST /p HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Served(200, &[Line("POST /p HTTP/1.1"), Body(b"hello")]),
    ),
    case(
        "GET with a body",
        b"GET /g HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Line("GET /g HTTP/1.1"), Body(b"hello")]),
    ),
    case(
        "a GET whose body is a request (CL.0)",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 43\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(
            200,
            &[Line("GET / HTTP/1.1"), Header("content-length", &["43"]), Body(b"GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n")],
        ),
    ),
    case(
        "a chunked GET whose body is a request",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n2b\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n\r\n0\r\n\r\n",
        Served(200, &[Line("GET / HTTP/1.1"), Body(b"GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n")]),
    ),
    case(
        "GET with Content-Length: 0",
        b"GET /g HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n",
        Served(200, &[Line("GET /g HTTP/1.1"), Body(b"")]),
    ),
    case(
        "Expect: 100-continue",
        b"POST /p HTTP/1.1\r\nHost: a.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Body(b"hello")]),
    ),
    case(
        "Host with a port",
        b"GET / HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
        Served(200, &[Header("host", &["a.example:80"])]),
    ),
    case(
        "Host in capitals routes",
        b"GET / HTTP/1.1\r\nHost: A.Example\r\n\r\n",
        Served(200, &[Line("GET / HTTP/1.1")]),
    ),
    case(
        "second route",
        b"GET /b HTTP/1.1\r\nHost: b.example\r\n\r\n",
        Served(200, &[OnB, Header("host", &["b.example"])]),
    ),
    case(
        "unknown host",
        b"GET / HTTP/1.1\r\nHost: c.example\r\n\r\n",
        Refused(&[404]),
    ),
];

static FRAMING: &[Case] = &[
    case(
        "CL and TE",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Either(&[400], CHUNKED_OVER_LENGTH),
   ),
    case(
        "TE and CL",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Either(&[400], CHUNKED_OVER_LENGTH),
   ),
    case(
        "CL and TE on a GET",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Either(&[400], &[Absent("content-length"), Body(b""), Closed]),
   ),
    case(
        "two equal Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        Either(&[400], &[Header("content-length", &["5"]), Body(b"hello")]),
   ),
    case(
        "two different Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
   ),
    case(
        "Content-Length: 5, 5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5, 5\r\n\r\nhello",
        Either(&[400], &[Header("content-length", &["5"]), Body(b"hello")]),
   ),
    case(
        "Content-Length: 5, 6",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5, 6\r\n\r\nhello!GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
   ),
    case(
        "Content-Length: +5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +5\r\n\r\nhello",
        Refused(&[400]),
   ),
    case(
        "Content-Length: -5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: -5\r\n\r\nhello",
        Refused(&[400]),
   ),
    case(
        "Content-Length: 0x5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0x5\r\n\r\nhello",
        Refused(&[400]),
   ),
    case(
        "Content-Length: 5 5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5 5\r\n\r\nhello",
        Refused(&[400]),
   ),
    case(
        "Content-Length with spaces around",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length:   5  \r\n\r\nhello",
        Served(200, &[Header("content-length", &["5"]), Body(b"hello")]),
   ),
    case(
        "Content-Length beyond u64",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
        Refused(&[400, 413]),
   ),
    case(
        "Transfer-Encoding: chunked, identity",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 501]),
   ),
    case(
        "Transfer-Encoding: identity",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Refused(&[400, 501]),
   ),
    case(
        "Transfer-Encoding: xchunked",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 501]),
   ),
    case(
        "Transfer-Encoding: chunkedx",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunkedx\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Refused(&[400, 501]),
   ),
    case(
        "Transfer-Encoding:  chunked (leading space)",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400], &[Body(b"hello")]),
   ),
    case(
        "Transfer-Encoding: chunked<TAB>",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400], &[Body(b"hello")]),
   ),
    case(
        "Transfer-Encoding: Chunked (case)",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400], &[Body(b"hello")]),
   ),
    case(
        "Transfer-Encoding: <VT>chunked",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 501]),
   ),
    case(
        "Transfer-Encoding : chunked (space before colon)",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
   ),
    case(
        "two Transfer-Encoding: chunked",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400, 501], &[Body(b"hello")]),
   ),
    case(
        "Transfer-Encoding: identity then chunked headers",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400, 501], &[Body(b"hello")]),
   ),
    case(
        "Transfer-Encoding: gzip, chunked (a coding the proxy does not undo)",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Refused(&[501]),
    ),
    case(
        "Transfer-Encoding on HTTP/1.0",
        b"POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Either(&[400], &[Body(b"hello")]),
   ),
    case(
        "chunk size 0x5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        BodyError,
   ),
    case(
        "chunk extension",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
        Served(200, &[Body(b"hello")]),
   ),
    case(
        "chunk size beyond u64",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        BodyError,
   ),
    case(
        "chunk size -5",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        BodyError,
   ),
    case(
        "chunk data without its CRLF",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        BodyError,
   ),
    case(
        "chunk longer than its size",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        BodyError,
   ),
    case(
        "chunks with bare LF",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
        BodyErrorOr(&[Body(b"hello")]),
   ),
    case(
        "chunked with trailers",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        Served(200, &[Body(b"hello")]),
   ),
];

static SYNTAX: &[Case] = &[
    case(
        "obs-fold (space)",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\n folded\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "obs-fold (tab)",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\n\tfolded\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "obs-fold of Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a line starting with a space after the request line",
        b"GET / HTTP/1.1\r\n Host: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "bare LF line ends",
        b"GET /lf HTTP/1.1\nHost: a.example\nX-A: 1\n\n",
        Either(
            &[400],
            &[
                Line("GET /lf HTTP/1.1"),
                Header("host", &["a.example"]),
                Header("x-a", &["1"]),
            ],
        ),
    ),
    case(
        "NUL in a value",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: a\x00b\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "CR in a value",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: a\rb\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "CR in the Host value",
        b"GET / HTTP/1.1\r\nHost: a.example\rX-Injected: 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "space before the colon",
        b"GET / HTTP/1.1\r\nHost : a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "space before the colon of another header",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A : 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a name with a space",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX A: 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a name with parentheses",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX(A): 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a name with DEL",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A\x7f: 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "an empty name",
        b"GET / HTTP/1.1\r\nHost: a.example\r\n: 1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a line without a colon",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "two spaces in the request line",
        b"GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a tab in the request line",
        b"GET\t/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a lowercase method is another method",
        b"get /m HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Either(&[400, 405, 501], &[Line("get /m HTTP/1.1")]),
    ),
    case("no version", b"GET /\r\nHost: a.example\r\n\r\n", Refused(&[400, 0])),
    case(
        "HTTP/2.0 in HTTP/1 text",
        b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 505]),
    ),
    case(
        "HTTP/1.2",
        b"GET / HTTP/1.2\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 505]),
    ),
    case(
        "lowercase http/1.1",
        b"GET / http/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400, 505]),
    ),
    case(
        "a space after the version",
        b"GET / HTTP/1.1 \r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a control byte in the target",
        b"GET /\x01 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
];

static TARGETS: &[Case] = &[
    case(
        "absolute-form, same Host",
        b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /x?q=1 HTTP/1.1"), Header("host", &["a.example"])]),
    ),
    case(
        "absolute-form, Host of another route",
        b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
        Served(
            200,
            &[
                Line("GET /x HTTP/1.1"),
                Header("host", &["a.example"]),
                Header("x-forwarded-host", &["a.example"]),
            ],
        ),
    ),
    case(
        "absolute-form, junk Host",
        b"GET http://a.example/x HTTP/1.1\r\nHost: x\"><script>\r\n\r\n",
        Served(200, &[Line("GET /x HTTP/1.1"), Header("host", &["a.example"])]),
    ),
    case(
        "absolute-form without Host (RFC 9112 3.2: 400)",
        b"GET http://a.example/x HTTP/1.1\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "absolute-form with userinfo",
        b"GET http://user@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "authority-form GET",
        b"GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "CONNECT",
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        Refused(&[405]),
    ),
    case(
        "OPTIONS *",
        b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Either(
            &[400, 501],
            &[Line("OPTIONS * HTTP/1.1"), Header("host", &["a.example"])],
        ),
    ),
    case("GET *", b"GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", Refused(&[400])),
];

static HOSTS: &[Case] = &[
    case("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", Refused(&[400])),
    case("no Host on HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", Refused(&[400, 404])),
    case(
        "two equal Hosts",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "two different Hosts",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "Host: a.example, b.example",
        b"GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "junk Host",
        b"GET / HTTP/1.1\r\nHost: x\"><script>\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a non-numeric port",
        b"GET / HTTP/1.1\r\nHost: a.example:evil\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a port beyond 65535",
        b"GET / HTTP/1.1\r\nHost: a.example:99999\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "Host without a space",
        b"GET / HTTP/1.1\r\nHost:a.example\r\n\r\n",
        Served(200, &[Header("host", &["a.example"])]),
    ),
    case("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", Refused(&[400])),
    case(
        "userinfo in Host",
        b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a path in Host",
        b"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "Host with trailing whitespace",
        b"GET / HTTP/1.1\r\nHost: a.example \r\n\r\n",
        Either(&[400], &[Header("host", &["a.example"])]),
    ),
];

static HOP_BY_HOP: &[Case] = &[
    case(
        "Connection: x-secret",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: x-secret\r\nX-Secret: 1\r\nX-Kept: 1\r\n\r\n",
        Served(200, &[Absent("x-secret"), Header("x-kept", &["1"]), NoToken("connection", "x-secret")]),
   ),
    case(
        "Connection: keep-alive, x-a, X-B",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, x-a, X-B\r\nX-A: 1\r\nx-b: 2\r\n\r\n",
        Served(200, &[Absent("x-a"), Absent("x-b")]),
   ),
    case(
        "Connection: x-secret on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Absent("x-secret"), Body(b"hello")]),
   ),
    case(
        "Connection: host",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: host\r\n\r\n",
        Served(200, &[Header("host", &["a.example"])]),
    ),
    case(
        "Connection: host on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nConnection: host\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Header("host", &["a.example"]), Body(b"hello")]),
    ),
    case(
        "Connection: content-length",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Header("content-length", &["5"]), Body(b"hello")]),
    ),
    case(
        "Connection: x-forwarded-for",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        Served(200, FORWARDED),
   ),
    case(
        "Connection: x-forwarded-for on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nConnection: x-forwarded-for, x-forwarded-host\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, FORWARDED),
   ),
    case(
        "Connection: x-request-id",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: x-request-id\r\nX-Request-Id: abc-123\r\n\r\n",
        Served(200, &[Header("x-request-id", &["abc-123"]), RespHeader("x-request-id", &["abc-123"])]),
    ),
    case(
        "Keep-Alive",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
        Served(200, &[Absent("keep-alive")]),
   ),
    case(
        "Keep-Alive without Connection",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nKeep-Alive: timeout=5\r\n\r\n",
        Served(200, &[Absent("keep-alive")]),
   ),
    case(
        "Proxy-Connection",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nProxy-Connection: keep-alive\r\n\r\n",
        Served(200, &[Absent("proxy-connection")]),
   ),
    case(
        "Proxy-Authorization",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic YTpi\r\n\r\n",
        Served(200, &[Absent("proxy-authorization")]),
   ),
    case(
        "TE: trailers",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nTE: trailers\r\n\r\n",
        Served(200, &[Absent("te")]),
   ),
    case(
        "Trailer",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nTrailer: X-T\r\n\r\n",
        Served(200, &[Absent("trailer")]),
   ),
    case(
        "Upgrade without Connection: upgrade",
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n",
        Served(200, &[Absent("upgrade")]),
   ),
];

/// A websocket handshake's other headers.
macro_rules! ws {
    ($line:literal, $host:literal) => {
        concat!(
            $line,
            "\r\nHost: ",
            $host,
            "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes()
    };
}

/// Not an upgrade: no Upgrade, no `upgrade` Connection token, no HTTP2-Settings.
const NOT_UPGRADED: &[Check] = &[
    Absent("upgrade"),
    NoToken("connection", "upgrade"),
    Absent("http2-settings"),
];

static UPGRADES: &[Case] = &[
    case(
        "websocket on an endpoint",
        ws!("GET /ws HTTP/1.1", "a.example"),
        Served(
            101,
            &[
                Line("GET /ws HTTP/1.1"),
                Header("upgrade", &["websocket"]),
                Token("connection", "upgrade"),
                Header("sec-websocket-key", &["dGhlIHNhbXBsZSBub25jZQ=="]),
                Echo,
            ],
       ),
   ),
    case(
        "websocket under an endpoint",
        ws!("GET /ws/chat HTTP/1.1", "a.example"),
        Served(101, &[Line("GET /ws/chat HTTP/1.1"), Echo]),
   ),
    case(
        "Upgrade: WebSocket (tokens are case-insensitive)",
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        Served(101, &[Line("GET /ws HTTP/1.1"), Echo]),
   ),
    case(
        "websocket off the endpoints",
        ws!("GET /other HTTP/1.1", "a.example"),
        Refused(&[400]),
   ),
    // Routes without websocket_endpoints let every path upgrade (README; the compatible
    // choice of the plan): only websocket, though (finding 3).
    case(
        "websocket on a route without endpoints",
        ws!("GET /any HTTP/1.1", "b.example"),
        Served(101, &[OnB, Header("upgrade", &["websocket"]), Echo]),
   ),
    case(
        "h2c on an endpoint",
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        Served(200, NOT_UPGRADED),
    ),
    case(
        "h2c on a route without endpoints",
        b"GET /secret HTTP/1.1\r\nHost: b.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        Served(200, &[OnB, Absent("upgrade"), NoToken("connection", "upgrade"), Absent("http2-settings")]),
    ),
    case(
        "an unknown token x-raw-tcp",
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: x-raw-tcp\r\n\r\n",
        Served(200, NOT_UPGRADED),
    ),
    case(
        "websocket, h2c",
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        Served(200, NOT_UPGRADED),
    ),
    case(
        "websocket on HTTP/1.0",
        ws!("GET /ws HTTP/1.0", "a.example"),
        Served(200, NOT_UPGRADED),
    ),
    case(
        "websocket on a POST",
        b"POST /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Absent("upgrade"), NoToken("connection", "upgrade"), Body(b"hello")]),
    ),
    case(
        "websocket via /ws/../other",
        ws!("GET /ws/../other HTTP/1.1", "a.example"),
        Refused(&[400]),
    ),
    case(
        "websocket via /ws/%2e%2e/other",
        ws!("GET /ws/%2e%2e/other HTTP/1.1", "a.example"),
        Refused(&[400]),
    ),
    case(
        "websocket via /ws/%2E%2E/other",
        ws!("GET /ws/%2E%2E/other HTTP/1.1", "a.example"),
        Refused(&[400]),
    ),
];

static PATHS: &[Case] = &[
    case(
        "/ws/../other",
        b"GET /ws/../other HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /other HTTP/1.1")]),
    ),
    case(
        "/ws/%2e%2e/other",
        b"GET /ws/%2e%2e/other HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /other HTTP/1.1")]),
    ),
    case(
        "/a/./b//c",
        b"GET /a/./b//c HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /a/b/c HTTP/1.1")]),
    ),
    case(
        "/../x above the root",
        b"GET /../x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /x HTTP/1.1")]),
    ),
    case(
        "dot segments in the query stay",
        b"GET /a/../b?x=/../y HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /b?x=/../y HTTP/1.1")]),
    ),
    case(
        "a POST to /ws/../other",
        b"POST /ws/../other HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Line("POST /other HTTP/1.1"), Body(b"hello")]),
    ),
    case(
        "%2F",
        b"GET /a%2Fb HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "%5C",
        b"GET /a%5Cb HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "%00",
        b"GET /a%00b HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a raw backslash",
        b"GET /a\\b HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Refused(&[400]),
    ),
    case(
        "a clean path is left as it is",
        b"GET /a/b.c/d-e_f~g?x=%2e%2e HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[Line("GET /a/b.c/d-e_f~g?x=%2e%2e HTTP/1.1")]),
    ),
];

static PROXY_SET: &[Case] = &[
    case(
        "the client's X-Forwarded-* are replaced",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: evil.example\r\n\r\n",
        Served(200, FORWARDED),
   ),
    case(
        "the client's X-Forwarded-* are replaced on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: evil.example\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, FORWARDED),
   ),
    case(
        "two client X-Forwarded-For",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\n\r\n",
        Served(200, FORWARDED),
   ),
    case(
        "a valid x-request-id passes",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abc-123\r\n\r\n",
        Served(200, &[Header("x-request-id", &["abc-123"]), RespHeader("x-request-id", &["abc-123"])]),
    ),
    case(
        "a valid x-request-id passes on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abc-123\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Header("x-request-id", &["abc-123"]), RespHeader("x-request-id", &["abc-123"])]),
    ),
    case(
        "an invalid x-request-id is replaced",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: bad id\r\n\r\n",
        Served(200, &[FreshId]),
    ),
    case(
        "an x-request-id over 128 characters is replaced",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        Served(200, &[FreshId]),
    ),
    case(
        "no x-request-id: a fresh one",
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Served(200, &[FreshId]),
    ),
    case(
        "no x-request-id on a POST: a fresh one",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[FreshId]),
    ),
    case(
        "the client's Forwarded is dropped",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nForwarded: for=6.6.6.6;host=evil.example\r\n\r\n",
        Served(200, &[Absent("forwarded")]),
    ),
    case(
        "the client's X-Real-IP is replaced",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
        Served(200, &[Header("x-real-ip", &["127.0.0.1"])]),
    ),
    case(
        "the client's X-Real-IP and Forwarded on a POST",
        b"POST / HTTP/1.1\r\nHost: a.example\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nContent-Length: 5\r\n\r\nhello",
        Served(200, &[Header("x-real-ip", &["127.0.0.1"]), Absent("forwarded")]),
    ),
];

static GROUPS: &[(&str, &[Case])] = &[
    ("baseline", BASELINE),
    ("framing", FRAMING),
    ("syntax", SYNTAX),
    ("targets", TARGETS),
    ("hosts", HOSTS),
    ("hop-by-hop", HOP_BY_HOP),
    ("upgrades", UPGRADES),
    ("paths", PATHS),
    ("proxy-set", PROXY_SET),
];

/// Which server path a case takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Lean,
    Hyper,
    Tls,
}

impl Via {
    fn scheme(self) -> &'static str {
        match self {
            Via::Tls => "https",
            _ => "http",
        }
    }
}

/// The first request on a connection for the hyper path: it has a body, so the lean loop
/// hands the connection to hyper, which serves the rest of it.
const WARM_UP: &[u8] = b"POST /warm-up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\n\r\nx";

/// The proxy with two routes: a.example (websocket endpoint /ws) to backend a, b.example
/// (no endpoints) to backend b; both also over TLS.
struct Env {
    proxy: TestProxy,
    a: RecordingBackend,
    b: RecordingBackend,
    tls: TlsConnector,
    _dir: tempfile::TempDir,
}

fn route(name: &str, host: &str, backend: SocketAddr) -> HttpRoute {
    HttpRoute::plain(
        ServiceRef {
            id: name.into(),
            name: name.into(),
        },
        vec![host.into()],
        "/",
        vec![Backend {
            addr: backend,
            weight: 1,
            id: name.into(),
        }],
    )
}

impl Env {
    async fn start(reply: Reply) -> Env {
        let (a, b) = (
            RecordingBackend::start(reply.clone()).await,
            RecordingBackend::start(reply).await,
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = make_cert_for(&["a.example", "b.example"]);
        let (crt, key) = write_secret(dir.path(), "ab", &cert);
        let mut ra = route("a", "a.example", a.addr);
        ra.websocket_endpoints = vec!["/ws".into()];
        let mut rb = route("b", "b.example", b.addr);
        for r in [&mut ra, &mut rb] {
            r.tls = TlsMode::Terminate {
                cert: crt.clone(),
                key: key.clone(),
            };
        }
        let proxy = TestProxy::start(&snapshot(1, vec![ra, rb])).await;
        let tls = connector(&[&cert], &[b"http/1.1"]);
        Env {
            proxy,
            a,
            b,
            tls,
            _dir: dir,
        }
    }

    /// A connection on path `via`, warmed up for hyper when it needs to be.
    async fn connect(&self, via: Via) -> Result<RawClient, String> {
        let mut client = match via {
            Via::Lean | Via::Hyper => RawClient::connect(self.proxy.http).await,
            Via::Tls => {
                let stream = tls_connect(self.proxy.https, "a.example", &self.tls)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                if stream.get_ref().1.alpn_protocol() != Some(b"http/1.1") {
                    return Err("ALPN did not settle on http/1.1".into());
                }
                RawClient::new(stream)
            }
        };
        if via == Via::Hyper {
            client.send(WARM_UP).await;
            match client.response(false, WAIT).await {
                Some(r) if r.status == 200 => {}
                other => return Err(format!("warm-up answered {:?}", other.map(|r| r.status_line))),
            }
        }
        self.clear();
        Ok(client)
    }

    fn clear(&self) {
        self.a.clear();
        self.b.clear();
    }

    /// What the backends received, and which one (`'a'`, `'b'`).
    fn seen(&self) -> Vec<(char, Recorded)> {
        let a = self.a.requests().into_iter().map(|r| ('a', r));
        a.chain(self.b.requests().into_iter().map(|r| ('b', r))).collect()
    }
}

fn show(r: &Recorded) -> String {
    format!(
        "{:?} + body {:?}{}",
        String::from_utf8_lossy(&r.head),
        String::from_utf8_lossy(&r.raw_body),
        if r.complete { "" } else { " (incomplete)" }
    )
}

fn show_all(seen: &[(char, Recorded)]) -> String {
    seen.iter()
        .map(|(b, r)| format!("{b}: {}", show(r)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs one case on a fresh connection: the status answered (0: none), and `Err` saying
/// what went wrong.
async fn run_case(env: &Env, via: Via, case: &Case) -> (u16, Result<(), String>) {
    let mut status = 0;
    let result = check_case(env, via, case, &mut status).await;
    (status, result)
}

async fn check_case(env: &Env, via: Via, case: &Case, answered_status: &mut u16) -> Result<(), String> {
    let mut client = env.connect(via).await?;
    client.send(case.bytes).await;
    let head_request = case.bytes.starts_with(b"HEAD ");
    let resp = client.response(head_request, WAIT).await;
    let status = resp.as_ref().map_or(0, |r| r.status);
    *answered_status = status;
    let mut echoed = None;
    if status == 101 {
        client.send(b"ping").await;
        echoed = Some(client.read_some(4, WAIT).await);
    }
    let wants_close = match &case.expect {
        Served(_, checks) | Either(_, checks) | BodyErrorOr(checks) => checks.iter().any(|c| matches!(c, Closed)),
        _ => false,
    };
    let closed = if wants_close && status == 200 {
        Some(client.closed(WAIT).await)
    } else {
        None
    };
    tokio::time::sleep(SETTLE).await;
    let seen = env.seen();
    let answered = match &resp {
        Some(r) => format!("{:?}", r.status_line),
        None => "no answer".into(),
    };
    let refused = |statuses: &[u16], whole_only: bool| -> Result<(), String> {
        if !statuses.contains(&status) {
            return Err(format!("expected {statuses:?}, got {answered}"));
        }
        let reached: Vec<_> = seen
            .iter()
            .filter(|(_, r)| !whole_only || r.complete)
            .cloned()
            .collect();
        if !reached.is_empty() {
            return Err(format!("{answered}, but the backend received {}", show_all(&reached)));
        }
        Ok(())
    };
    let served = |want: u16, checks: &[Check]| -> Result<(), String> {
        if status != want {
            return Err(format!(
                "expected {want}, got {answered}; the backend received [{}]",
                show_all(&seen)
            ));
        }
        let [(backend, request)] = &seen[..] else {
            return Err(format!(
                "{answered}; expected one request at a backend, got [{}]",
                show_all(&seen)
            ));
        };
        if !request.complete {
            return Err(format!(
                "{answered}; the backend's request is incomplete: {}",
                show(request)
            ));
        }
        let want_b = checks.iter().any(|c| matches!(c, OnB));
        if (*backend == 'b') != want_b {
            return Err(format!("went to backend {backend}: {}", show(request)));
        }
        for check in checks {
            verify(check, request, resp.as_ref(), via, echoed.as_deref(), closed)
                .map_err(|e| format!("{e}; the backend received {}", show(request)))?;
        }
        Ok(())
    };
    let body_error = || -> Result<(), String> {
        if (200..400).contains(&status) {
            return Err(format!("expected an error or a cut, got {answered}"));
        }
        refused(&[status], true)
    };
    match &case.expect {
        Refused(statuses) => refused(statuses, false),
        Served(want, checks) => served(*want, checks),
        Either(statuses, checks) => {
            if statuses.contains(&status) {
                refused(statuses, false)
            } else {
                served(200, checks)
            }
        }
        BodyError => body_error(),
        BodyErrorOr(checks) => {
            if status == 200 {
                served(200, checks)
            } else {
                body_error()
            }
        }
    }
}

fn verify(
    check: &Check,
    request: &Recorded,
    resp: Option<&RawResponse>,
    via: Via,
    echoed: Option<&[u8]>,
    closed: Option<bool>,
) -> Result<(), String> {
    let tokens = |name: &str| -> Vec<String> {
        request
            .headers(name)
            .iter()
            .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect()
    };
    match check {
        Line(line) => {
            if request.request_line() != *line {
                return Err(format!("request line {:?}, not {line:?}", request.request_line()));
            }
        }
        Header(name, values) => {
            let got = request.headers(name);
            if got != *values {
                return Err(format!("{name}: {got:?}, not {values:?}"));
            }
        }
        Absent(name) => {
            let got = request.headers(name);
            if !got.is_empty() {
                return Err(format!("{name} should be gone: {got:?}"));
            }
        }
        Token(name, token) => {
            if !tokens(name).iter().any(|t| t == token) {
                return Err(format!("{name} should list {token}: {:?}", request.headers(name)));
            }
        }
        NoToken(name, token) => {
            if tokens(name).iter().any(|t| t == token) {
                return Err(format!("{name} should not list {token}: {:?}", request.headers(name)));
            }
        }
        Body(body) => {
            if request.body() != *body {
                return Err(format!(
                    "body {:?}, not {:?}",
                    String::from_utf8_lossy(&request.body()),
                    String::from_utf8_lossy(body)
                ));
            }
        }
        OnB => {}
        Proto => {
            let got = request.headers("x-forwarded-proto");
            if got != [via.scheme()] {
                return Err(format!("x-forwarded-proto: {got:?}, not [{:?}]", via.scheme()));
            }
        }
        RespHeader(name, values) => {
            let got = resp.map(|r| r.headers(name)).unwrap_or_default();
            if got != *values {
                return Err(format!("the client got {name}: {got:?}, not {values:?}"));
            }
        }
        FreshId => {
            let got = request.headers("x-request-id");
            let answered = resp.map(|r| r.headers("x-request-id")).unwrap_or_default();
            let fresh = |v: &String| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit());
            if got.len() != 1 || !fresh(&got[0]) || answered != got {
                return Err(format!(
                    "x-request-id: the backend got {got:?}, the client {answered:?}; want one fresh id, the same"
                ));
            }
        }
        Closed => {
            if closed != Some(true) {
                return Err("the connection stayed open after the answer (or sent more)".into());
            }
        }
        Echo => {
            if echoed != Some(b"ping") {
                return Err(format!(
                    "the tunnel echoed {:?}, not \"ping\"",
                    echoed.map(String::from_utf8_lossy)
                ));
            }
        }
    }
    Ok(())
}

/// Runs every group on `via`; fails on a non-pending case that fails, reports the pending.
async fn conformance(via: Via) {
    let env = Env::start(Reply::default()).await;
    let (mut failed, mut report) = (Vec::new(), Vec::new());
    let (mut passed, mut pending_pass, mut pending_fail) = (0, 0, 0);
    // Every case's outcome, pending or not.
    let verbose = std::env::var_os("CONFORMANCE_VERBOSE").is_some();
    for (group, cases) in GROUPS {
        for case in *cases {
            let (status, result) = run_case(&env, via, case).await;
            let label = format!("[{via:?}] {group}: {}", case.name);
            if verbose {
                let state = match (case.pending, &result) {
                    (None, Ok(())) => "ok",
                    (None, Err(_)) => "FAIL",
                    (Some(_), Ok(())) => "pending, passes",
                    (Some(_), Err(_)) => "pending, fails",
                };
                println!("{state} ({status}) {label}");
            }
            match (case.pending, result) {
                (None, Ok(())) => passed += 1,
                (None, Err(e)) => failed.push(format!("FAIL {label}: {e}")),
                (Some(finding), Ok(())) => {
                    pending_pass += 1;
                    report.push(format!("PENDING, passes ({finding}) {label}"));
                }
                (Some(finding), Err(e)) => {
                    pending_fail += 1;
                    report.push(format!("PENDING, fails ({finding}) {label}: {e}"));
                }
            }
        }
    }
    for line in &report {
        println!("{line}");
    }
    for line in &failed {
        println!("{line}");
    }
    println!(
        "[{via:?}] {passed} passed, {} failed, pending: {pending_pass} pass, {pending_fail} fail",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} conformance cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test]
async fn conformance_on_the_lean_path() {
    conformance(Via::Lean).await;
}

#[tokio::test]
async fn conformance_on_the_hyper_path() {
    conformance(Via::Hyper).await;
}

#[tokio::test]
async fn conformance_over_tls() {
    conformance(Via::Tls).await;
}

/// The paths are the ones named: the lean server writes a backend's header lines as they
/// came (`X-Recorded`), hyper's server writes its map's names in lower case.
#[tokio::test]
async fn each_path_is_the_server_it_names() {
    let env = Env::start(Reply::default()).await;
    for (via, name) in [
        (Via::Lean, "X-Recorded"),
        (Via::Hyper, "x-recorded"),
        (Via::Tls, "x-recorded"),
    ] {
        let mut client = env.connect(via).await.unwrap();
        client.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
        let resp = client.response(false, WAIT).await.expect("an answer");
        assert_eq!(resp.status, 200, "{via:?}");
        assert!(
            resp.headers.iter().any(|(n, _)| n == name),
            "{via:?}: {:?}",
            resp.headers
        );
    }
}

/// Requests sent together are answered in order, each reaching the backend once, on both
/// plain paths (the lean loop keeps what it read past a head; a body-less request after
/// one with a body is hyper's).
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let env = Env::start(Reply::default()).await;
    let bytes: &[u8] = b"GET /one HTTP/1.1\r\nHost: a.example\r\n\r\nPOST /two HTTP/1.1\r\nHost: a.example\r\n\
        Content-Length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nHost: a.example\r\n\r\n";
    for via in [Via::Lean, Via::Hyper, Via::Tls] {
        let mut client = env.connect(via).await.unwrap();
        client.send(bytes).await;
        for n in 0..3 {
            let resp = client.response(false, WAIT).await;
            assert_eq!(resp.map(|r| r.status), Some(200), "{via:?}: answer {n}");
        }
        let lines: Vec<_> = env.a.requests().iter().map(Recorded::request_line).collect();
        assert_eq!(
            lines,
            ["GET /one HTTP/1.1", "POST /two HTTP/1.1", "GET /three HTTP/1.1"],
            "{via:?}"
        );
        assert_eq!(env.a.requests()[1].body(), b"hello", "{via:?}");
    }
}

/// Finding 5: the headers the proxy sets on its answers (`x-request-id`, `x-proxy-id`,
/// `x-upstream-addr`, `x-upstream-response-time`) reach the client once, with the proxy's
/// value, when the backend sends its own; the same on every path and upstream client. For
/// `x-request-id` the proxy's id wins: the client's own when valid, else a fresh one.
#[tokio::test]
async fn the_proxys_response_headers_replace_the_backends() {
    let reply = Reply::default()
        .with_header("X-Request-Id: backend")
        .with_header("x-proxy-id: backend")
        .with_header("X-Upstream-Addr: backend")
        .with_header("X-Upstream-Response-Time: 99.999");
    let env = Env::start(reply).await;
    let requests: [(&str, &[u8]); 3] = [
        ("GET", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        (
            "GET with an id",
            b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abc-123\r\n\r\n",
        ),
        (
            "POST",
            b"POST / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abc-123\r\nContent-Length: 1\r\n\r\nx",
        ),
    ];
    let mut wrong = Vec::new();
    for via in [Via::Lean, Via::Hyper, Via::Tls] {
        for (what, bytes) in requests {
            let mut client = env.connect(via).await.unwrap();
            client.send(bytes).await;
            let resp = client.response(false, WAIT).await.expect("an answer");
            assert_eq!(resp.status, 200, "{via:?} {what}");
            let one = |name: &str| -> Option<String> {
                match &resp.headers(name)[..] {
                    [v] => Some(v.clone()),
                    _ => None,
                }
            };
            let id = one("x-request-id");
            let id_ok = if bytes.windows(7).any(|w| w == b"abc-123") {
                id.as_deref() == Some("abc-123")
            } else {
                id.as_ref()
                    .is_some_and(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            let addr = env.a.addr.to_string();
            let time_ok = one("x-upstream-response-time").is_some_and(|t| t != "99.999");
            if !id_ok
                || one("x-proxy-id").as_deref() != Some("test-proxy")
                || one("x-upstream-addr").as_deref() != Some(addr.as_str())
                || !time_ok
            {
                wrong.push(format!("{via:?} {what}: {:?}", resp.headers));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the backend's own values reached the client:\n{}",
        wrong.join("\n")
    );
}

/// A backend's hop-by-hop response headers, and those its Connection header names, stay
/// behind on every path and upstream client; its other headers reach the client once.
#[tokio::test]
async fn a_backends_hop_by_hop_response_headers_stay_behind() {
    let reply = Reply::default()
        .with_header("Connection: keep-alive, X-Backend-Secret")
        .with_header("X-Backend-Secret: 1")
        .with_header("Keep-Alive: timeout=5")
        .with_header("Proxy-Connection: keep-alive")
        .with_header("Upgrade: h2c")
        .with_header("X-Kept: yes");
    let env = Env::start(reply).await;
    let requests: [(&str, &[u8]); 2] = [
        ("GET", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        (
            "POST",
            b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\n\r\nx",
        ),
    ];
    let mut wrong = Vec::new();
    for via in [Via::Lean, Via::Hyper, Via::Tls] {
        for (what, bytes) in requests {
            let mut client = env.connect(via).await.unwrap();
            client.send(bytes).await;
            let resp = client.response(false, WAIT).await.expect("an answer");
            assert_eq!(resp.status, 200, "{via:?} {what}");
            let leaked = ["x-backend-secret", "keep-alive", "proxy-connection", "upgrade"]
                .iter()
                .any(|name| !resp.headers(name).is_empty());
            let connection_ok = resp
                .headers("connection")
                .iter()
                .all(|v| v.eq_ignore_ascii_case("close"));
            if leaked || !connection_ok || resp.headers("x-kept") != ["yes"] || resp.body != b"ok" {
                wrong.push(format!("{via:?} {what}: {:?}", resp.headers));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "hop-by-hop headers reached the client:\n{}",
        wrong.join("\n")
    );
}
