//! The Interlock agent as a library: the `interlock` binary (src/main.rs and its
//! `commands/`, one module per subcommand, which parse arguments and call `planes`) is a
//! thin CLI over these modules, and the end-to-end tests (tests/) use them directly.
//!
//! - `config`: every setting of every command: flags, `INTERLOCK_*` variables, the TOML
//!   file and the defaults, resolved into one plain config per plane.
//! - `planes`: the wiring: each plane started from its config; `interlock run`'s agent.
//! - `bpf`: the embedded kernel object, loading it, attaching XDP, reading counters.
//! - `docker`: every call to the engine (services, tasks, networks, secrets, events; the node
//!   watcher).
//! - `http_get`: one bounded HTTP GET over a connected stream (engine reads, admin client).
//! - `control`: the control plane loop, publishing snapshots; leader/follower stream.
//! - `l7`: the HTTP reverse proxy (routes, balancing, TLS, passthrough, metrics).
//! - `model`: the routing snapshot shared by the control plane and the data planes.
//! - `log_format`: how log lines are written (cheap enough for one line per request);
//!   `access_log`: the per-request line; `log_writer`: stderr through a bounded queue.
//! - `pem`: reading certificates and keys (HTTPS front, snapshot stream).
//! - `netns`: running code in another network namespace (the host's, from a container).
//! - `runtime`: the tokio runtime (current-thread for one worker, else work-stealing).
// `unsafe` only where the kernel is reached without a safe wrapper, each block with its
// `// SAFETY:` reason: bpf/logger.rs (aya-log's fd in tokio), log_writer.rs (nice(2)), l7.
#![deny(unsafe_code)]
pub mod access_log;
pub mod bpf;
pub mod config;
pub mod control;
pub mod docker;
pub mod http_get;
pub mod l4;
pub mod l7;
pub mod log_format;
pub mod log_writer;
pub mod model;
pub mod netns;
pub mod pem;
pub mod planes;
pub mod runtime;
