//! The row rate limiter: one per collection, shared by every op and source, counting rows.
//!
//! Owns: pacing requests to the collection's quota (governor, n cells for a request of n rows,
//! burst = the largest batch), the pause every sender observes after a throttle, and the adaptive
//! rate: each throttle cuts the rate (at most once a second), each quiet 5 s restores some of it.
//! Governor cannot change its rate, so a change swaps in a new limiter that starts drained.
//! Never: sends, retries, or counts anything but rows.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

const MIN_FACTOR: f64 = 0.1;
const CUT: f64 = 0.7;
const RECOVER_STEP: f64 = 0.1;
const RECOVER_AFTER: Duration = Duration::from_secs(5);
const CUT_COOLDOWN: Duration = Duration::from_secs(1);
/// Pause after a throttle that came without `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_millis(250);

/// Paces rows to `rows_per_second`; 0 = unlimited.
pub struct RowLimiter {
    rows_per_second: u32,
    burst: NonZeroU32,
    state: Mutex<State>,
}

struct State {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    factor: f64,
    /// When the rate last changed (recovery waits for quiet after it).
    last_change: Instant,
    /// When the rate was last cut (cuts are at most one per cool-down).
    last_cut: Option<Instant>,
    paused_until: Option<Instant>,
}

impl std::fmt::Debug for RowLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowLimiter")
            .field("rows_per_second", &self.rows_per_second)
            .field("current", &self.current_rate())
            .finish()
    }
}

fn build(rate: u32, burst: NonZeroU32, drained: bool) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
    let lim = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
    if drained {
        // A fresh limiter would hand out a whole burst at once, right after a throttle.
        let _ = lim.check_n(burst);
    }
    Arc::new(lim)
}

impl RowLimiter {
    /// `max_batch_rows` is the burst: the largest request must always fit.
    pub fn new(rows_per_second: u32, max_batch_rows: usize) -> RowLimiter {
        let burst = NonZeroU32::new(u32::try_from(max_batch_rows.max(1)).unwrap_or(100)).unwrap_or(NonZeroU32::MIN);
        let limiter = (rows_per_second > 0).then(|| build(rows_per_second, burst, false));
        RowLimiter {
            rows_per_second,
            burst,
            state: Mutex::new(State {
                limiter,
                factor: 1.0,
                last_change: Instant::now(),
                last_cut: None,
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `rows` rows may be sent.
    pub async fn acquire(&self, rows: usize) {
        if self.rows_per_second == 0 {
            return self.wait_pause().await;
        }
        let mut remaining = u32::try_from(rows).unwrap_or(u32::MAX);
        while remaining > 0 {
            self.wait_pause().await;
            let lim = {
                let mut s = self.lock();
                if s.factor < 1.0 && s.last_change.elapsed() >= RECOVER_AFTER {
                    s.factor = (s.factor + RECOVER_STEP).min(1.0);
                    s.last_change = Instant::now();
                    s.limiter = Some(build(self.rate_for(s.factor), self.burst, true));
                }
                s.limiter.clone()
            };
            let Some(lim) = lim else { return };
            let n = remaining.min(self.burst.get());
            let cells = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            // n ≤ burst, so this always waits rather than failing.
            let _ = lim.until_n_ready(cells).await;
            remaining -= n;
        }
    }

    async fn wait_pause(&self) {
        loop {
            let until = self.lock().paused_until;
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    fn rate_for(&self, factor: f64) -> u32 {
        ((f64::from(self.rows_per_second) * factor).round() as u32).max(1)
    }

    /// The server said "too many requests": everyone pauses, and the rate is cut.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut s = self.lock();
        let until = now + retry_after.unwrap_or(DEFAULT_PAUSE);
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        if self.rows_per_second > 0 && s.last_cut.is_none_or(|t| now.duration_since(t) >= CUT_COOLDOWN) {
            s.factor = (s.factor * CUT).max(MIN_FACTOR);
            s.last_change = now;
            s.last_cut = Some(now);
            s.limiter = Some(build(self.rate_for(s.factor), self.burst, true));
        }
    }

    /// The rate in force now, rows per second (0 = unlimited).
    pub fn current_rate(&self) -> u32 {
        if self.rows_per_second == 0 {
            return 0;
        }
        self.rate_for(self.lock().factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paces_rows_to_the_quota_with_one_batch_of_burst() {
        let lim = RowLimiter::new(2000, 100);
        let start = std::time::Instant::now();
        for _ in 0..10 {
            lim.acquire(100).await;
        }
        // 1000 rows at 2000/s with a 100-row burst: 900 rows must wait ≈ 0.45 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.40..0.8).contains(&took), "took {took}s");
    }

    #[tokio::test]
    async fn throttle_cuts_the_rate_and_pauses() {
        let lim = RowLimiter::new(1000, 100);
        assert_eq!(lim.current_rate(), 1000);
        lim.throttled(Some(Duration::from_millis(100)));
        assert_eq!(lim.current_rate(), 700);
        let start = std::time::Instant::now();
        lim.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_millis(90));
        // A second throttle within the cool-down does not cut again.
        lim.throttled(None);
        assert_eq!(lim.current_rate(), 700);
    }

    #[tokio::test]
    async fn unlimited_never_waits_and_large_requests_are_split_into_bursts() {
        let lim = RowLimiter::new(0, 100);
        lim.acquire(1_000_000).await;
        let lim = RowLimiter::new(100_000, 10);
        lim.acquire(500).await; // larger than the burst: waits instead of failing
    }
}
