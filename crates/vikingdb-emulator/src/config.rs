//! The emulator's `--collections FILE` format (TOML) and its conversion to [`EmulatorConfig`].
//!
//! Owns: the file format, its defaults and its checks (unknown keys are refused).
//! Never: reads the environment or files (the CLI does), or prints a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::{
    AccessKey, CollectionSpec, DEFAULT_ASYNC_VISIBLE_AFTER_MS, DEFAULT_QUOTA_BURST_SECONDS, EmulatorConfig,
    FaultConfig, UpdateMissing,
};
use vikingdb_types::FieldType;

/// The documented default row quota of a collection (rows/s, upsert+update+delete).
const DEFAULT_QUOTA: u32 = 1500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    update_missing: UpdateMissing,
    #[serde(default = "default_skew")]
    max_clock_skew_secs: u64,
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default = "default_burst")]
    quota_burst_seconds: f64,
    #[serde(default)]
    async_quota_rows_per_second: Option<u32>,
    #[serde(default = "default_async_visible")]
    async_visible_after_ms: u64,
    #[serde(default)]
    throttle_retry_after_ms: Option<u64>,
    #[serde(default)]
    keys: Vec<AccessKey>,
    #[serde(default)]
    faults: FaultConfig,
    #[serde(default)]
    collections: Vec<CollectionEntry>,
}

fn default_skew() -> u64 {
    15 * 60
}

fn default_burst() -> f64 {
    DEFAULT_QUOTA_BURST_SECONDS
}

fn default_async_visible() -> u64 {
    DEFAULT_ASYNC_VISIBLE_AFTER_MS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectionEntry {
    name: String,
    primary_key: String,
    fields: BTreeMap<String, FieldType>,
    #[serde(default)]
    dim: Option<usize>,
    #[serde(default)]
    vectorize: bool,
    #[serde(default = "default_quota")]
    quota_rows_per_second: u32,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    alias: Option<String>,
}

fn default_quota() -> u32 {
    DEFAULT_QUOTA
}

impl EmulatorConfig {
    /// Parses the `--collections FILE` format. Unknown keys anywhere are an error.
    ///
    /// ```toml
    /// seed = 42                    # fault RNG seed (default 0)
    /// update_missing = "error"     # update of a missing key: "error" | "ignore" | "upsert"
    /// max_clock_skew_secs = 900    # allowed X-Date skew (default 15 min)
    /// api_keys = ["my-api-key"]    # V2 `Authorization: Bearer` keys (default none)
    /// quota_burst_seconds = 0.1    # bucket capacity = max(quota × this, 1) rows (default 0.1)
    /// async_quota_rows_per_second = 15000 # async upsert bucket per collection
    ///                              # (default 10 × quota_rows_per_second; 0 = unlimited)
    /// async_visible_after_ms = 1000 # async upserts land this long after the request (default 1000)
    /// throttle_retry_after_ms = 500 # send Retry-After on 429s (default: no header)
    ///
    /// [[keys]]                     # AK/SK pairs (default none; VIKINGDB_AK/SK env adds one)
    /// access_key = "AK..."
    /// secret_key = "SK..."
    /// session_token = "STS..."     # optional: requests must then send X-Security-Token
    ///
    /// [faults]                     # all optional, default no faults
    /// error_before = 0.0           # P(500, not applied) per write request
    /// error_after = 0.0            # P(applied, then 500)
    /// drop_connection = 0.0        # P(connection closed, before or after applying)
    /// latency_ms = 0               # delay on every data-plane request ...
    /// jitter_ms = 0                # ... plus uniform 0..=jitter_ms
    /// slow = 0.0                   # P(extra slow_ms delay) per write request
    /// slow_ms = 0
    /// packed_big_endian = false    # read packed float32s as big-endian (other values stored)
    /// fetch_hides_vectors = false  # fetch answers leave vector fields out
    /// packed_refused = false       # V2 refuses packed vectors, as V1 does
    ///
    /// [[collections]]
    /// name = "docs"
    /// primary_key = "id"           # must be a field of type int64 or string
    /// dim = 4                      # optional vector dimension, checked on write
    /// vectorize = false            # true: ≤ 1 row per upsert/update, no vector field
    /// quota_rows_per_second = 1500 # sync write bucket, default 1500 (the documented quota); 0 = unlimited
    /// resource_id = "vdb-docs"     # optional V2 locator
    /// alias = "docs_alias"         # optional V1 locator (collection_alias)
    /// [collections.fields]         # every field, the primary key included
    /// id = "string"
    /// vec = "vector"
    /// tags = "list<string>"
    /// ```
    ///
    /// If the file declares no `keys` and no `api_keys` (and the CLI finds no VIKINGDB_AK/SK),
    /// authentication is disabled.
    pub fn from_toml_str(s: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(s).context("invalid emulator collections file")?;
        let config = EmulatorConfig {
            collections: file
                .collections
                .into_iter()
                .map(|c| CollectionSpec {
                    name: c.name,
                    primary_key: c.primary_key,
                    fields: c.fields,
                    dim: c.dim,
                    vectorize: c.vectorize,
                    quota_rows_per_second: c.quota_rows_per_second,
                    resource_id: c.resource_id,
                    alias: c.alias,
                })
                .collect(),
            keys: file.keys,
            api_keys: file.api_keys,
            faults: file.faults,
            seed: file.seed,
            update_missing: file.update_missing,
            max_clock_skew: Duration::from_secs(file.max_clock_skew_secs),
            quota_burst_seconds: file.quota_burst_seconds,
            async_quota_rows_per_second: file.async_quota_rows_per_second,
            async_visible_after: Duration::from_millis(file.async_visible_after_ms),
            throttle_retry_after: file.throttle_retry_after_ms.map(Duration::from_millis),
        };
        if config.collections.is_empty() {
            anyhow::bail!("the emulator collections file declares no [[collections]]");
        }
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}
