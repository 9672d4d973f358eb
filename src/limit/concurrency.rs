//! The concurrency controller: how many requests may be on the wire at once.
//!
//! Owns: the in-flight limit, pinned (`concurrency = N`) or adaptive (`"auto"`, capped by
//! `max_concurrency`): AIMD on round-trip times after Vector's adaptive request concurrency. Once
//! per interval (the mean RTT), when every slot was busy and the interval's RTT did not rise above
//! `mean + max(2.5 σ, 10%)`: ×2 during slow start (until the first throttle, back pressure or
//! rising RTT), +1 after; ×0.9 (at least −1) on back pressure (5xx, timeouts, dropped
//! connections) or a rising RTT, never below the starting 4 (or `max_concurrency`, if lower).
//! Throttles are the rate controller's signal (they only end slow start): a request that waits
//! for rate tokens is not on the wire, so a rate-bound run never grows its concurrency.
//! Never: sends, sleeps, or lets the limit reach 0.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The first limit in auto mode, and its floor: decreases stop here. Below it, a request backing
/// off after a 5xx would hold a large share of the slots, and each request's own backoff already
/// slows a struggling server.
pub const INITIAL: usize = 4;
/// Weight of the newest interval in the RTT mean and variance (Vector's `ewma_alpha`).
const ALPHA: f64 = 0.4;
/// How many standard deviations above the mean an interval's RTT must be to count as rising.
const DEVIATION_SCALE: f64 = 2.5;
/// An interval's RTT must also be this share above the mean to count as rising: after one
/// interval the variance is 0, and a microsecond of jitter would end slow start.
const MIN_RISE: f64 = 0.1;
/// Multiplicative decrease.
const DECREASE: f64 = 0.9;
/// Shortest evaluation interval.
const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// How one request on the wire ended, for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A VikingDB answer (applied or refused): its RTT is a sample.
    Answered,
    /// 5xx, timeout, dropped connection, not a VikingDB answer: the server is struggling.
    BackPressure,
    /// A throttle: the rate is what limits now, so slow start ends; otherwise no signal.
    Throttled,
    /// A fatal answer: no signal for concurrency.
    Neutral,
}

/// The in-flight limit. Cheap to share behind an `Arc`.
pub struct ConcurrencyController {
    /// `Some(n)`: pinned at n.
    fixed: Option<usize>,
    max: usize,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    on_wire: usize,
    reached: bool,
    back_pressure: bool,
    /// Doubling per interval until the first throttle, back pressure or rising RTT (TCP's slow
    /// start): a 100 ms server at 200 one-row requests a second needs 20 in flight, which +1 per
    /// interval takes two seconds to reach.
    slow_start: bool,
    interval_start: Instant,
    rtt_sum: f64,
    rtt_n: u32,
    /// Mean and variance of past intervals' RTT, seconds (0 = none yet).
    mean: f64,
    var: f64,
    peak: usize,
}

impl std::fmt::Debug for ConcurrencyController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurrencyController")
            .field("fixed", &self.fixed)
            .field("limit", &self.limit())
            .finish()
    }
}

/// One request on the wire; tell the controller how it ended with [`InFlight::finish`]. Dropped
/// unfinished (the task was cancelled), it leaves the wire without a signal.
pub struct InFlight<'a> {
    controller: &'a ConcurrencyController,
    sent: Instant,
    open: bool,
}

impl ConcurrencyController {
    /// `fixed`: a pinned limit; otherwise adaptive between 1 and `max`.
    pub fn new(fixed: Option<usize>, max: usize) -> ConcurrencyController {
        let max = max.max(1);
        let limit = fixed.unwrap_or(INITIAL).clamp(1, max.max(fixed.unwrap_or(1)));
        ConcurrencyController {
            fixed,
            max,
            state: Mutex::new(State {
                limit,
                on_wire: 0,
                reached: false,
                back_pressure: false,
                slow_start: fixed.is_none(),
                interval_start: Instant::now(),
                rtt_sum: 0.0,
                rtt_n: 0,
                mean: 0.0,
                var: 0.0,
                peak: limit,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// The highest limit so far.
    pub fn peak(&self) -> usize {
        self.lock().peak
    }

    /// A request goes on the wire.
    pub fn start(&self) -> InFlight<'_> {
        let mut s = self.lock();
        s.on_wire += 1;
        if s.on_wire >= s.limit {
            s.reached = true;
        }
        InFlight {
            controller: self,
            sent: Instant::now(),
            open: true,
        }
    }

    fn end(&self, sent: Instant, outcome: Option<Outcome>) {
        let now = Instant::now();
        let mut s = self.lock();
        s.on_wire = s.on_wire.saturating_sub(1);
        match outcome {
            Some(Outcome::Answered) => {
                s.rtt_sum += now.saturating_duration_since(sent).as_secs_f64();
                s.rtt_n += 1;
            }
            Some(Outcome::BackPressure) => s.back_pressure = true,
            Some(Outcome::Throttled) => s.slow_start = false,
            Some(Outcome::Neutral) | None => {}
        }
        if self.fixed.is_none() {
            self.evaluate(&mut s, now);
        }
    }

    /// Once per interval: AIMD on the interval's RTT against the past mean.
    fn evaluate(&self, s: &mut State, now: Instant) {
        let interval = Duration::from_secs_f64(s.mean).max(MIN_INTERVAL);
        if now.saturating_duration_since(s.interval_start) < interval {
            return;
        }
        let current = (s.rtt_n > 0).then(|| s.rtt_sum / f64::from(s.rtt_n));
        let rising = match current {
            Some(rtt) if s.mean > 0.0 => rtt > s.mean + (DEVIATION_SCALE * s.var.sqrt()).max(MIN_RISE * s.mean),
            _ => false,
        };
        if s.back_pressure || rising {
            s.slow_start = false;
            let cut = ((s.limit as f64) * DECREASE).floor() as usize;
            s.limit = cut.min(s.limit.saturating_sub(1)).max(INITIAL.min(self.max));
        } else if s.reached && s.limit < self.max && current.is_some() {
            s.limit = if s.slow_start {
                (s.limit * 2).min(self.max)
            } else {
                s.limit + 1
            };
            s.peak = s.peak.max(s.limit);
        }
        if let Some(rtt) = current {
            if s.mean == 0.0 {
                s.mean = rtt;
            } else {
                let d = rtt - s.mean;
                s.mean += ALPHA * d;
                s.var = (1.0 - ALPHA) * (s.var + ALPHA * d * d);
            }
        }
        tracing::trace!(
            limit = s.limit,
            on_wire = s.on_wire,
            reached = s.reached,
            rtt = current,
            mean = s.mean,
            slow_start = s.slow_start,
            "concurrency interval"
        );
        s.interval_start = now;
        s.rtt_sum = 0.0;
        s.rtt_n = 0;
        s.reached = s.on_wire >= s.limit;
        s.back_pressure = false;
    }
}

impl InFlight<'_> {
    pub fn finish(mut self, outcome: Outcome) {
        self.open = false;
        self.controller.end(self.sent, Some(outcome));
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.open {
            self.controller.end(self.sent, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `rounds` intervals with every slot busy and a fixed RTT; returns the limits seen.
    async fn saturate(c: &ConcurrencyController, rounds: usize, rtt: Duration, outcome: Outcome) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let n = c.limit();
            let flights: Vec<_> = (0..n).map(|_| c.start()).collect();
            tokio::time::advance(rtt).await;
            for f in flights {
                f.finish(outcome);
            }
            seen.push(c.limit());
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_in_slow_start_and_stops_at_the_cap() {
        let c = ConcurrencyController::new(None, 100);
        assert_eq!(c.limit(), INITIAL);
        let seen = saturate(&c, 6, Duration::from_millis(100), Outcome::Answered).await;
        // The first interval only learns the RTT; then ×2 per interval, capped.
        assert_eq!(seen, vec![8, 16, 32, 64, 100, 100], "{seen:?}");
        assert_eq!(c.peak(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_ends_slow_start_then_grows_by_one() {
        let c = ConcurrencyController::new(None, 100);
        saturate(&c, 2, Duration::from_millis(100), Outcome::Answered).await;
        let before = c.limit();
        saturate(&c, 1, Duration::from_millis(100), Outcome::Throttled).await;
        // A throttle is no RTT sample (the +1 is the previous interval's answers, evaluated late).
        assert!(c.limit() <= before + 1, "{} vs {before}", c.limit());
        let seen = saturate(&c, 5, Duration::from_millis(100), Outcome::Answered).await;
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_alone_is_not_a_rising_rtt() {
        let c = ConcurrencyController::new(None, 1000);
        // 100 ms, then 105 ms: 5% above a mean whose variance is still 0.
        saturate(&c, 1, Duration::from_millis(100), Outcome::Answered).await;
        let seen = saturate(&c, 3, Duration::from_millis(105), Outcome::Answered).await;
        assert!(seen.windows(2).all(|w| w[1] == w[0] * 2), "{seen:?}");
        // A real rise (60%) is: a cut follows.
        let seen = saturate(&c, 3, Duration::from_millis(160), Outcome::Answered).await;
        assert!(seen.windows(2).any(|w| w[1] < w[0]), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn back_pressure_cuts_down_to_the_floor() {
        let c = ConcurrencyController::new(None, 100);
        saturate(&c, 30, Duration::from_millis(50), Outcome::Answered).await;
        let high = c.limit();
        let seen = saturate(&c, 60, Duration::from_millis(50), Outcome::BackPressure).await;
        assert!(seen[0] < high);
        assert_eq!(*seen.last().expect("limits"), INITIAL);
        // A cap below the floor is the floor.
        let c = ConcurrencyController::new(None, 2);
        saturate(&c, 10, Duration::from_millis(50), Outcome::BackPressure).await;
        assert_eq!(c.limit(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsaturated_limit_does_not_grow() {
        let c = ConcurrencyController::new(None, 100);
        for _ in 0..50 {
            // One request at a time, never reaching the limit (a rate-bound run).
            let f = c.start();
            tokio::time::advance(Duration::from_millis(50)).await;
            f.finish(Outcome::Answered);
        }
        assert_eq!(c.limit(), INITIAL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pinned_limit_never_moves() {
        let c = ConcurrencyController::new(Some(8), 64);
        saturate(&c, 10, Duration::from_millis(10), Outcome::BackPressure).await;
        assert_eq!(c.limit(), 8);
    }
}
