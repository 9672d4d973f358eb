//! vikingsync: keeps Volcengine VikingDB collections in step with data files.
//!
//! Data flows one way: `source` (readers) → `schema`/`record` (typed rows) → `batch` → `limit` →
//! `client` (signing, API shapes, sending, retry) → `checkpoint` / `deadletter`. `pipeline` wires
//! the stages; `report` counts and shows. The vocabulary shared with the emulator (field types,
//! ops, primary keys, API versions, the request limit, SignerV4) lives in `vikingdb-types`; the
//! library never imports `vikingdb-emulator` (only the binary does, for the demo).
#![forbid(unsafe_code)]

pub mod batch;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod deadletter;
pub mod limit;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod schema;
pub mod source;
