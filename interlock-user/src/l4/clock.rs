//! The kernel's jiffies rate (CONFIG_HZ). The data path reads its clock with `bpf_jiffies64`,
//! which the verifier inlines (the ktime helpers are calls, ~15 ns each on this kind of
//! machine), so its timeouts are counted in jiffies; HZ is not exposed to user space
//! portably, so it is measured once with the kernel's own clock.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::Ebpf;

/// The program returning jiffies (interlock-ebpf/src/lb/mod.rs).
const PROG_JIFFIES: &str = "interlock_jiffies";
/// The values CONFIG_HZ can take.
const HZ_CHOICES: [u32; 4] = [100, 250, 300, 1000];
/// Long enough to tell 250 from 300 at HZ=100's resolution.
const SAMPLE: Duration = Duration::from_millis(60);

/// Measures HZ by reading jiffies twice `SAMPLE` apart.
pub fn kernel_hz(ebpf: &mut Ebpf) -> Result<u32> {
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_JIFFIES)
        .with_context(|| format!("the eBPF object has no program {PROG_JIFFIES}"))?
        .try_into()?;
    prog.load().with_context(|| format!("loading {PROG_JIFFIES}"))?;
    // An Ethernet header's worth of bytes: XDP test runs need at least that.
    let frame = [0u8; 14];
    let read = || -> Result<(u32, Instant)> {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..TestRunOptions::new()
            })
            .with_context(|| format!("running {PROG_JIFFIES}"))?;
        Ok((r.return_value, Instant::now()))
    };
    let (j0, t0) = read()?;
    std::thread::sleep(SAMPLE);
    let (j1, t1) = read()?;
    let hz = nearest_hz(j1.wrapping_sub(j0), t1 - t0);
    prog.unload().with_context(|| format!("unloading {PROG_JIFFIES}"))?;
    Ok(hz)
}

/// The CONFIG_HZ choice closest (by ratio) to `jiffies` ticks in `elapsed`.
fn nearest_hz(jiffies: u32, elapsed: Duration) -> u32 {
    let measured = f64::from(jiffies) / elapsed.as_secs_f64().max(1e-9);
    let off = |hz: u32| (measured / f64::from(hz)).ln().abs();
    HZ_CHOICES
        .into_iter()
        .min_by(|a, b| off(*a).total_cmp(&off(*b)))
        .unwrap_or(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_rounds_to_the_configured_hz_despite_one_tick_of_jitter() {
        for hz in HZ_CHOICES {
            let ticks = hz * SAMPLE.as_millis() as u32 / 1000;
            for seen in [ticks - 1, ticks, ticks + 1] {
                assert_eq!(nearest_hz(seen, SAMPLE), hz, "{seen} ticks in {SAMPLE:?}");
            }
        }
    }

    #[test]
    fn no_ticks_or_no_time_still_gives_a_valid_hz() {
        assert_eq!(nearest_hz(0, SAMPLE), 100);
        assert_eq!(nearest_hz(5, Duration::ZERO), 1000);
    }
}
