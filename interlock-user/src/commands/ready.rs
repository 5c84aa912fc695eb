//! `interlock ready`: exits 0 when the agent at the admin address takes traffic (its
//! `/readyz`: first routes in place, not draining), 1 otherwise with the reason. The stack's
//! health check: the image has no HTTP client, so the binary asks itself.
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};

#[derive(Debug, clap::Args)]
pub struct ReadyArgs {
    /// The agent's admin address.
    #[arg(long, default_value_t = interlock::config::defaults::ADMIN_LISTEN, env = "INTERLOCK_ADMIN")]
    pub admin: SocketAddr,
}

pub async fn run(args: ReadyArgs) -> Result<()> {
    // Bounded, so a wedged agent fails the check rather than hanging it.
    let (status, body) = super::admin_client::get(args.admin, "/readyz", Duration::from_secs(2)).await?;
    if !status.is_success() {
        bail!("{}/readyz answered {status}: {}", args.admin, body.trim());
    }
    print!("{body}");
    Ok(())
}
