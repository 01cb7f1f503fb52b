//! In-process rate limits (GCRA: one timestamp per key, smooth refill).
//! Per-e-mail limits that must hold across nodes are counted in PostgreSQL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SWEEP_EVERY: usize = 4096;

/// One GCRA budget, owned by whoever it limits (e.g. one WebSocket session):
/// `rate` events a second on average, bursts of `burst` after a quiet time.
#[derive(Debug, Clone)]
pub struct Budget {
    tat: Instant,
    interval: Duration,
    tolerance: Duration,
}

impl Budget {
    pub fn new(rate: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate.max(1);
        Self {
            tat: Instant::now(),
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
        }
    }

    /// Takes one event from the budget; false when it is spent.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let tat = self.tat.max(now);
        if tat - now > self.tolerance {
            return false;
        }
        self.tat = tat + self.interval;
        true
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tat: HashMap<String, Instant>,
    since_sweep: usize,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows at most `limit` events per `period` for `key` (a full burst of
    /// `limit` is allowed after a quiet period). On refusal returns how long
    /// to wait.
    pub fn check(&self, key: &str, limit: u32, period: Duration) -> Result<(), Duration> {
        self.check_at(key, limit, period, Instant::now())
    }

    fn check_at(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let limit = limit.max(1);
        let interval = period / limit;
        let tolerance = period.saturating_sub(interval);
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        inner.since_sweep += 1;
        if inner.since_sweep >= SWEEP_EVERY {
            inner.since_sweep = 0;
            inner.tat.retain(|_, t| *t > now);
        }
        let tat = inner.tat.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        inner.tat.insert(key.to_owned(), tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_budget_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(10, 5);
        b.tat = t0;
        assert_eq!((0..8).filter(|_| b.take_at(t0)).count(), 5);
        // 100 ms later one more event fits (10 a second).
        assert!(b.take_at(t0 + Duration::from_millis(100)));
        assert!(!b.take_at(t0 + Duration::from_millis(100)));
    }

    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(rl.check_at("k", 3, hour, t0).is_ok());
        }
        let wait = rl
            .check_at("k", 3, hour, t0)
            .expect_err("4th must be refused");
        assert!(wait <= Duration::from_secs(1200) && wait > Duration::ZERO);
        assert!(rl.check_at("other", 3, hour, t0).is_ok());
        assert!(rl
            .check_at("k", 3, hour, t0 + Duration::from_secs(1200))
            .is_ok());
        assert!(rl
            .check_at("k", 3, hour, t0 + Duration::from_secs(1200))
            .is_err());
    }
}
