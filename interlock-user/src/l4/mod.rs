//! The L4 fast path from user space: Maglev tables, the typed map API, syncing a set of
//! `model::L4Service`s into the kernel, bpffs pinning and stats.
pub mod maglev;
