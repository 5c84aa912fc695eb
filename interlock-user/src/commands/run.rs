//! `interlock run`: the agent (see `agent`). Settings are resolved in `main` before the
//! runtime starts, because they choose the log format and the Docker endpoint.
use anyhow::Result;

use crate::agent::{self, settings::Settings};

pub async fn run(settings: Settings) -> Result<()> {
    agent::run(settings).await
}
