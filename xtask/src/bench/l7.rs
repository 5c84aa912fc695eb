//! `cargo xtask bench l7`.
use anyhow::{bail, Result};

pub fn run() -> Result<()> {
    bail!("bench l7 is not written yet")
}
