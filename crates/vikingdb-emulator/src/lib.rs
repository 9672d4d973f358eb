//! A local VikingDB data plane over HTTP, for integration tests (in-process, on an ephemeral
//! loopback port), the demo (`target.emulator = true`) and `vikingsync emulator`. The full
//! reference is the crate's README.md.
//!
//! # What it shares with vikingsync, and what it checks on its own
//!
//! Shared through `vikingdb-types` (one definition, used by both sides): the field type names and
//! their parsing ([`FieldType`], so `list<string>` means the same in both configs), the write
//! operations (`Op`), primary keys (`PrimaryKey`), the 100 rows/ids per request limit
//! (`MAX_ROWS_PER_REQUEST`) and SignerV4 (`vikingdb_types::sign`: canonical request, hashing,
//! signing key derivation; the emulator verifies by recomputing the signature with the very code
//! vikingsync signs with, and the official SDK vectors pin that code).
//!
//! Re-implemented here on purpose, as an independent check of vikingsync's `schema` (a bug
//! copied into both would otherwise pass every test): value validation per field type
//! (`store::check_value`: integers, float32, lists, vector dimension, sparse vectors, unknown
//! fields, primary key 0 / `""`), the `date_time` rule (`store::parse_date_time`: RFC 3339), the
//! `geo_point` rule (`store::geo_point_ok`: `"lon,lat"` in range), the `image` URL rule (tos://,
//! http:// or https://), the upsert defaults, and the request shapes and envelopes of `http`.
//! It imports nothing of vikingsync.
//!
//! Owns: the emulator's public API (`start`, [`Emulator`], the config and stats types) and the
//! wiring of its parts: `config` (the `--collections` TOML file), `auth` (SignerV4 / API-key
//! verification), `store` (collections, validation, apply, TTL, quotas), `http` (routes,
//! envelopes, error codes, fault injection, admin endpoints) and `cli` (the subcommand).
//! Never: talks to a real VikingDB, writes to disk, or puts a secret key, session token or API key
//! into `Debug` output or logs. It is a local test tool: the `/admin/*` endpoints are
//! unauthenticated and nothing is persisted.
//!
//! # What it serves
//!
//! | API | Method and path | Auth |
//! |---|---|---|
//! | V2 | `POST /api/vikingdb/data/{upsert,update,delete,fetch_in_collection}` | SignerV4 service `vikingdb`, or `Authorization: Bearer <api_key>` |
//! | V2 | `GET /api/vikingdb/Ping` | none (200) |
//! | V1 | `POST /api/collection/{upsert_data,update_data,del_data}`, `GET /api/collection/fetch_data` (JSON body) | SignerV4 service `air` |
//! | V1 | `GET /api/viking_db/data/ping` | SignerV4 service `air` |
//! | admin | `GET /admin/stats`, `GET /admin/dump?collection=NAME`, `GET`/`PUT /admin/faults` | none |
//!
//! If `keys` and `api_keys` are both empty, authentication is disabled entirely.
//!
//! # Error codes
//!
//! | failure | HTTP | V1 `code` | V2 `code` |
//! |---|---|---|---|
//! | missing / garbled / wrong signature, unknown key, body hash mismatch, `X-Date` skew | 401 | 1000001 | `Unauthorized` |
//! | credential scope names the other API's service (`air` vs `vikingdb`) | 403 | 1000002 | `Forbidden` |
//! | required parameter missing | 400 | 1000003 | `MissingParameter` |
//! | any other invalid request (limits, types, unknown fields, PK 0/"", ttl) | 400 | 1000003 | `InvalidParameter` |
//! | collection (name / alias / resource_id) unknown | 400 / 404 | 1000005 | `NotFound.VikingdbCollection` |
//! | update of a missing key (`UpdateMissing::Error`) | 400 / 404 | 1000011 | `NotFound.Data` |
//! | row quota exceeded | 429 | 1000029 | `RequestLimitExceeded` |
//! | injected error / internal | 500 | 1000028 | `InternalServerError` |
//!
//! Every response carries a request id in its body (`request_id`) and in `X-Tt-Logid` (the
//! client's own `X-Tt-Logid` is echoed when it sends one).
//!
//! # Behaviours the docs leave open (decided here)
//!
//! - Validation refuses the whole request; nothing of it is applied. An empty `data` / `fields` /
//!   `ids` / `primary_keys` array is refused as invalid.
//! - `null` as a field value is a type error (send the field or leave it out).
//! - An int64 primary key may also be sent as a decimal string (the py-v2 docs do so for
//!   `__AUTO_ID__`); it is stored as a JSON integer. Ordinary int64 fields must be JSON integers.
//! - Strings and lists have no length limit here (docs disagree: 128 vs 256 bytes, list ≤ 32).
//! - Vectors are JSON arrays of numbers; V2 also takes a string, base64 of the elements' packed
//!   little-endian float32 (or, 8·dim bytes, float64) bytes, stored as the elements' exact values.
//!   `dim` is checked when set. A vectorize collection must not declare a `vector` field.
//! - Upsert fills missing fields with the documented defaults (int64 0, float32 0.0, string
//!   `"default"`, bool false, list<string> `["default"]`, list<int64> `[0]`); a missing vector,
//!   sparse_vector, text or image field refuses the request; missing date_time and geo_point
//!   fields stay absent.
//! - `ttl` is seconds from the time the request is applied; `null` or absent means 0 (never
//!   expires). An update's `ttl` (when the request has one; `null` counts as 0, as py-v1 sends it) replaces
//!   the record's TTL; an update without `ttl` keeps it. Expired records are invisible to
//!   fetch, dump, `records()` and update (lazy expiry).
//! - Quota: a strict token bucket in rows per collection, shared by sync upsert, update and
//!   delete of every client (`del_all` costs 1 row); fetch is not limited. Capacity =
//!   max(quota × `quota_burst_seconds`, 1) rows, full at start, refilled continuously at the
//!   quota. A request of n rows is admitted when tokens ≥ min(n, capacity), and then n is
//!   subtracted: a request bigger than the bucket is admitted only when the bucket is full and
//!   leaves a debt that must refill before anything else fits. Otherwise 429.
//! - `async: true` on an upsert (V2 `upsert`, V1 `upsert_data`) of a non-vectorize collection:
//!   validated at request time, paced by a second bucket (`async_quota_rows_per_second`, default
//!   10 × the sync quota, same rule), and applied `async_visible_after` later, in arrival order.
//!   `async: true` on update, delete or a vectorize collection is refused as invalid.
//! - Faults apply to write requests after authentication, validation and quota; latency and
//!   jitter apply to every data-plane request. A slow request sleeps either before or after
//!   applying (chosen at random, like `drop_connection`).
//! - V2 fetch returns every stored field (PK included) in `fields`; V1 fetch returns an array
//!   even for a scalar `primary_keys` (the docs show a map, but the official Python and Java V1
//!   SDKs read `data[0]`); a missing key yields just `{pk: value}`.

mod auth;
mod cli;
mod config;
mod http;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use vikingdb_types::FieldType;

pub use cli::{EmulatorArgs, run_cli};

/// One emulated collection.
///
/// `Default` is an unusable spec (no name, no fields); it exists so that struct literals can end
/// with `..Default::default()` and keep compiling when fields are added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    /// Name of the primary-key field; it must be in `fields` with type int64 or string.
    pub primary_key: String,
    /// Every field, the primary key included.
    pub fields: BTreeMap<String, FieldType>,
    /// Dimension of the `vector` field (checked on write when set).
    pub dim: Option<usize>,
    /// A vectorize collection: ≤ 1 row per upsert/update, no `vector` field.
    pub vectorize: bool,
    /// Rows per second shared by sync upsert, update and delete (a token bucket, see
    /// [`EmulatorConfig::quota_burst_seconds`]); 0 = unlimited.
    pub quota_rows_per_second: u32,
    /// V2 locator alternative to `collection_name`.
    pub resource_id: Option<String>,
    /// V1 locator alternative to `collection_name` (`collection_alias`).
    pub alias: Option<String>,
}

impl CollectionSpec {
    /// A collection with the given fields, no dimension check, no quota and no alternative names.
    pub fn new(name: &str, primary_key: &str, fields: &[(&str, FieldType)]) -> Self {
        CollectionSpec {
            name: name.to_string(),
            primary_key: primary_key.to_string(),
            fields: fields.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            dim: None,
            vectorize: false,
            quota_rows_per_second: 0,
            resource_id: None,
            alias: None,
        }
    }

    /// Checks that the spec is usable (PK declared with a PK type, vectorize without vector).
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() && self.resource_id.is_none() && self.alias.is_none() {
            return Err("a collection needs a name, resource_id or alias".into());
        }
        match self.fields.get(&self.primary_key) {
            None => Err(format!(
                "collection `{name}`: primary key `{}` is not among its fields",
                self.primary_key
            )),
            Some(t) if !t.can_be_primary_key() => Err(format!(
                "collection `{name}`: primary key `{}` has type {t}; it must be int64 or string",
                self.primary_key
            )),
            Some(_) if self.vectorize && self.fields.values().any(|t| *t == FieldType::Vector) => Err(format!(
                "collection `{name}`: a vectorize collection cannot have a vector field"
            )),
            Some(_) => Ok(()),
        }
    }
}

/// An AK/SK pair the emulator accepts (optionally with an STS session token).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Injected faults. Probabilities are in 0..=1 and are drawn per write request (upsert, update,
/// delete); `latency_ms` + a uniform `0..=jitter_ms` delay every data-plane request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Answer 500 without applying.
    pub error_before: f64,
    /// Apply, then answer 500.
    pub error_after: f64,
    /// Close the connection without a valid response, before or after applying (50/50).
    pub drop_connection: f64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Probability of an extra `slow_ms` delay (to exceed a client's timeout).
    pub slow: f64,
    pub slow_ms: u64,
    /// A server that reads a packed (base64) vector's float32s as big-endian: it takes them and
    /// stores other values (what a client that guessed the byte order wrong would meet).
    pub packed_big_endian: bool,
    /// Fetch answers leave vector fields out (a server whose fetch does not return vectors).
    pub fetch_hides_vectors: bool,
    /// V2 refuses packed (base64) vectors, as V1 does.
    pub packed_refused: bool,
}

impl FaultConfig {
    /// Checks that every probability is a number in 0..=1.
    pub fn check(&self) -> Result<(), String> {
        for (name, p) in [
            ("error_before", self.error_before),
            ("error_after", self.error_after),
            ("drop_connection", self.drop_connection),
            ("slow", self.slow),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("fault `{name}` must be a probability in 0..=1, got {p}"));
            }
        }
        Ok(())
    }

    /// The same faults with every probability clamped into 0..=1 (NaN becomes 0).
    fn clamped(mut self) -> Self {
        for p in [
            &mut self.error_before,
            &mut self.error_after,
            &mut self.drop_connection,
            &mut self.slow,
        ] {
            *p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        }
        self
    }
}

/// What an update of a key that does not exist (or has expired) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMissing {
    /// Refuse the whole request (V1 1000011 "data not found", V2 `NotFound.Data`).
    #[default]
    Error,
    /// Skip the row; the rest of the request applies (counted in `rows_ignored_update`).
    Ignore,
    /// Insert the row as an upsert would (defaults filled, required fields checked).
    Upsert,
}

/// Everything `start` needs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub collections: Vec<CollectionSpec>,
    /// AK/SK pairs for SignerV4. With `api_keys`, both empty = authentication disabled.
    pub keys: Vec<AccessKey>,
    /// Bearer API keys accepted on the V2 data plane.
    pub api_keys: Vec<String>,
    pub faults: FaultConfig,
    /// Seed of the fault RNG (same seed and request order = same faults).
    pub seed: u64,
    pub update_missing: UpdateMissing,
    /// How far `X-Date` may be from the emulator's clock.
    pub max_clock_skew: Duration,
    /// Capacity of every quota bucket, in seconds of its quota: capacity = max(quota × this, 1)
    /// rows. Must be finite and > 0. Default 0.1.
    pub quota_burst_seconds: f64,
    /// Async upsert rows/s of each collection (a bucket separate from the sync one). `None` = 10 ×
    /// the collection's `quota_rows_per_second` (so unlimited when that is 0); `Some(0)` =
    /// unlimited.
    pub async_quota_rows_per_second: Option<u32>,
    /// How long after its request an async upsert becomes visible. Default 1 s.
    pub async_visible_after: Duration,
    /// When set, a throttle answer carries `Retry-After` with this delay (in seconds, with
    /// millisecond decimals). Default none, as real VikingDB is not documented to send one.
    pub throttle_retry_after: Option<Duration>,
}

/// Default of [`EmulatorConfig::quota_burst_seconds`].
pub const DEFAULT_QUOTA_BURST_SECONDS: f64 = 0.1;
/// Default of [`EmulatorConfig::async_visible_after`] (ms).
pub const DEFAULT_ASYNC_VISIBLE_AFTER_MS: u64 = 1000;
/// The async quota of a collection is this many times its sync quota unless configured.
pub const ASYNC_QUOTA_FACTOR: u32 = 10;

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            collections: Vec::new(),
            keys: Vec::new(),
            api_keys: Vec::new(),
            faults: FaultConfig::default(),
            seed: 0,
            update_missing: UpdateMissing::Error,
            max_clock_skew: Duration::from_secs(15 * 60),
            quota_burst_seconds: DEFAULT_QUOTA_BURST_SECONDS,
            async_quota_rows_per_second: None,
            async_visible_after: Duration::from_millis(DEFAULT_ASYNC_VISIBLE_AFTER_MS),
            throttle_retry_after: None,
        }
    }
}

impl EmulatorConfig {
    /// Checks the collections (valid specs, no duplicate locators), the burst and the faults.
    pub fn check(&self) -> Result<(), String> {
        let burst = self.quota_burst_seconds;
        if !(burst.is_finite() && burst > 0.0) {
            return Err(format!("quota_burst_seconds must be a finite number > 0, got {burst}"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.collections {
            c.check()?;
            let names = [Some(&c.name), c.resource_id.as_ref(), c.alias.as_ref()];
            for (kind, n) in ["name", "resource_id", "alias"].iter().zip(names) {
                if let Some(n) = n.filter(|n| !n.is_empty())
                    && !seen.insert((*kind, n.clone()))
                {
                    return Err(format!("two collections share the {kind} `{n}`"));
                }
            }
        }
        self.faults.check()
    }
}

/// Counters of what the emulator saw and did. Requests are data-plane requests (pings included,
/// admin endpoints not). "Rows applied" count rows that changed the store, whatever answer the
/// client got (an `error_after` request counts).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Stats {
    pub requests: u64,
    /// By operation: `upsert`, `update`, `delete`, `fetch`, `ping`.
    pub requests_by_op: BTreeMap<String, u64>,
    /// Outcomes (each request has exactly one).
    pub ok: u64,
    pub unauthorized: u64,
    pub forbidden: u64,
    pub invalid: u64,
    /// Collection not found.
    pub not_found: u64,
    /// Update of a missing key refused.
    pub data_not_found: u64,
    pub throttled: u64,
    /// 500s that were not injected (a failed handler).
    pub internal_errors: u64,
    pub injected_error_before: u64,
    pub injected_error_after: u64,
    /// `dropped_before_apply + dropped_after_apply`.
    pub dropped: u64,
    pub dropped_before_apply: u64,
    pub dropped_after_apply: u64,
    /// Requests that got a 4xx (nothing applied): the sum of the refusal outcomes above.
    pub refused_requests: u64,
    /// Requests that got the `slow` delay (whatever their outcome).
    pub slowed: u64,
    pub rows_applied_upsert: u64,
    pub rows_applied_update: u64,
    /// Keys deleted by id (whether they existed or not) plus records removed by `del_all`.
    pub rows_applied_delete: u64,
    /// Rows applied by requests that were then answered with an injected error or a dropped
    /// connection: the client cannot know they landed and will send them again.
    pub rows_applied_unacknowledged: u64,
    /// Update rows skipped because the key was missing (`UpdateMissing::Ignore`).
    pub rows_ignored_update: u64,
    pub del_all_applied: u64,
    /// Rows of requests refused by a quota bucket (sync or async).
    pub throttled_rows: u64,
    /// The part of `throttled_rows` refused by the async upsert bucket.
    pub throttled_rows_async: u64,
    /// Rows admitted by the sync bucket (sync upsert, update, delete; `del_all` counts 1).
    pub rows_accepted_sync: u64,
    /// Rows admitted by the async upsert bucket.
    pub rows_accepted_async: u64,
    /// Async upsert rows that reached the store (also counted in `rows_applied_upsert`).
    pub rows_applied_async: u64,
    /// Largest row count seen in one upsert or update request (counted once the body parses,
    /// refused requests included).
    pub largest_write_request_rows: u64,
    /// Largest id count seen in one delete request (same rule).
    pub largest_delete_request_rows: u64,
    /// Largest row / id count per operation (`upsert`, `update`, `delete`, `fetch`).
    pub largest_request_rows: BTreeMap<String, u64>,
    /// Vectors that came packed (V2 base64) in write requests that passed validation.
    pub packed_vectors: u64,
    pub collections: BTreeMap<String, CollectionStats>,
}

/// Per-collection counters, keyed by collection name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct CollectionStats {
    /// Requests that reached the collection (after auth and locating it).
    pub requests: u64,
    pub rows_applied_upsert: u64,
    pub rows_applied_update: u64,
    pub rows_applied_delete: u64,
    pub throttled_rows: u64,
    pub throttled_rows_async: u64,
    pub rows_accepted_sync: u64,
    pub rows_accepted_async: u64,
    pub rows_applied_async: u64,
    /// Live (unexpired) records when the stats were taken.
    pub live_records: u64,
    /// Async upsert rows accepted but not yet visible when the stats were taken.
    pub pending_async_rows: u64,
}

/// A running emulator. Dropping it stops the server too (without waiting).
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<http::Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator").field("addr", &self.addr).finish()
    }
}

/// Binds `listen` (port 0 picks a free port) and serves in a background task.
pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> std::io::Result<Emulator> {
    config
        .check()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(http::Shared::new(config));
    let router = http::router(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        // A dropped sender stops the server as well.
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "emulator server stopped with an error");
        }
    });
    tracing::debug!(%addr, "emulator listening");
    Ok(Emulator {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

impl Emulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (an unspecified listen address is reported as loopback).
    pub fn endpoint(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Replaces the faults (probabilities are clamped into 0..=1).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.set_faults(faults.clamped());
    }

    /// Waits until no async upsert is pending in any collection, applying each as it falls due
    /// (async writes that arrive meanwhile are waited for too). Returns at once when none is
    /// pending.
    pub async fn settle(&self) {
        while let Some(due) = self.shared.last_async_due() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            self.shared.apply_due_async();
        }
    }

    /// Async upsert rows accepted but not yet visible, over every collection.
    pub fn pending_async_rows(&self) -> u64 {
        self.shared.pending_async_rows()
    }

    /// Live (unexpired) records keyed by PK text (string PK as-is, int PK in decimal); `None` when
    /// no collection has that name (resource_id and alias are accepted too). Async upserts whose
    /// delay has passed are applied first; pending ones are not shown (see [`Emulator::settle`]).
    pub fn records(&self, collection: &str) -> Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>> {
        self.shared.records(collection)
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
