//! Project automation for Interlock, run as `cargo xtask <command>`.
//!
//! `ebpf` is also used by interlock-user's build script, so it depends on std alone.
pub mod ebpf;
