//! The client-facing side: where listening sockets come from (`listeners`, `handover`),
//! accepting and serving connections (`server`, the lean HTTP/1.1 loop `h1_server`, which
//! HTTP a connection speaks: `protocol`, request bodies' read timeout and size limit:
//! `body_timeout`, `body_limit`), closing them without a reset (`linger`), the HTTPS front
//! (`tls`, `sni`, `rewind`), and the balancers in front whose word about the client is
//! taken (`trust`, `proxy_protocol`).
pub mod body_limit;
pub mod body_timeout;
pub mod h1_server;
pub mod handover;
pub mod linger;
pub mod listeners;
pub mod protocol;
pub mod proxy_protocol;
pub mod rewind;
pub mod server;
pub mod sni;
pub mod tls;
pub mod trust;
