//! The size limits on HTTP heads, defined once for both directions and both stacks (hyper's
//! server, the lean server and client), and the bounds put on client connections.
use std::sync::Arc;
use std::time::Duration;

use super::front::trust::TrustedProxies;

use crate::config::defaults;

/// Largest head in bytes: a client's request head (HTTP/1; HTTP/2 header lists are bounded
/// the same), a backend's response head, and the trailers of a chunked response body.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header lines in a head, requests and responses alike. It is hyper's own default:
/// while it is the limit in force hyper's server keeps its header arrays on the stack.
pub const MAX_HEADERS: usize = 100;

/// Resource bounds for client connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// A client must send a request's head within this time (slowloris).
    pub header_read_timeout: Duration,
    /// A client sending a request body may pause this long between two reads of it (not
    /// the time for the whole body), while the proxy is asking for more.
    pub client_body_timeout: Duration,
    /// Largest request head (HTTP/1) in bytes; HTTP/2 header lists are bounded the same.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// On shutdown, open connections get this long to finish.
    pub drain_grace: Duration,
    /// Peers whose PROXY header and X-Forwarded-* are taken (not a bound, but the other
    /// thing every client connection is accepted with).
    pub trusted_proxies: Arc<TrustedProxies>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: defaults::MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(defaults::HEADER_READ_TIMEOUT_S),
            client_body_timeout: Duration::from_secs(defaults::CLIENT_BODY_TIMEOUT_S),
            max_header_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
            drain_grace: Duration::from_secs(defaults::DRAIN_GRACE_S),
            trusted_proxies: Arc::default(),
        }
    }
}
