//! Running wrk and reading its figures.
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::process::Placement;

/// One wrk run's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkResult {
    pub rps: f64,
    pub p99_ms: f64,
    pub non2xx: u64,
    pub errors: u64,
}

impl WrkResult {
    /// The median rate and the median p99 of several runs; failures are summed, so one
    /// bad answer in any run shows.
    pub fn median<'a>(runs: impl Iterator<Item = &'a WrkResult>) -> WrkResult {
        let runs: Vec<&WrkResult> = runs.collect();
        WrkResult {
            rps: middle(runs.iter().map(|r| r.rps).collect()),
            p99_ms: middle(runs.iter().map(|r| r.p99_ms).collect()),
            non2xx: runs.iter().map(|r| r.non2xx).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
        }
    }
}

/// The middle value (the upper one of an even count; 0 for none).
pub fn middle(v: Vec<f64>) -> f64 {
    quartiles(v)[1]
}

/// The first quartile, the median and the third quartile (nearest rank, the upper one of
/// an even count; 0 for none): the middle half lies between the first and the last.
pub fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    [1, 2, 3].map(|quarter| v.get(v.len() * quarter / 4).copied().unwrap_or(0.0))
}

/// How wrk's clients behave in a timed run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// 64 keep-alive clients, each sending its next request when the answer to the last
    /// has come (closed loop: as fast as the proxy goes).
    KeepAlive,
    /// 16 clients opening a new connection for every request (`Connection: close`).
    NewConnection,
    /// 64 keep-alive clients, each waiting [`PACE_MS`] after an answer: about 14k requests
    /// a second whatever the proxy, under half of what any of them serves here, so the
    /// proxies' latencies are compared at the same load.
    Paced,
}

/// The wait between an answer and a paced client's next request.
pub const PACE_MS: u32 = 3;

impl Case {
    pub const ALL: [Case; 3] = [Case::KeepAlive, Case::NewConnection, Case::Paced];

    pub fn name(self) -> &'static str {
        match self {
            Case::KeepAlive => "keepalive",
            Case::NewConnection => "newconn",
            Case::Paced => "paced",
        }
    }
}

/// A timed run of `case` for `seconds`; `dir` holds the pacing script.
pub fn timed(dir: &Path, port: u16, case: Case, seconds: u32) -> Result<WrkResult> {
    let connections = if case == Case::NewConnection { 16 } else { 64 };
    let mut c = Placement::Load.command("wrk");
    c.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ])
    .args(["-H", "Host: bench.example"]);
    match case {
        Case::KeepAlive => {}
        Case::NewConnection => {
            c.args(["-H", "Connection: close"]);
        }
        Case::Paced => {
            let script = dir.join("pace.lua");
            std::fs::write(&script, format!("function delay()\n  return {PACE_MS}\nend\n"))?;
            c.arg("-s").arg(script);
        }
    }
    let out = c
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// Exactly `requests` keep-alive requests on `connections` connections, then wrk exits
/// (a Lua script counts the answers): a fixed amount of work for instruction counts.
pub fn fixed(dir: &Path, port: u16, connections: u32, requests: u64) -> Result<()> {
    let script = dir.join("count.lua");
    std::fs::write(
        &script,
        "local n, limit = 0, 0\nfunction init(args) limit = tonumber(args[1]) end\n\
         function response(status, headers, body)\n  n = n + 1\n  if n >= limit then os.exit(0) end\nend\n",
    )?;
    let status = Placement::Load
        .command("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            "-d300s",
            "-H",
            "Host: bench.example",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["--", &requests.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running wrk")?;
    if !status.success() {
        bail!("wrk for {requests} requests failed: {status}");
    }
    Ok(())
}

pub fn parse(text: &str) -> Option<WrkResult> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let p99_ms = duration_ms(p99)?;
    let non2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 12, write 0, timeout 0"
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(WrkResult {
        rps,
        p99_ms,
        non2xx,
        errors,
    })
}

/// wrk prints durations like `812.00us`, `1.23ms`, `2.01s`.
fn duration_ms(s: &str) -> Option<f64> {
    let (num, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 8s test\n  Latency Distribution\n     50%  512.00us\n     99%    2.50ms\n\
                    Requests/sec:  41234.56\n  Non-2xx or 3xx responses: 3\n  Socket errors: connect 0, read 2, write 1, timeout 0\n";
        let r = parse(text).unwrap();
        assert_eq!((r.rps, r.p99_ms, r.non2xx, r.errors), (41234.56, 2.5, 3, 3));
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn median_of_runs() {
        let run = |rps, p99_ms, non2xx| WrkResult {
            rps,
            p99_ms,
            non2xx,
            errors: 1,
        };
        let runs = [run(10.0, 3.0, 0), run(30.0, 1.0, 2), run(20.0, 2.0, 0)];
        let expected = WrkResult {
            errors: 3,
            ..run(20.0, 2.0, 2)
        };
        assert_eq!(WrkResult::median(runs.iter()), expected);
        assert_eq!(WrkResult::median([].iter()), WrkResult::default());
        assert_eq!(quartiles(vec![7.0, 1.0, 5.0, 3.0, 6.0, 2.0, 4.0]), [2.0, 4.0, 6.0]);
        assert_eq!(quartiles(Vec::new()), [0.0; 3]);
    }
}
