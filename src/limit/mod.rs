//! Flow control: how fast rows may go (the rate controller) and how many requests may be on the
//! wire at once (the concurrency controller), both found from what the server says.
//!
//! Owns: [`RateController`] — a token bucket in rows, one per collection and write path (sync,
//! async), shared by every sender, whose fill rate follows a CUBIC curve driven by throttles —
//! and [`ConcurrencyController`] — AIMD on round-trip times, in the manner of Vector's adaptive
//! request concurrency. docs/rate-control.md documents both algorithms and their constants.
//! Never: sends, retries, reads response bodies, or counts anything but rows and requests.

mod concurrency;
mod rate;

pub use concurrency::{ConcurrencyController, INITIAL as INITIAL_CONCURRENCY, InFlight, Outcome};
pub use rate::RateController;
