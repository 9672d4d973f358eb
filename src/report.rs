//! What the user sees: run counters, the progress bar, and the final summary.
//!
//! Owns: `Stats` (lock-free counters every stage bumps), the indicatif bar (only on a terminal),
//! and the summary with its invariant read = applied + rejected.
//! Never: decides anything about rows; it only counts and shows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::record::Op;

/// Upper bounds of the request-duration histogram, seconds.
pub const REQUEST_SECONDS_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Round trips of requests that got an HTTP answer, seconds (`/metrics`).
#[derive(Debug, Clone)]
pub struct RequestSeconds(pub prometheus_client::metrics::histogram::Histogram);

impl Default for RequestSeconds {
    fn default() -> Self {
        RequestSeconds(prometheus_client::metrics::histogram::Histogram::new(
            REQUEST_SECONDS_BUCKETS,
        ))
    }
}

/// Counters for one run (or one service). Cheap to bump from any task. The summary and
/// `/metrics` read the same counters, so they never disagree.
#[derive(Debug, Default)]
pub struct Stats {
    pub rows_read: AtomicU64,
    pub applied_upsert: AtomicU64,
    pub applied_update: AtomicU64,
    pub applied_delete: AtomicU64,
    pub rejected: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttles: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Rows the reader has parsed (it runs ahead of the senders).
    pub rows_parsed: AtomicU64,
    /// Rows skipped because a checkpoint says they were already done.
    pub rows_resumed: AtomicU64,
    /// Congestion events that cut the rate.
    pub rate_cuts: AtomicU64,
    /// The rate controller's fill rate after the latest request, rows/s (`u64::MAX`: unpaced).
    pub rate_now: AtomicU64,
    /// The in-flight limit after the latest request, and the highest it reached.
    pub concurrency_now: AtomicU64,
    pub concurrency_peak: AtomicU64,
    /// Rejected rows by op (`rejected` is their sum); `rejected_unknown`: rows that could not be
    /// read far enough to know their op.
    pub rejected_upsert: AtomicU64,
    pub rejected_update: AtomicU64,
    pub rejected_delete: AtomicU64,
    pub rejected_unknown: AtomicU64,
    /// Requests on the wire now.
    pub in_flight: AtomicU64,
    /// Answers by HTTP status; index 0 counts requests that got no HTTP answer (transport).
    pub requests_by_status: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    pub request_seconds: RequestSeconds,
    /// Rows applied or rejected that the last commit made durable (this process).
    pub rows_committed: AtomicU64,
    /// Files whose rows were all acknowledged and committed (this process).
    pub files_done: AtomicU64,
    /// Bytes of the files this process set out to read (for the ETA of `run`'s log lines).
    pub bytes_total: AtomicU64,
    /// The sequence number of the last checkpoint this process committed (0: none yet).
    pub checkpoint_seq: AtomicU64,
    /// How vectors went, when `vector_encoding = "auto"` checked (its verdict, in words).
    pub vectors: std::sync::Mutex<Option<String>>,
}

impl Stats {
    pub fn add_applied(&self, op: Op, n: u64) {
        match op {
            Op::Upsert => &self.applied_upsert,
            Op::Update => &self.applied_update,
            Op::Delete => &self.applied_delete,
        }
        .fetch_add(n, Relaxed);
    }

    pub fn add_rejected(&self, op: Option<Op>) {
        self.rejected.fetch_add(1, Relaxed);
        match op {
            Some(Op::Upsert) => &self.rejected_upsert,
            Some(Op::Update) => &self.rejected_update,
            Some(Op::Delete) => &self.rejected_delete,
            None => &self.rejected_unknown,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts one answer (`status` 0: none, a transport failure) and its round trip.
    pub fn observe_request(&self, status: u16, seconds: Option<f64>) {
        let mut by = self.requests_by_status.lock().unwrap_or_else(|e| e.into_inner());
        *by.entry(status).or_insert(0) += 1;
        drop(by);
        if let Some(s) = seconds {
            self.request_seconds.0.observe(s);
        }
    }

    /// Records the flow controllers' state after a request (`rate`: `None` = unpaced).
    pub fn observe_flow(&self, rate: Option<u32>, concurrency: usize) {
        self.rate_now.store(rate.map_or(u64::MAX, u64::from), Relaxed);
        self.concurrency_now.store(concurrency as u64, Relaxed);
        self.concurrency_peak.fetch_max(concurrency as u64, Relaxed);
    }

    pub fn applied(&self) -> u64 {
        self.applied_upsert.load(Relaxed) + self.applied_update.load(Relaxed) + self.applied_delete.load(Relaxed)
    }

    pub fn snapshot(&self, elapsed: Duration) -> Summary {
        let applied = self.applied();
        Summary {
            rows_read: self.rows_read.load(Relaxed),
            applied,
            applied_upsert: self.applied_upsert.load(Relaxed),
            applied_update: self.applied_update.load(Relaxed),
            applied_delete: self.applied_delete.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttles: self.throttles.load(Relaxed),
            elapsed_secs: elapsed.as_secs_f64(),
            rows_resumed: self.rows_resumed.load(Relaxed),
            rate_cuts: self.rate_cuts.load(Relaxed),
            rate_now: match self.rate_now.load(Relaxed) {
                u64::MAX => None,
                r => Some(r),
            },
            concurrency_now: self.concurrency_now.load(Relaxed),
            concurrency_peak: self.concurrency_peak.load(Relaxed),
            vectors: self.vectors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            rows_per_second: if elapsed.as_secs_f64() > 0.0 {
                (applied + self.rejected.load(Relaxed)) as f64 / elapsed.as_secs_f64()
            } else {
                0.0
            },
        }
    }
}

/// The end-of-run numbers, printed and logged.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub rows_read: u64,
    pub applied: u64,
    pub applied_upsert: u64,
    pub applied_update: u64,
    pub applied_delete: u64,
    pub rejected: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttles: u64,
    pub elapsed_secs: f64,
    pub rows_per_second: f64,
    /// Rows a checkpoint said were already done, not read again.
    pub rows_resumed: u64,
    /// Congestion events that cut the rate.
    pub rate_cuts: u64,
    /// The rate controller's fill rate at the end, rows/s (`None`: never paced: no ceiling and no
    /// throttle).
    pub rate_now: Option<u64>,
    /// The in-flight limit at the end, and the highest it reached.
    pub concurrency_now: u64,
    pub concurrency_peak: u64,
    /// How vectors went, when `vector_encoding = "auto"` checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<String>,
}

impl Summary {
    /// Every row read is applied or rejected (rows still ahead of a checkpoint are not read).
    pub fn balanced(&self) -> bool {
        self.rows_read == self.applied + self.rejected
    }

    pub fn render(&self) -> String {
        format!(
            "rows read      {}\n\
             applied        {} (upsert {}, update {}, delete {})\n\
             rejected       {}\n\
             requests       {} ({} retries, {} throttled)\n\
             elapsed        {:.2}s\n\
             throughput     {:.0} rows/s\n\
             flow           rate {} at the end ({} cuts), concurrency {} (peak {})\n\
             check          read = applied + rejected: {}{}{}",
            self.rows_read,
            self.applied,
            self.applied_upsert,
            self.applied_update,
            self.applied_delete,
            self.rejected,
            self.requests,
            self.retries,
            self.throttles,
            self.elapsed_secs,
            self.rows_per_second,
            self.rate_now
                .map_or_else(|| "unpaced".to_string(), |r| format!("{r} rows/s")),
            self.rate_cuts,
            self.concurrency_now,
            self.concurrency_peak,
            if self.balanced() { "ok" } else { "MISMATCH" },
            if self.rows_resumed > 0 {
                format!(
                    "\nresumed        {} rows already done by earlier runs (from the checkpoint)",
                    self.rows_resumed
                )
            } else {
                String::new()
            },
            self.vectors
                .as_ref()
                .map_or_else(String::new, |v| format!("\nvectors        {v}")),
        )
    }
}

/// The progress bar: rows/s, rows done, ETA by bytes read. Hidden when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    pub fn new(total_bytes: u64, enabled: bool) -> Progress {
        let bar = if enabled {
            ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr_with_hz(5))
        } else {
            ProgressBar::hidden()
        };
        let style =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {percent:>3}% {msg} · ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    pub fn update(&self, stats: &Stats) {
        let done = stats.applied() + stats.rejected.load(Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        // The reader runs ahead of the senders: count the bytes of the rows that are finished.
        let parsed = stats.rows_parsed.load(Relaxed).max(1);
        let fraction = (done as f64 / parsed as f64).min(1.0);
        self.bar
            .set_position((stats.bytes_read.load(Relaxed) as f64 * fraction) as u64);
        self.bar.set_message(format!(
            "{done} rows ({} rejected) · {:.0} rows/s",
            stats.rejected.load(Relaxed),
            done as f64 / secs
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
