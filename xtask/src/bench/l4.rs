//! `cargo xtask bench l4`.
use anyhow::{bail, Result};

pub fn run() -> Result<()> {
    bail!("bench l4 is not written yet")
}
