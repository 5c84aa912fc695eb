//! `interlock run`: the agent (`planes::run_agent`). Settings are resolved in `main` before
//! the runtime starts, because they choose the log format and the Docker endpoint.
use anyhow::Result;

use interlock::config::Settings;
use interlock::planes;

pub async fn run(settings: Settings) -> Result<()> {
    planes::run_agent(settings).await
}
