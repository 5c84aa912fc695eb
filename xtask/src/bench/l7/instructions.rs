//! Instructions per request, counted by valgrind's callgrind: a figure the other load on a
//! shared machine does not change, unlike requests per second. Each server is run twice, for
//! `FEW` and for `MANY` keep-alive requests; the difference of the two counts divided by
//! `MANY - FEW` leaves start-up and shutdown out.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::process::{wait_port, Proc};
use super::wrk;

const FEW: u64 = 2_000;
const MANY: u64 = 12_000;

/// A server under callgrind: its command (counting into the given file) and the signal
/// that stops it cleanly.
pub type Start<'a> = dyn Fn(&Path) -> Result<(Command, i32)> + 'a;

pub fn per_request(dir: &Path, name: &str, port: u16, start: &Start) -> Result<f64> {
    let mut totals = Vec::new();
    for requests in [FEW, MANY] {
        let out = dir.join(format!("callgrind-{name}-{requests}.out"));
        let (mut cmd, stop_signal) = start(&out)?;
        let server = Proc::start_with(name, &mut cmd, stop_signal)?;
        wait_port(port, Duration::from_secs(60))?;
        wrk::fixed(dir, port, 8, requests)?;
        server.stop(Duration::from_secs(60));
        let text = std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
        totals.push(total(&text).with_context(|| format!("no instruction total in {}", out.display()))?);
    }
    Ok(totals[1].saturating_sub(totals[0]) as f64 / (MANY - FEW) as f64)
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
fn total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_callgrind_totals() {
        assert_eq!(total("events: Ir\nsummary: 1234\ntotals: 1234\n"), Some(1234));
        assert_eq!(total("events: Ir\n"), None);
    }
}
