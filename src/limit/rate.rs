//! The rate controller: a token bucket in rows whose fill rate finds the server's quota.
//!
//! Owns: pacing (one bucket per collection and write path, shared by every sender of the
//! process; grants leave at a random point of a quarter of their interval, or of all of it when
//! requests are small), the size of a request
//! (a span of the rate that shrinks with it, for fair shares), the fill rate's CUBIC
//! curve (cut by [`BETA`] on a congestion event, by less below the reference after the first,
//! back to the old rate after K seconds, then probing above it; [`C_REQUESTS`]), grants that a
//! cut or a pause overtakes before they leave, one cut per congestion event (a throttle of a
//! request sent before the last cut, or within a tick of it, is the same event), the first
//! event's estimate when it ends a ramp or comes before the first tick (a floor, climbed from
//! towards twice it: the ramp's last doubling), a double cut during a start-up overload,
//! `Retry-After` pauses, and the measured accepted rate. Never: sends, retries, or waits while
//! holding its lock.
//!
//! Why not governor: its rate is fixed at construction, and swapping limiters on every change
//! hands out a fresh burst or starts drained; the curve changes the rate every tick.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// CUBIC's multiplicative decrease (RFC 9438; AWS adaptive retry uses 0.7): a cut at the reference
/// rate keeps 80% of it; later cuts below the reference take less (see `throttled`).
pub const BETA: f64 = 0.8;
/// CUBIC's scaling constant, in requests per second per s³ (RFC 9438 and the AWS SDKs use 0.4):
/// the curve is `W(t) = C · (t − K)³ + W_max` with `K = ∛((W_max − rate) / C)`, concave back to
/// `W_max` and convex above it. Growth is absolute, the same for every writer at any rate, which
/// is what lets several writers converge to fair shares. In rows it is `C × rows per request`.
pub const C_REQUESTS: f64 = 0.4;
/// Fast convergence applies when an event's rate is below this share of the previous `W_max`.
/// A writer alone at its quota is cut on the convex side, at or above `W_max`; a writer that shares
/// the quota is cut while still climbing back to it, or on the plateau just below it, when the
/// other writer grows. What each writer forgets here is one of the three forces that bring
/// shares together (the others are a later cut's depth, see `throttled`, and the request size,
/// see [`RateController::request_rows`]); at 0.9 the rule rarely fired and two writers kept a
/// 1:2 split for a whole run.
const FAST_CONVERGENCE: f64 = 0.98;
/// Start-up is over once this passes between two congestion events.
const SETTLE: Duration = Duration::from_secs(1);
/// How often the curve and the measured rate are brought up to date.
const TICK: Duration = Duration::from_millis(250);
/// Weight of the newest sample of the accepted rate.
const SMOOTH: f64 = 0.5;
/// The fill rate never goes below this, rows/s.
const MIN_RATE: f64 = 1.0;
/// The first event ends a ramp when the server took less than this share of the fill rate.
const RAMP: f64 = 0.9;
/// After a ramp-ending first event, the curve climbs from the floor it held towards this many
/// times it: the ramp doubled its rate every round trip, so the rate that drew the throttle was up
/// to one doubling above the floor, and the quota lies between them.
const RAMP_TARGET: f64 = 2.0;
/// The window of the first event's accepted rate.
const RECENT: Duration = Duration::from_millis(250);
/// Time a sleeping sender may wake late without losing its tokens; the bucket is at least this
/// much of the rate. The server's burst is larger (a tenth of a second of quota at a strict one).
const TIMER_SLACK: Duration = Duration::from_millis(25);
/// The ceiling is paced at this share of `rows_per_second`. A writer held exactly at a strict
/// server's quota keeps the server's bucket empty whenever another writer's request arrives: that
/// writer is refused every time and the first one never hears of it (measured: a second process
/// got nothing for ten seconds). 2% below, the bucket refills between requests and a newcomer
/// gets in, which throttles the incumbent, and both converge.
const HEADROOM: f64 = 0.98;
/// A grant's random delay is at most this share of its own interval (see `acquire`); the
/// pacing rate is unchanged (tokens are taken at the grant).
const JITTER: f64 = 0.25;
/// Two requests that carry at most this much of the rate, seconds, leave at a random point of
/// their whole interval, not of its first quarter (see `acquire`): a strict server's burst is a
/// tenth of a second of quota.
const PAIR_SPAN: f64 = 0.09;
/// Longest random delay of a grant once the server has pushed back (see `acquire`).
const MAX_JITTER: Duration = Duration::from_millis(100);
/// Longest single sleep of a waiting sender: it re-checks after a rate change.
const MAX_NAP: Duration = Duration::from_millis(100);
/// A request carries at most this much of the current rate, at the reference rate (below).
const REQUEST_SPAN: Duration = Duration::from_millis(50);
/// ... and at least this many rows (fewer only when the batch has fewer).
const MIN_REQUEST_ROWS: usize = 10;
/// The reference rate when there is no ceiling: the documented default quota, rows/s.
const REFERENCE_RATE: f64 = 1500.0;
/// Below the reference, a request's span and a later cut's depth shrink with the rate, down to
/// this share of them.
const SPAN_FLOOR: f64 = 0.25;

/// Paces rows; finds the quota below an optional ceiling. Cheap to share behind an `Arc`.
pub struct RateController {
    /// `[rate] rows_per_second` (or the async one): the curve never goes above it.
    ceiling: Option<f64>,
    /// Bucket size: one largest request. A request never waits for more than one request's worth
    /// of burst, and the server never sees a burst from this process.
    capacity: f64,
    /// The rate at which a request carries the whole [`REQUEST_SPAN`]: the ceiling, or
    /// [`REFERENCE_RATE`]. The same for every writer of a collection with the same configuration.
    reference: f64,

    state: Mutex<State>,
}

struct State {
    /// False until the first throttle when there is no ceiling: sends are not gated.
    paced: bool,
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// The curve's target: the rate at the last congestion event (after fast convergence), or
    /// after a ramp-ending first event, [`RAMP_TARGET`] times the floor it held.
    w_max: f64,
    /// Seconds from the cut back to `w_max`.
    k: f64,
    /// The curve's scaling constant in rows/s/s³ (see [`RateController::scale`]).
    c: f64,
    /// Where the curve starts (the last cut), moved forward while the bucket is not what limits.
    epoch: Instant,
    last_cut: Option<Instant>,
    paused_until: Option<Instant>,
    tick_start: Instant,
    tick_rows: f64,
    /// Some sender waited for tokens during this tick: the bucket is the bottleneck.
    tick_waited: bool,
    /// Accepted rows/s, smoothed.
    measured: f64,
    started: Instant,
    accepted_total: f64,
    /// Answers of the last [`RECENT`], oldest first: what the server took just now, for the first
    /// congestion event (the smoothed rate lags a ramp by a tick or more).
    recent: VecDeque<(Instant, f64)>,
    sent_total: f64,
    cuts: u64,
    /// Grants a cut overtook before their request left (see `acquire`).
    voided: u64,
    /// Rows accepted since the last cut.
    cut_rows: f64,
    /// The fill rate the last cut set.
    cut_rate: f64,
    /// A whole [`SETTLE`] passed between two events: start-up is over.
    settled: bool,
}

impl std::fmt::Debug for RateController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateController")
            .field("ceiling", &self.ceiling)
            .field("rate", &self.current_rate())
            .finish()
    }
}

/// CUBIC's constant in rows: [`C_REQUESTS`] × rows per request, but never less than if a request
/// were a twentieth of a second of `w_max`: with one-row requests (a vectorize collection) the
/// request-based constant alone would take tens of seconds to find a quota of a few hundred rows.
fn scale(capacity: f64, w_max: f64) -> f64 {
    C_REQUESTS * capacity.max(w_max / MIN_REQUESTS_PER_SECOND)
}

/// See [`scale`].
const MIN_REQUESTS_PER_SECOND: f64 = 20.0;

/// Appends `rows` at `now` to a window of the last [`RECENT`], dropping what is older.
fn remember(window: &mut VecDeque<(Instant, f64)>, now: Instant, rows: f64) {
    while window
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RECENT)
    {
        window.pop_front();
    }
    window.push_back((now, rows));
}

/// Rows per second in `window` over the last [`RECENT`] before `now` (or `since_start`, if
/// shorter).
fn window_rate(window: &VecDeque<(Instant, f64)>, now: Instant, since_start: f64) -> f64 {
    let rows: f64 = window
        .iter()
        .filter(|(t, _)| now.saturating_duration_since(*t) <= RECENT)
        .map(|(_, rows)| rows)
        .sum();
    rows / RECENT.as_secs_f64().min(since_start)
}

impl RateController {
    /// `ceiling` rows/s (0 = none); `max_request_rows`: the largest request (the bucket size).
    pub fn new(ceiling: u32, max_request_rows: usize) -> RateController {
        let now = Instant::now();
        let ceiling = (ceiling > 0).then_some(f64::from(ceiling) * HEADROOM);
        let capacity = max_request_rows.max(1) as f64;
        let rate = ceiling.unwrap_or(0.0);
        let c = scale(capacity, rate);
        let k = (rate * (1.0 - BETA) / c).cbrt();
        RateController {
            ceiling,
            capacity,
            reference: ceiling.unwrap_or(REFERENCE_RATE * HEADROOM),
            state: Mutex::new(State {
                paced: ceiling.is_some(),
                rate,
                tokens: capacity,
                refilled: now,
                w_max: rate,
                k,
                c,
                // Start on the plateau: at the ceiling, probing upward (and capped there).
                epoch: now.checked_sub(Duration::from_secs_f64(k)).unwrap_or(now),
                last_cut: None,
                paused_until: None,
                tick_start: now,
                tick_rows: 0.0,
                tick_waited: false,
                measured: 0.0,
                started: now,
                accepted_total: 0.0,
                recent: VecDeque::new(),
                sent_total: 0.0,
                cuts: 0,
                voided: 0,
                cut_rows: 0.0,
                cut_rate: rate,
                settled: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `rows` rows may be sent; returns the moment the request may leave (its send
    /// time, after the grant's random delay, which tells congestion events apart).
    pub async fn acquire(&self, rows: usize) -> Instant {
        loop {
            let (granted, cuts, jitter) = self.grant(rows).await;
            if jitter.is_zero() {
                return granted;
            }
            tokio::time::sleep(jitter).await;
            let mut s = self.lock();
            // A cut came while this grant waited for its random moment: the server's bucket was
            // empty then, and a request of the old rate would most likely be refused as part of
            // the same event (a refused call the account sees). It waits again, as a request
            // after the cut; its tokens stay spent, as the cut drained the bucket. So does a
            // grant that a `Retry-After` pause overtook: it waits for the pause's end.
            let paused = s.paused_until.is_some_and(|p| p > Instant::now());
            if s.cuts != cuts || paused {
                s.sent_total -= rows as f64;
                s.voided += 1;
                tracing::trace!(rows, voided = s.voided, "grant overtaken by a cut");
                continue;
            }
            return Instant::now();
        }
    }

    /// Waits for the tokens of `rows` rows; returns the moment of the grant, the number of cuts
    /// until then, and the random delay before the request may leave.
    async fn grant(&self, rows: usize) -> (Instant, u64, Duration) {
        let need = rows as f64;
        loop {
            let nap = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.paused_until {
                    Some(p) if p > now => p - now,
                    _ => {
                        self.tick(&mut s, now);
                        if !s.paced {
                            s.sent_total += need;
                            return (now, s.cuts, Duration::ZERO);
                        }
                        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
                        // The bucket holds one request, or a few milliseconds of the rate when
                        // requests are small: a one-row bucket at 200 rows/s refills every 5 ms,
                        // and every late wake-up of a waiting sender would lose the tokens that
                        // overflowed it (measured: 17% of the rate).
                        let burst = self.capacity.max(s.rate * TIMER_SLACK.as_secs_f64());
                        s.tokens = (s.tokens + s.rate * elapsed).min(burst);
                        s.refilled = now;
                        // A request larger than the bucket waits for a full bucket, then goes
                        // into debt: the tokens only ever go negative by less than a request.
                        let want = need.min(self.capacity);
                        if s.tokens >= want {
                            s.tokens -= need;
                            s.sent_total += need;
                            // A grant leaves at a random point of the first quarter of its own
                            // interval. Exactly paced requests of a first writer arrive just as
                            // the server's bucket refills, and a second writer's find it empty
                            // every time (measured: three cuts for the newcomer in 0.6 s, none for
                            // the incumbent, which kept the whole quota for 10 s); with a random
                            // phase, who is refused goes with the share of the rate. A strict
                            // server's burst (0.1 s) absorbs the quarter interval: at the exact
                            // quota, still 0 throttles.
                            //
                            // When two requests together carry at most PAIR_SPAN of the rate,
                            // the point is random over the whole interval: even two requests that
                            // leave together fit in a strict server's burst. A writer sharing a
                            // quota is below the ceiling, where requests are small (see
                            // `request_rows`), and the whole interval breaks the phase that
                            // kept one writer's requests just behind another's. A writer alone at
                            // the ceiling keeps the quarter (two of its requests are 0.1 s of it).
                            let interval = need / s.rate.max(MIN_RATE);
                            let share = if 2.0 * need <= PAIR_SPAN * s.rate { 1.0 } else { JITTER };
                            let spread = (share * interval).min(MAX_JITTER.as_secs_f64());
                            let jitter = Duration::from_secs_f64(spread * rand::random::<f64>());
                            return (now, s.cuts, jitter);
                        }
                        s.tick_waited = true;
                        Duration::from_secs_f64(((want - s.tokens) / s.rate.max(MIN_RATE)).max(0.001))
                    }
                }
            };
            tokio::time::sleep(nap.min(MAX_NAP)).await;
        }
    }

    /// Brings the measured rate and the curve up to date, once a tick.
    fn tick(&self, s: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(s.tick_start);
        if elapsed < TICK {
            return;
        }
        let sample = s.tick_rows / elapsed.as_secs_f64();
        s.measured = if s.measured == 0.0 {
            sample
        } else {
            SMOOTH * sample + (1.0 - SMOOTH) * s.measured
        };
        if s.paced {
            if !s.tick_waited {
                // Nobody waited for tokens: the bucket is not what limits, so raising its rate
                // would be a guess. The curve pauses (its origin moves with time).
                s.epoch += elapsed;
            }
            s.rate = self.curve(s, now);
        }
        tracing::trace!(
            rate = s.rate,
            measured = s.measured,
            waited = s.tick_waited,
            "rate tick"
        );
        s.tick_start = now;
        s.tick_rows = 0.0;
        s.tick_waited = false;
    }

    fn curve(&self, s: &State, now: Instant) -> f64 {
        let x = now.saturating_duration_since(s.epoch).as_secs_f64() - s.k;
        let rate = s.w_max + s.c * x * x * x;
        rate.clamp(MIN_RATE, self.ceiling.unwrap_or(f64::MAX))
    }

    /// `rows` were accepted by the server (applied or refused as invalid: either way it took them).
    pub fn accepted(&self, rows: usize) {
        let mut s = self.lock();
        s.tick_rows += rows as f64;
        s.cut_rows += rows as f64;
        s.accepted_total += rows as f64;
        if s.cuts == 0 {
            remember(&mut s.recent, Instant::now(), rows as f64);
        }
    }

    /// The server throttled a request granted at `sent_at`. Cuts the rate once per congestion
    /// event: a request sent before the last cut was part of the event that caused it. Returns
    /// whether this throttle cut the rate. `retry_after` (already capped by the caller) pauses
    /// every sender.
    pub fn throttled(&self, sent_at: Instant, retry_after: Option<Duration>) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(after) = retry_after {
            let until = now + after;
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
        // The same event: a request sent before the last cut, or throttled within a tick of it
        // (the server's bucket is still empty, or another writer has not cut yet: a cascade of
        // cuts 50 ms apart would hand the whole quota to whoever started first).
        if s.last_cut
            .is_some_and(|cut| sent_at <= cut || now.saturating_duration_since(cut) < TICK)
        {
            return false;
        }
        let since_start = now.saturating_duration_since(s.started).as_secs_f64().max(0.05);
        let mut ramp = false;
        let base = if s.paced {
            // The first event: what the server took lately. From a ceiling far above the quota,
            // one event brings the rate to the quota's neighbourhood instead of a cut at a time.
            // Later events: β of the fill rate. Cutting from what the server took punishes the
            // writer whose requests happened to be refused: its measured rate drops, it is cut
            // deeper, is refused more, and two writers locked into whatever split the first
            // seconds gave (measured: one cut five times in 2.4 s down to 424 rows/s while the
            // other held 880).
            let measured = if s.measured > 0.0 { s.measured } else { s.rate };
            let mut base = if s.cuts == 0 { s.rate.min(measured) } else { s.rate };
            if let Some(cut) = s.last_cut {
                let since = now.saturating_duration_since(cut);
                let took = s.cut_rows / since.as_secs_f64();
                if since >= SETTLE {
                    s.settled = true;
                } else if !s.settled && took < BETA * s.cut_rate {
                    // Start-up overload: events in quick succession, and since the last one the
                    // server took less than even β of the rate that cut set (writers that all
                    // started at a ceiling far above a shared quota: three shards at 1,470 rows/s
                    // against 1,500 took five cuts, 1.5 s and ~40% of a run's refusals to come
                    // down). Of the rate the cut set, not of the rate the curve has reached since
                    // (never lower): after a ramp's hold the curve climbs fast, and what the server
                    // took during the climb could read as an overload and cut twice below the
                    // quota. Cut twice: β, then a later cut's depth (to 64% at the reference, 70%
                    // from 1,176 rows/s under a 1,500 ceiling). Not to what the server took: in the
                    // quarter second since the cut that depends on whose requests happened to be
                    // refused, and holding it turned a random split into the run's split (one q5
                    // run 34% apart). Never once settled: a writer then takes less mostly because
                    // its own requests were refused, and cutting it deeper would lock in an unfair
                    // split (see above).
                    base = BETA * s.rate;
                }
            }
            if s.cuts == 0 {
                // The first event usually ends a ramp (slow start, a ceiling far above the
                // quota): what the server took in the last quarter second is closer to its quota.
                let recent = window_rate(&s.recent, now, since_start);
                if s.measured == 0.0 && recent > 0.0 {
                    // Before the first tick nothing was measured, and the fill rate is the
                    // ceiling: what the server took since the start is all there is (a 100 rows/s
                    // quota under the default ceiling, 40 ms a request: the first throttle came at
                    // 0.13 s, and cutting from 1,470 rows/s took eight cuts, two seconds and 510
                    // refusals for 500 rows).
                    ramp = recent < RAMP * s.rate;
                    base = recent.min(s.rate);
                } else {
                    // A ramp: not yet paced by this bucket (concurrency was still growing).
                    ramp = recent > base && recent < RAMP * s.rate;
                    base = base.max(recent).min(s.rate);
                }
            }
            base
        } else {
            // The first throttle without a ceiling: nothing was paced yet. Start from what the
            // server accepted, or half of what was sent when nothing came back yet.
            let accepted = s.accepted_total / since_start;
            let sent = s.sent_total / since_start;
            accepted.max(sent * 0.5).max(self.capacity)
        };
        let base = base.min(self.ceiling.unwrap_or(f64::MAX));
        // Fast convergence (RFC 9438 §4.7): a flow cut below its previous maximum gives up some of
        // it, so that flows sharing the quota converge to fair shares.
        s.w_max = if s.cuts > 0 && base < FAST_CONVERGENCE * s.w_max {
            base * (1.0 + BETA) / 2.0
        } else {
            base
        };
        // The cut: 1 − β of the rate at the first event; after it, 1 − β of the rate at the
        // reference and less below it, in proportion (not below SPAN_FLOOR of it). A writer at
        // twice another's rate gives up four times the rows per second per cut, as under AIMD,
        // so writers sharing a quota converge; with equal ratios, CUBIC returns each writer to its
        // own W_max and a split drifts. A writer alone at the reference is cut by β as before.
        let depth = if s.cuts == 0 {
            1.0 - BETA
        } else {
            (1.0 - BETA) * self.share_of_reference(base)
        };
        s.rate = (base * (1.0 - depth)).max(MIN_RATE);
        // A cut never leaves the rate above W_max: below half the reference a later cut takes
        // less than fast convergence forgets, and the curve then starts at W_max, probing. (It
        // did so from the next tick before this was written down; measured either way, see
        // BENCHMARKS.md. Fast convergence with the cut's own depth, W_max = base · (1 − depth / 2),
        // was less fair in the simulation: a mean gap of 7.1% against 6.2%.)
        s.rate = s.rate.min(s.w_max);
        if ramp {
            // Still climbing when the server pushed back: what it took is a floor of its quota,
            // not a rate it refused. The window averages a rate that doubled every round trip,
            // and a throttle can come from the ramp's bursts before the average reaches the
            // quota, so the floor can be far below it (measured at 100 ms and 200 rows/s: the
            // server took 116-176 rows/s of the window; at 120 the last 100 ms had taken 160 at
            // concurrency 16, and the throttle came one round trip after the doubling to 32).
            // Hold the floor and climb towards the ramp's last doubling above it. Towards one cut
            // (β) or two (β²), the target lay below the quota whenever the floor was under 160
            // or 128, and CUBIC's plateau and slow convex start took seconds to pass 200 (q3 used
            // 91.6-94.8% in 4 of 111 runs). A quota below the target throttles the climb on its
            // way, which is an ordinary event.
            s.rate = base;
            s.w_max = (RAMP_TARGET * base).min(self.ceiling.unwrap_or(f64::MAX));
        }
        s.c = scale(self.capacity, s.w_max);
        s.k = ((s.w_max - s.rate).max(0.0) / s.c).cbrt();
        s.tokens = s.tokens.min(0.0);
        s.refilled = now;
        s.epoch = now;
        s.last_cut = Some(now);
        s.paced = true;
        s.cuts += 1;
        s.recent = VecDeque::new();
        s.cut_rows = 0.0;
        s.cut_rate = s.rate;
        tracing::debug!(base, ramp, rate = s.rate, w_max = s.w_max, k = s.k, "rate cut");
        true
    }

    /// The fill rate now, rows/s; `None` while unpaced (no ceiling and no throttle yet).
    pub fn current_rate(&self) -> Option<u32> {
        let s = self.lock();
        s.paced.then(|| s.rate.round() as u32)
    }

    /// Rows per request now, for a batch of `batch` rows: `rate × REQUEST_SPAN × rate /
    /// reference` (the span shrinks with the rate, down to [`SPAN_FLOOR`] of it), at least
    /// [`MIN_REQUEST_ROWS`], at most the batch; the whole batch while unpaced.
    ///
    /// Requests carry a bounded share of a second so that a server whose burst is a fraction of a
    /// second of quota always has room for one. The span shrinks with the rate for fairness
    /// between writers that share a quota without talking to each other: with a span of the same
    /// 50 ms, every writer sends ~20 requests a second whatever its share, is refused about as
    /// often and cut by the same ratio, and CUBIC returns each to its own `W_max`, so a split made
    /// at start-up stayed (4 of 13 q5 runs 21–32% apart). Here a writer at twice the
    /// other's rate sends requests four times as large, every twice as long: when the server's
    /// bucket runs low, its requests are the ones that do not fit, so the larger writer is cut
    /// more often and the shares converge; and writers at different rates have different
    /// periods, so no writer's requests stay locked just behind another's.
    pub fn request_rows(&self, batch: usize) -> usize {
        let batch = batch.max(1);
        let Some(rate) = self.current_rate().map(f64::from) else {
            return batch;
        };
        let span = REQUEST_SPAN.as_secs_f64() * self.share_of_reference(rate);
        ((rate * span) as usize).max(MIN_REQUEST_ROWS).min(batch)
    }

    /// `rate` as a share of the reference, between [`SPAN_FLOOR`] and 1: what scales a request's
    /// span and a later cut's depth.
    fn share_of_reference(&self, rate: f64) -> f64 {
        (rate / self.reference).clamp(SPAN_FLOOR, 1.0)
    }

    /// How many congestion events cut the rate.
    pub fn cuts(&self) -> u64 {
        self.lock().cuts
    }

    /// How many grants a cut overtook before their request left (they waited again).
    pub fn voided(&self) -> u64 {
        self.lock().voided
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn paces_rows_to_the_ceiling_with_one_request_of_burst() {
        let lim = RateController::new(2000, 100);
        let start = Instant::now();
        for _ in 0..10 {
            lim.acquire(100).await;
        }
        // 1000 rows at 2000/s with a 100-row bucket: 900 rows wait 0.45 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.44..0.50).contains(&took), "took {took}s");
        assert_eq!(lim.current_rate(), Some(1960), "2% below the ceiling");
    }

    #[tokio::test(start_paused = true)]
    async fn one_cut_per_congestion_event() {
        let lim = RateController::new(1000, 100);
        let before = lim.acquire(100).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(lim.throttled(before, None));
        let cut = (1000.0 * HEADROOM * BETA) as u32;
        assert_eq!(lim.current_rate(), Some(cut));
        // Another request sent before the cut is the same event.
        assert!(!lim.throttled(before, None));
        assert_eq!(lim.current_rate(), Some(cut));
        // A request sent after the cut but throttled within a tick of it is the same event (the
        // server's bucket has not refilled yet).
        tokio::time::advance(Duration::from_millis(100)).await;
        let soon = lim.acquire(100).await;
        assert!(!lim.throttled(soon, None));
        assert_eq!(lim.cuts(), 1);
        // Later, a request sent after the cut and throttled again is a new event.
        tokio::time::advance(Duration::from_millis(300)).await;
        let after = lim.acquire(100).await;
        assert!(lim.throttled(after, None));
        assert!(lim.current_rate().is_some_and(|r| r < cut));
        assert_eq!(lim.cuts(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn later_cuts_are_of_the_fill_rate_not_of_what_the_server_took() {
        let lim = RateController::new(1000, 100);
        let first = lim.acquire(100).await;
        assert!(lim.throttled(first, None));
        // Two seconds in which the server took only a quarter of what was sent (another writer
        // got the rest): a cut from the measured rate would go far below β of the fill rate.
        for i in 0..40 {
            lim.acquire(25).await;
            if i % 4 == 0 {
                lim.accepted(25);
            }
        }
        let before = f64::from(lim.current_rate().expect("paced"));
        let sent = lim.acquire(25).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(lim.throttled(sent, None));
        let after = f64::from(lim.current_rate().expect("paced"));
        // Near the reference (980 rows/s), so about β of the fill rate.
        let expected = 1.0 - (1.0 - BETA) * (before / (1000.0 * HEADROOM)).clamp(SPAN_FLOOR, 1.0);
        assert!((after / before - expected).abs() < 0.01, "{before} -> {after}");
        assert!(after / before < 0.85, "{before} -> {after}");
    }

    /// A settled controller at `rate` with `w_max`, cut by one throttle: (rate, W_max) after it.
    async fn later_cut(rate: f64, w_max: f64) -> (f64, f64) {
        let lim = RateController::new(1500, 100);
        let now = Instant::now();
        {
            let mut s = lim.lock();
            s.rate = rate;
            s.w_max = w_max;
            s.cuts = 5;
            s.settled = true;
            s.last_cut = now.checked_sub(Duration::from_secs(2));
            s.cut_rows = 2.0 * rate;
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(lim.throttled(now, None));
        let after = lim.lock().rate;
        // The next idle tick leaves it where the cut put it (no second step down).
        tokio::time::advance(TICK).await;
        lim.acquire(1).await;
        let ticked = lim.lock().rate;
        assert!((ticked - after).abs() < 1e-6 || ticked > after, "{after} -> {ticked}");
        (after, lim.lock().w_max)
    }

    #[tokio::test(start_paused = true)]
    async fn a_faster_writer_gives_up_more_of_its_rate_per_cut() {
        let reference = 1500.0 * HEADROOM;
        let cut = |rate: f64| rate * (1.0 - (1.0 - BETA) * (rate / reference).clamp(SPAN_FLOOR, 1.0));
        // Cut on the curve's plateau (no fast convergence): 1 − β of the rate at the reference,
        // less below it in proportion, never less than SPAN_FLOOR of that.
        for (rate, expected) in [
            (900.0, 789.8),
            (450.0, 422.4),
            (200.0, 190.0),
            (reference, reference * BETA),
        ] {
            let (after, w_max) = later_cut(rate, rate).await;
            assert!((after - expected).abs() < 0.1, "{rate}: {after}, expected {expected}");
            assert!((after - cut(rate)).abs() < 1e-6);
            assert_eq!(w_max, rate);
        }
        // A writer at 900 gives up 110 rows/s, one at 450 gives up 28: four times as many.
        let (fast, slow) = (900.0 - cut(900.0), 450.0 - cut(450.0));
        assert!((fast / slow - 4.0).abs() < 0.01, "{fast} vs {slow}");
        // Cut below its W_max, fast convergence forgets part of it (W_max = base · (1 + β) / 2):
        // the rate never stays above the new W_max, so a writer below half the reference gives
        // up 10% there, and one above it its own deeper cut.
        let (after, w_max) = later_cut(450.0, 600.0).await;
        assert!(
            (w_max - 405.0).abs() < 1e-6 && (after - 405.0).abs() < 1e-6,
            "{after} {w_max}"
        );
        let (after, w_max) = later_cut(900.0, 1200.0).await;
        assert!(
            (w_max - 810.0).abs() < 1e-6 && (after - cut(900.0)).abs() < 1e-6,
            "{after} {w_max}"
        );
    }

    /// `n` senders of 10 rows each, granted at once; returns 1 ms later, while those with a
    /// later random moment still wait for it.
    async fn grants_in_flight(lim: &Arc<RateController>, n: usize) -> Vec<tokio::task::JoinHandle<Instant>> {
        let tasks = (0..n)
            .map(|_| {
                let lim = lim.clone();
                tokio::spawn(async move { lim.acquire(10).await })
            })
            .collect();
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(1)).await;
        tasks
    }

    /// The moments the senders' requests left.
    async fn send_times(tasks: Vec<tokio::task::JoinHandle<Instant>>) -> Vec<Instant> {
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.expect("grant"));
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_that_a_cut_overtakes_waits_again() {
        // Ten 10-row requests granted at once from a full 100-row bucket, each leaving at a
        // random point of its 10 ms interval; a cut 1 ms later. Those still waiting then would
        // reach an empty server bucket: they wait again, for tokens at the cut rate.
        let lim = Arc::new(RateController::new(1000, 100));
        let start = Instant::now();
        let tasks = grants_in_flight(&lim, 10).await;
        assert!(lim.throttled(start, None));
        let cut = Instant::now();
        let rate = f64::from(lim.current_rate().expect("paced"));
        let sent = send_times(tasks).await;
        let refill = Duration::from_secs_f64(10.0 / rate);
        let early: Vec<_> = sent.iter().filter(|t| **t <= cut).collect();
        let late: Vec<_> = sent
            .iter()
            .filter(|t| **t > cut)
            .map(|t| t.duration_since(cut))
            .collect();
        assert_eq!(early.len() + late.len(), 10);
        assert_eq!(lim.voided(), late.len() as u64, "{late:?}");
        assert!(!late.is_empty(), "some grants were still waiting at the cut");
        for after in &late {
            assert!(
                *after >= refill,
                "left {after:?} after the cut, before new tokens ({refill:?})"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_that_a_pause_overtakes_waits_for_its_end() {
        // A throttle that is part of the last cut's event (no new cut) but carries Retry-After:
        // grants still waiting for their random moment leave only after the pause.
        let lim = Arc::new(RateController::new(1000, 100));
        let first = lim.acquire(10).await;
        assert!(lim.throttled(first, None));
        tokio::time::advance(Duration::from_millis(200)).await;
        let tasks = grants_in_flight(&lim, 5).await;
        assert!(
            !lim.throttled(first, Some(Duration::from_millis(300))),
            "the same event"
        );
        let paused = Instant::now();
        let sent = send_times(tasks).await;
        let during: Vec<_> = sent
            .iter()
            .filter(|t| **t > paused && **t < paused + Duration::from_millis(300))
            .collect();
        assert!(during.is_empty(), "left during the pause: {during:?}");
        assert!(lim.voided() > 0, "some grants were still waiting at the pause");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_event_that_ends_a_ramp_holds_what_the_server_took() {
        // A 2-row bucket under a 1,500 ceiling, concurrency still growing: the server takes
        // what it is sent, 100 rows/s, then 200, then throttles.
        let lim = RateController::new(1500, 2);
        for step in 0..40u64 {
            let rows = if step < 20 { 1 } else { 2 };
            lim.acquire(rows).await;
            lim.accepted(rows);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let sent = lim.acquire(2).await;
        assert!(lim.throttled(sent, None));
        // The last quarter second took ~200 rows/s (less the grants' random delays): a floor of
        // the quota, held (not cut by β), and the climb's target is the ramp's last doubling.
        let (rate, w_max) = {
            let s = lim.lock();
            (s.rate, s.w_max)
        };
        assert!((150.0..=210.0).contains(&rate), "{rate}");
        assert!((w_max - RAMP_TARGET * rate).abs() < 0.01, "{rate} towards {w_max}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_ramp_floor_climbs_past_the_quota_within_seconds() {
        // q3's worst start (one-row requests, a 200 rows/s quota, the concurrency doubling every
        // 100 ms): the server took 60 rows/s in the first tick and 120 in the last quarter
        // second, when the doubling's burst drew a throttle.
        let lim = RateController::new(1500, 1);
        for (count, gap) in [(15, 1000 / 60), (30, 1000 / 120)] {
            for _ in 0..count {
                lim.acquire(1).await;
                lim.accepted(1);
                tokio::time::advance(Duration::from_millis(gap)).await;
            }
        }
        let sent = lim.acquire(1).await;
        assert!(lim.throttled(sent, None));
        let floor = lim.lock().rate;
        assert!((100.0..=130.0).contains(&floor), "{floor}");
        // A server that takes what it is sent: the bucket is what limits. Towards two cuts above
        // the floor (187.5) the curve stayed under 200 for 3.7 s (q3 used 94.8% at a floor of
        // 124); towards the last doubling it passes 200 by 1.5 s, and 2 × 120 = 240 bounds it.
        let cut = Instant::now();
        while cut.elapsed() < Duration::from_millis(1500) {
            lim.acquire(1).await;
            lim.accepted(1);
        }
        let rate = lim.lock().rate;
        assert!((200.0..=2.0 * floor).contains(&rate), "{floor} -> {rate} at 1.5 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_before_the_first_tick_holds_what_the_server_took() {
        // Under a 1,500 ceiling, the server took 10 one-row requests in the first 0.1 s and then
        // refused one: nothing has been measured yet (the first tick is at 0.25 s).
        let lim = RateController::new(1500, 1);
        for _ in 0..10 {
            lim.acquire(1).await;
            lim.accepted(1);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let sent = lim.acquire(1).await;
        assert!(lim.throttled(sent, None));
        // ~100 rows/s held as a floor, not 80% of the ceiling (1,176).
        let rate = lim.current_rate().expect("paced");
        assert!((80..=110).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_climb_after_a_ramp_is_cut_once_not_as_an_overload() {
        // The ramp's bursts drew a throttle: the server took a quarter of the 8-row requests
        // sent every 10 ms in the last quarter second.
        let lim = RateController::new(1500, 8);
        for step in 0..40u64 {
            lim.acquire(8).await;
            lim.accepted(if step < 15 { 1 } else { 2 });
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let sent = lim.acquire(8).await;
        assert!(lim.throttled(sent, None));
        let rate = lim.lock().rate;
        assert!((130.0..=210.0).contains(&rate), "{rate}");
        // Climbing towards twice that floor, the server takes three rows of four: more
        // than β of the rate the cut set, less than β of the rate the curve reached. Not a
        // start-up overload: one ordinary cut.
        let until = Instant::now() + Duration::from_millis(900);
        while Instant::now() < until {
            lim.acquire(4).await;
            lim.accepted(3);
        }
        let before = lim.lock().rate;
        assert!(before > rate * 1.2, "{rate} -> {before}: the climb");
        let sent = lim.acquire(4).await;
        assert!(lim.throttled(sent, None));
        let after = lim.lock().rate;
        // An ordinary later event: fast convergence keeps 90% of the rate (a double cut: 72%).
        assert!(after > 0.85 * before, "{before} -> {after}");
    }

    #[tokio::test(start_paused = true)]
    async fn late_wake_ups_do_not_lose_tokens_of_a_small_bucket() {
        // 200 rows/s, one-row requests: the bucket refills every 5 ms. A sender that comes back
        // 20 ms late finds the 4 rows it missed, not just one.
        let lim = RateController::new(200, 1);
        lim.acquire(1).await;
        tokio::time::advance(Duration::from_millis(20)).await;
        for _ in 0..4 {
            lim.acquire(1).await;
        }
        // Without the slack, the second to fourth waited for their tokens (5 ms each). Elapsed
        // time cannot tell: grants of one row leave at a random point of their whole 5 ms.
        assert!(!lim.lock().tick_waited, "a sender waited for tokens it had earned");
    }

    #[tokio::test(start_paused = true)]
    async fn the_curve_returns_to_the_old_rate_after_k_and_probes_above_it() {
        let lim = RateController::new(0, 10);
        // Unpaced until the first throttle.
        assert_eq!(lim.current_rate(), None);
        for _ in 0..50 {
            let at = lim.acquire(10).await;
            lim.accepted(10);
            tokio::time::advance(Duration::from_millis(10)).await;
            let _ = at;
        }
        let sent = lim.acquire(10).await;
        assert!(lim.throttled(sent, None));
        let first = lim.current_rate().expect("paced") as f64;
        // ~1000 rows/s accepted: cut to β of it.
        assert!((900.0 * BETA..1100.0 * BETA).contains(&first), "{first}");
        // Keep the bucket the bottleneck (always someone waiting for tokens): the curve climbs.
        let w_max = first / BETA;
        let k = ((w_max - first) / scale(10.0, w_max)).cbrt();
        let cut_at = Instant::now();
        let mut samples = Vec::new();
        while cut_at.elapsed().as_secs_f64() < 2.0 * k {
            lim.acquire(10).await;
            lim.accepted(10);
            samples.push((
                cut_at.elapsed().as_secs_f64(),
                lim.current_rate().expect("paced") as f64,
            ));
        }
        let near = |t: f64| {
            samples
                .iter()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .map(|s| s.1)
                .expect("samples")
        };
        let at_k = near(k);
        assert!(
            (at_k - w_max).abs() / w_max < 0.05,
            "back to W_max at K: {at_k} vs {w_max}"
        );
        assert!(near(k / 2.0) < at_k, "concave below W_max");
        let last = near(2.0 * k);
        // The curve gives 1.2 × W_max at 2K; the rate moves once a tick (250 ms), and a tick at
        // this slope (~280 rows/s/s) is 0.07 × W_max (measured: 1.19–1.20, and 1.137 in 1 of 40
        // runs, which failed CI at 1.15).
        assert!(last > w_max * 1.1, "probes above: {last} vs {w_max}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_curve_never_passes_the_ceiling() {
        let lim = RateController::new(500, 10);
        let sent = lim.acquire(10).await;
        lim.throttled(sent, None);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            lim.acquire(10).await;
            lim.accepted(10);
            assert!(lim.current_rate().is_some_and(|r| r <= 500));
        }
        assert_eq!(
            lim.current_rate(),
            Some(490),
            "back at the ceiling (less 2%) after a minute"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_does_not_climb() {
        let lim = RateController::new(1000, 100);
        let sent = lim.acquire(100).await;
        lim.throttled(sent, None);
        let cut = lim.current_rate();
        // Nobody waits for tokens for 20 s: the curve pauses.
        for _ in 0..80 {
            tokio::time::advance(Duration::from_millis(250)).await;
            lim.accepted(1);
            lim.acquire(1).await;
        }
        assert_eq!(lim.current_rate(), cut);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_every_sender() {
        let lim = RateController::new(0, 100);
        let sent = lim.acquire(1).await;
        lim.throttled(sent, Some(Duration::from_millis(300)));
        let start = Instant::now();
        lim.acquire(1).await;
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_larger_than_the_bucket_still_go() {
        let lim = RateController::new(50, 10);
        lim.acquire(500).await;
        lim.acquire(5).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_up_overload_cuts_twice_and_settled_cuts_do_not() {
        // Three writers started at the 1,500 ceiling against a 1,500 quota: after the first cut
        // (to 1,176), the server takes ~500 rows/s of this one.
        let lim = RateController::new(1500, 100);
        let sent = lim.acquire(100).await;
        assert!(lim.throttled(sent, None));
        let cut = f64::from(lim.current_rate().expect("paced"));
        assert!((cut - 1500.0 * HEADROOM * BETA).abs() < 1.0, "{cut}");
        for _ in 0..8 {
            tokio::time::advance(Duration::from_millis(50)).await;
            lim.accepted(25);
        }
        let sent = lim.acquire(25).await;
        assert!(lim.throttled(sent, None));
        let twice = f64::from(lim.current_rate().expect("paced"));
        // 200 rows in 0.4 s = 500 rows/s < β of the rate: two cuts at once. The first takes
        // 1 − β (to 941); the second, a later event's, takes 1 − β of the rate at the reference
        // (1,470) and less below it: 941 × (1 − 0.2 × 941 / 1,470) = 820.
        let once = cut * BETA;
        let expected = once * (1.0 - (1.0 - BETA) * once / (1500.0 * HEADROOM));
        assert!((twice - expected).abs() < 2.0, "{twice} vs {expected}");
        assert!(twice < 0.9 * once, "{twice}");
        // Settled (a second without an event), the same shortfall is an ordinary cut.
        for _ in 0..30 {
            tokio::time::advance(Duration::from_millis(50)).await;
            lim.accepted(5);
        }
        let before = f64::from(lim.current_rate().expect("paced"));
        let sent = lim.acquire(5).await;
        assert!(lim.throttled(sent, None));
        let after = f64::from(lim.current_rate().expect("paced"));
        let expected = 1.0 - (1.0 - BETA) * before / (1500.0 * HEADROOM);
        assert!((after / before - expected).abs() < 0.01, "{before} -> {after}");
    }

    /// A strict server's bucket: `quota` rows/s, holding at most `burst` rows.
    struct StrictServer {
        quota: f64,
        burst: f64,
        tokens: f64,
        at: Instant,
    }

    impl StrictServer {
        fn take(&mut self, rows: usize) -> bool {
            let now = Instant::now();
            let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.quota;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.at = now;
            let fits = self.tokens >= rows as f64;
            if fits {
                self.tokens -= rows as f64;
            }
            fits
        }
    }

    /// Writers that share a strict server (1,500 rows/s, a tenth of a second of burst), each
    /// with its own controller at the default ceiling: requests sized and paced by it, round trips
    /// of 1–5 ms, a refused request's rows sent again. The second and later writers start `join`
    /// after the first. Returns each writer's rows taken in `[join + from, join + secs)`.
    async fn share_a_strict_server(writers: usize, join: f64, from: f64, secs: f64) -> Vec<f64> {
        let start = Instant::now();
        let server = Arc::new(Mutex::new(StrictServer {
            quota: 1500.0,
            burst: 150.0,
            tokens: 150.0,
            at: start,
        }));
        let count_from = start + Duration::from_secs_f64(join + from);
        let until = start + Duration::from_secs_f64(join + secs);
        let tasks: Vec<_> = (0..writers)
            .map(|i| {
                let server = server.clone();
                tokio::spawn(async move {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(join)).await;
                    }
                    let lim = RateController::new(1500, 100);
                    let mut counted = 0.0;
                    while Instant::now() < until {
                        let rows = lim.request_rows(100);
                        let sent = lim.acquire(rows).await;
                        let trip = 0.001 + 0.004 * rand::random::<f64>();
                        tokio::time::sleep(Duration::from_secs_f64(trip)).await;
                        if server.lock().map(|mut s| s.take(rows)).unwrap_or(false) {
                            lim.accepted(rows);
                            if Instant::now() >= count_from {
                                counted += rows as f64;
                            }
                        } else {
                            lim.throttled(sent, None);
                        }
                    }
                    counted
                })
            })
            .collect();
        let mut taken = Vec::new();
        for task in tasks {
            taken.push(task.await.expect("writer"));
        }
        taken
    }

    #[tokio::test(start_paused = true)]
    async fn writers_sharing_a_strict_server_converge_to_fair_shares() {
        // Two writers that start together (bench/flow.py's q5), and a newcomer beside a writer
        // that had the quota to itself for 5 s, 80 simulated runs each. One run's gap
        // (|a − b| / max) is noisy, so the test is on the mean. With requests of the same 50 ms
        // of every writer's rate, the mean over 30 runs was 23–28% (17–22 of 30 runs over 20%).
        // With the span shrinking with the rate, 13–18% (8–13 of 30). With small requests
        // also leaving at a random point of their whole interval, 8.7–10.4% (3–8 of 80). With a
        // later cut taking less below the reference (a faster writer gives up more), 6.1–6.8%
        // (0–2 of 80) in six runs; the limit of 8.5% fails most runs of the rules before it.
        for (scenario, join, from, secs) in [("together", 0.0, 0.0, 20.0), ("newcomer", 5.0, 5.0, 25.0)] {
            let mut gaps = Vec::new();
            for _ in 0..80 {
                let taken = share_a_strict_server(2, join, from, secs).await;
                let (hi, lo) = (taken[0].max(taken[1]), taken[0].min(taken[1]));
                let used = (hi + lo) / (secs - from) / 1500.0;
                assert!(used >= 0.9, "{scenario}: together {:.1}% of the quota", 100.0 * used);
                gaps.push(100.0 * (hi - lo) / hi);
            }
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            assert!(mean < 8.5, "{scenario}: mean gap {mean:.1}%: {gaps:.0?}");
        }
    }

    #[test]
    fn a_request_carries_a_span_that_shrinks_with_the_rate() {
        // Unpaced (no ceiling, no throttle yet): the whole batch.
        assert_eq!(RateController::new(0, 100).request_rows(100), 100);
        // At the ceiling (1,470 rows/s paced): 50 ms of it.
        let lim = RateController::new(1500, 100);
        assert_eq!(lim.request_rows(100), 73);
        assert_eq!(lim.request_rows(40), 40, "never more than the batch");
        // At 1,000 rows/s: 50 ms × 1,000/1,470 of it, 34 rows (not 50).
        lim.lock().rate = 1000.0;
        assert_eq!(lim.request_rows(100), 34);
        // At 400: 5 rows by the span, but at least 10.
        lim.lock().rate = 400.0;
        assert_eq!(lim.request_rows(100), 10);
        // Far below a high ceiling (an async quota of 15,000 found at 2,000): the span stops
        // shrinking at a quarter of 50 ms, 25 rows (not 14).
        let lim = RateController::new(15_000, 100);
        lim.lock().rate = 2000.0;
        assert_eq!(lim.request_rows(100), 25);
        // No ceiling: the documented default quota is the reference.
        let lim = RateController::new(0, 100);
        {
            let mut s = lim.lock();
            s.paced = true;
            s.rate = 735.0;
        }
        assert_eq!(lim.request_rows(100), 18);
    }
}
