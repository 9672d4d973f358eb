//! vikingsync: keeps Volcengine VikingDB collections in step with data files.
//!
//! Data flows one way: `source` (readers) → `schema`/`record` (typed rows) → `batch` → `limit` →
//! `client` (signing, API shapes, sending, retry) → `ack` (which rows are done, in memory) →
//! `checkpoint` (the durable, locked state directory) / `deadletter`. `pipeline` wires the stages;
//! `report` counts and shows; `emulator` is a self-contained VikingDB data plane for tests and the
//! demo.
#![forbid(unsafe_code)]

pub mod ack;
pub mod batch;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod deadletter;
pub mod emulator;
pub mod limit;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod schema;
pub mod source;
