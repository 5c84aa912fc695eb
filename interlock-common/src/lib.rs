//! Types shared by the kernel programs (interlock-ebpf) and the agent (interlock-user).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side reads and writes these
//! as BPF map keys and values, the user side reads them through aya. With the `user`
//! feature every type implements `aya::Pod`.
#![no_std]

pub mod counters;

pub use counters::{ProtoStats, PROTO_SLOTS, PROTO_SLOT_NON_IP};
pub mod lb;
