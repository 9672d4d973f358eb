//! The ranges `Config::check` enforces (documented in `docs/config.md`, "Allowed ranges"), the
//! checks that apply them, and the `Duration` accessors that hand durations out.
//!
//! Owns: every numeric bound of the config. Never: panics on a value, checked or not.

use std::time::Duration;

use super::{RetryConfig, ServeConfig, StateConfig, Target};

/// The allowed range of a duration key, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct SecsRange {
    pub min: f64,
    pub max: f64,
    /// `max` in words, for messages.
    pub max_words: &'static str,
}

/// `request_timeout`, `connect_timeout`: 1 ms to 1 day.
pub const TIMEOUT: SecsRange = SecsRange {
    min: 0.001,
    max: 86_400.0,
    max_words: "1 day",
};
/// `initial_backoff`, `max_backoff`: 1 ms to 1 hour.
pub const BACKOFF: SecsRange = SecsRange {
    min: 0.001,
    max: 3_600.0,
    max_words: "1 hour",
};
/// `max_elapsed`: 1 ms to 7 days.
pub const MAX_ELAPSED: SecsRange = SecsRange {
    min: 0.001,
    max: 604_800.0,
    max_words: "7 days",
};
/// `[serve]` durations: 1 ms to 1 hour.
pub const SERVE: SecsRange = SecsRange {
    min: 0.001,
    max: 3_600.0,
    max_words: "1 hour",
};
/// `commit_interval`: 1 ms to 1 hour.
pub const COMMIT_INTERVAL: SecsRange = SecsRange {
    min: 0.001,
    max: 3_600.0,
    max_words: "1 hour",
};
pub const MAX_CONCURRENCY: u64 = 1_024;
/// `[read] threads`.
pub const MAX_READ_THREADS: u64 = 256;
/// Rows per request: VikingDB's limit.
pub const MAX_BATCH_ROWS: u64 = vikingdb_types::MAX_ROWS_PER_REQUEST as u64;
pub const MAX_ROWS_PER_SECOND: u32 = 1_000_000;
pub const MAX_ATTEMPTS: u64 = 1_000;
pub const MAX_COMMIT_ROWS: u64 = 100_000_000;
pub const MAX_DIM: u64 = 65_536;
/// Seconds as a `Duration`, clamped into `range` (NaN and infinities included): never panics,
/// whether or not the value went through `Config::check`.
pub(super) fn clamped_secs(secs: f64, range: SecsRange) -> Duration {
    let s = if secs.is_nan() {
        range.min
    } else {
        secs.clamp(range.min, range.max)
    };
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(1))
}

/// A number of seconds as people write it: `30`, `0.2`, `1e300`, `nan`, `inf`.
pub(super) fn show_secs(secs: f64) -> String {
    if secs.is_nan() {
        "nan".into()
    } else if secs.is_infinite() {
        if secs > 0.0 { "inf".into() } else { "-inf".into() }
    } else if secs != 0.0 && !(1e-6..1e15).contains(&secs.abs()) {
        format!("{secs:e}")
    } else {
        format!("{secs}")
    }
}

pub(super) fn check_secs(key: &str, secs: f64, range: SecsRange) -> Result<(), String> {
    if secs.is_finite() && (range.min..=range.max).contains(&secs) {
        return Ok(());
    }
    Err(format!(
        "{key} = {} is out of range: it must be a number of seconds from {} to {} ({})",
        show_secs(secs),
        range.min,
        range.max,
        range.max_words
    ))
}

pub(super) fn check_count(key: &str, value: u64, min: u64, max: u64, why: &str) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "{key} = {value} is out of range: it must be from {min} to {max}{why}"
    ))
}

/// `scheme://host[:port]` that the HTTP client accepts (checked here so `validate` sees it too).
pub(super) fn check_endpoint(ep: &str) -> Result<(), String> {
    let bad = |why: String| format!("[target] endpoint `{ep}`: {why}; expected http(s)://host[:port]");
    let url = reqwest::Url::parse(ep).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.port() == Some(0) {
        return Err(bad("port 0 is not a port to connect to".into()));
    }
    Ok(())
}

impl Target {
    /// `request_timeout` as a `Duration`, clamped into its documented range.
    pub fn request_timeout(&self) -> Duration {
        clamped_secs(self.request_timeout, TIMEOUT)
    }

    /// `connect_timeout` as a `Duration`, clamped into its documented range.
    pub fn connect_timeout(&self) -> Duration {
        clamped_secs(self.connect_timeout, TIMEOUT)
    }
}

impl RetryConfig {
    /// The first backoff as a `Duration`, clamped into its documented range.
    pub fn initial_backoff(&self) -> Duration {
        clamped_secs(self.initial_backoff, BACKOFF)
    }

    /// The largest backoff as a `Duration`, clamped into its documented range.
    pub fn max_backoff(&self) -> Duration {
        clamped_secs(self.max_backoff, BACKOFF)
    }

    /// The total backoff a request may sleep, as a `Duration`, clamped into its documented range.
    pub fn max_elapsed(&self) -> Duration {
        clamped_secs(self.max_elapsed, MAX_ELAPSED)
    }
}

impl StateConfig {
    /// The time between checkpoint commits as a `Duration`, clamped into its documented range.
    pub fn commit_interval(&self) -> Duration {
        clamped_secs(self.commit_interval, COMMIT_INTERVAL)
    }
}

impl ServeConfig {
    /// `settle` as a `Duration`, clamped into its documented range.
    pub fn settle(&self) -> Duration {
        clamped_secs(self.settle, SERVE)
    }
    /// `linger` as a `Duration`, clamped into its documented range.
    pub fn linger(&self) -> Duration {
        clamped_secs(self.linger, SERVE)
    }
    /// `rescan` as a `Duration`, clamped into its documented range.
    pub fn rescan(&self) -> Duration {
        clamped_secs(self.rescan, SERVE)
    }
    /// `drain_deadline` as a `Duration`, clamped into its documented range.
    pub fn drain_deadline(&self) -> Duration {
        clamped_secs(self.drain_deadline, SERVE)
    }
}
