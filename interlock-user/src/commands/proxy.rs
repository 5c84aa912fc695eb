//! `interlock proxy`: the HTTP plane alone, with routes from the control plane (watching
//! Docker or following a leader, same settings as `interlock control`) or, with `--routes
//! FILE`, from a snapshot JSON file reloaded when it changes.
use std::path::PathBuf;

use anyhow::Result;

use interlock::config::{self, ControlArgs, Given, HttpArgs};
use interlock::control::routes_file;
use interlock::planes;

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Serve the routes of this snapshot JSON file instead of running the control plane.
    #[arg(long)]
    pub routes: Option<PathBuf>,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub async fn run(args: ProxyArgs, given: &Given) -> Result<()> {
    let http = config::http_config(args.http, given)?;
    let rx = match &args.routes {
        Some(file) => routes_file::watch(file.clone())?,
        None => planes::control::start(&config::control_config(args.control, given)?).await?,
    };
    planes::http::serve(http, rx, None, Vec::new()).await
}
