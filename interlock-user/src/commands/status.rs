//! `interlock status`: asks a running agent's admin address for `/status` and prints its
//! routes, backends and L4 counters as tables (or the JSON with `--json`).
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use interlock::planes::status::Status;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's admin address.
    #[arg(long, default_value_t = interlock::config::defaults::ADMIN_LISTEN, env = "INTERLOCK_ADMIN")]
    pub admin: SocketAddr,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let body = fetch(args.admin).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let status: Status =
        serde_json::from_str(&body).with_context(|| format!("the agent at {} sent no status", args.admin))?;
    print!("{}", status.to_table());
    Ok(())
}

async fn fetch(admin: SocketAddr) -> Result<String> {
    // Bounded, so a wedged agent is reported rather than waited for.
    let (status, body) = super::admin_client::get(admin, "/status", Duration::from_secs(10)).await?;
    if !status.is_success() {
        bail!("{admin}/status answered {status}: {}", body.trim());
    }
    Ok(body)
}
