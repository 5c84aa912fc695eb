//! `cargo xtask bench control`.
use anyhow::{bail, Result};

pub fn run() -> Result<()> {
    bail!("bench control is not written yet")
}
