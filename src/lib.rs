//! vikingsync: keeps Volcengine VikingDB collections in step with data files.
//!
//! Data flows one way: `source` (readers) → `schema`/`record` (typed rows) → `batch` → `limit` →
//! `client` (API shapes, typed wire errors, sending, retry) → `ack` (which rows are done, in
//! memory) → `checkpoint` (the durable, locked state directory) / `deadletter`; acknowledgements
//! flow back from `client` through `pipeline` to `batch` (per-key order) and `ack`. `pipeline`
//! wires the stages; `report` counts and shows; `service` runs passes of the pipeline as a
//! daemon (`serve`: watching, `/healthz`, `/readyz`, `/metrics`); `secret` holds keys so that
//! nothing prints them. The vocabulary shared with the emulator (field
//! types, ops, primary keys, API versions, the request limit, SignerV4) lives in `vikingdb-types`;
//! the library never imports `vikingdb-emulator` (only the binary does, for the demo). See
//! docs/architecture.md.
#![forbid(unsafe_code)]

pub mod ack;
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
pub mod secret;
pub mod service;
pub mod source;
