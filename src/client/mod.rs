//! The VikingDB client, layered like a sink: `api` shapes requests and parses envelopes, `retry`
//! types each failure ([`WireError`]) and decides what to do about it, `send` signs (with
//! `vikingdb_types::sign`) and sends with retry, and isolates refused rows; `check` tells whether
//! the server stores packed vectors exactly.
//!
//! Owns: everything that touches the wire. Never: reads sources or writes state files.
pub mod api;
pub mod check;
pub mod retry;
pub mod send;

pub use api::{Locator, ServerError};
pub use check::PackedCheck;
pub use retry::{Action, WireError};
pub use send::{BatchResult, Flow, SendError, Sender, Target};
