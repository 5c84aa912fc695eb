//! Project automation for Interlock, run as `cargo xtask <command>`.
//!
//! `ebpf` is also used by interlock-user's build script, and `backend_image` by the tests,
//! so the library depends on std alone.
pub mod backend_image;
pub mod ebpf;
