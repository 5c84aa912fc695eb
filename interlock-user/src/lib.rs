//! The Interlock agent as a library: the `interlock` binary (src/main.rs) is a thin CLI
//! over these modules, and the end-to-end tests (tests/) use them directly.
//!
//! - `bpf`: the embedded kernel object, loading it, attaching XDP, reading counters.
//! - `commands`: what each CLI subcommand does.
//! - `model`: the routing snapshot shared by the control plane and the data planes.
pub mod bpf;
pub mod commands;
pub mod l4;
pub mod model;
