//! The routing model: what the control plane learns from Docker and publishes to the
//! L4 and L7 planes as immutable, versioned snapshots.
//!
//! - `snapshot`: the contract between the planes (types only, no I/O).
pub mod assemble;
pub mod labels;
pub mod node;
pub mod snapshot;

pub use snapshot::*;
