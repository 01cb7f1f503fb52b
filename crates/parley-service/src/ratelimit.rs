//! In-process rate limits (GCRA: one timestamp per key, smooth refill).
//! Per-e-mail limits that must hold across nodes are counted in PostgreSQL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SWEEP_EVERY: usize = 4096;

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
