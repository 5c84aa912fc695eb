//! Talking to the Docker engine: reading services, tasks, networks and secrets into a
//! `model::assemble::ClusterState`, and watching its event stream. I/O only; what the
//! state means is decided in `model/`.
mod events;
pub mod local;
pub mod node;
pub mod raw;
mod read;
mod secrets;

pub use events::{watch_events, Dirty};
pub use read::DockerSource;
