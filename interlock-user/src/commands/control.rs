//! `interlock control`: runs the control plane alone (`planes::control`) and, with
//! `--print`, prints each snapshot as one JSON line.
use anyhow::Result;

use interlock::config::{self, ControlArgs, Given};
use interlock::planes;

#[derive(Debug, clap::Args)]
pub struct ControlCommand {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print each snapshot version as one JSON line on stdout.
    #[arg(long)]
    pub print: bool,
}

pub async fn run(cmd: ControlCommand, given: &Given) -> Result<()> {
    let mut rx = planes::control::start(&config::control_config(cmd.control, given)?).await?;
    let print = async {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if cmd.print && snapshot.version > 0 {
                println!("{}", serde_json::to_string(&*snapshot).unwrap_or_default());
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = print => {},
        _ = interlock::runtime::shutdown_signal() => {},
    }
    Ok(())
}
