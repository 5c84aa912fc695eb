//! The L4 fast path from user space: Maglev tables, the typed map API, syncing a set of
//! `model::L4Service`s into the kernel, bpffs pinning.
pub mod clock;
pub mod desired;
pub mod maglev;
pub mod maps;
pub mod memlock;
pub mod pin;
pub mod sync;

pub use maps::LbMaps;
pub use sync::{L4Sync, SyncReport};
