//! The machine's pace when a result was written: a fixed piece of integer
//! work on one core, timed. This machine (a VM on shared hardware) ran the
//! same build at a third of its speed within the hour (docs/benchmarks.md,
//! session 15), and a figure means little without the pace it was taken at.

use std::time::{Duration, Instant};

/// Steps of the workload: a chain of xorshift64 steps, each depending on
/// the last (no vector unit or second core can shorten it).
const STEPS: u64 = 1 << 25;

/// A probe is reused for this long: the lines of one scenario are written
/// together.
const REUSE: Duration = Duration::from_secs(10);

/// Milliseconds one core takes for the workload, the median of three
/// tries, reused for [`REUSE`].
#[derive(Default)]
pub struct Pace {
    last: Option<(Instant, f64)>,
}

impl Pace {
    pub fn probe_ms(&mut self) -> f64 {
        if let Some((at, ms)) = self.last {
            if at.elapsed() < REUSE {
                return ms;
            }
        }
        let mut tries = [once(), once(), once()];
        tries.sort_by(f64::total_cmp);
        let ms = (tries[1] * 10.0).round() / 10.0;
        self.last = Some((Instant::now(), ms));
        ms
    }
}

fn once() -> f64 {
    let started = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sum: u64 = 0;
    for _ in 0..STEPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum = sum.wrapping_add(x);
    }
    std::hint::black_box(sum);
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::Pace;

    #[test]
    fn a_probe_takes_time_and_is_reused_for_the_lines_written_together() {
        let mut pace = Pace::default();
        let first = pace.probe_ms();
        assert!(first.is_finite() && first > 0.0, "{first}");
        assert_eq!(pace.probe_ms(), first, "reused within ten seconds");
    }
}
