//! The VikingDB client, layered like a sink: `api` shapes requests and reads responses,
//! `vikingdb_types::sign` signs them, `send` sends with retry and isolates refused rows.
//!
//! Owns: everything that touches the wire. Never: reads sources or writes state files.
pub mod api;
pub mod send;

pub use api::{Locator, ServerError};
pub use send::{BatchResult, SendError, Sender, Target};
