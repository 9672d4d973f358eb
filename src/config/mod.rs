//! The run configuration (TOML): the public contract of `vikingsync run` and `validate`.
//!
//! Owns: parsing, `${VAR}` / `${VAR:-default}` interpolation, defaults, cross-field checks, and
//! loading credentials from the environment or from files.
//! Never: logs or formats a secret (`Secret` redacts itself), or reads data files.
//! Every key is documented in `docs/config.md`; unknown keys are an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::record::Op;
use crate::source::Format;
use vikingdb_types::FieldType;

mod credentials;
pub mod limits;
mod storage;

pub use credentials::Credentials;
use limits::{check_count, check_endpoint, check_secs};

/// A configuration problem, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("credentials: {0}")]
    Credentials(String),
}

pub use crate::secret::Secret;

pub use vikingdb_types::ApiVersion;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub target: Target,
    #[serde(default)]
    pub auth: AuthConfig,
    pub collection: CollectionConfig,
    #[serde(default)]
    pub rate: RateConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub state: StateConfig,
    /// Faults for the in-process emulator (`target.emulator = true`), kept as an opaque table:
    /// the binary that starts the emulator parses and checks it (see the emulator docs).
    #[serde(default)]
    pub emulator_faults: Option<toml::Table>,
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub serve: ServeConfig,
    /// `[storage]`: how `s3://` and `tos://` sources are reached (overrides the AWS environment).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The object storage clients, built on first use and shared by the clones of this config.
    #[serde(skip)]
    pub object_storage: Arc<std::sync::OnceLock<Arc<crate::source::object::Storage>>>,
    #[serde(default)]
    pub read: ReadConfig,
    /// Directory of the config file: relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Set by `serve`, never in the file: plain CSV/JSONL are read to their last complete line
    /// (a file still being appended to is followed, not cut mid-line).
    #[serde(skip)]
    pub follow: bool,
}

/// `[read]`: how rows are read and typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// Threads that type rows (coerce them to the schema and serialise them) beside the thread
    /// that reads them; 0 = one per available core (at most 8), 1 = typed on the reading thread.
    #[serde(default)]
    pub threads: usize,
}

impl ReadConfig {
    /// The typing threads to start: `threads`, or one per available core (at most 8).
    pub fn typing_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            n => n,
        }
    }
}

/// `[serve]`: the long-running service (`vikingsync serve`). Durations in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (`--listen` overrides it).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A new file that was not renamed into place is taken once its size and modification time
    /// have not changed for this long.
    #[serde(default = "default_settle")]
    pub settle: f64,
    /// After a change is noticed, wait this long for more before sending, so a trickle of rows
    /// fills requests without being held back.
    #[serde(default = "default_linger")]
    pub linger: f64,
    /// The directories are listed again this often, whatever the file-system events say (inotify
    /// misses events on NFS and some overlay volumes).
    #[serde(default = "default_rescan")]
    pub rescan: f64,
    /// On SIGTERM/SIGINT, requests in flight get this long to finish before the final commit.
    #[serde(default = "default_drain_deadline")]
    pub drain_deadline: f64,
}

/// The default `[serve] listen` address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9898";

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
fn default_settle() -> f64 {
    2.0
}
fn default_linger() -> f64 {
    0.2
}
fn default_rescan() -> f64 {
    1.0
}
fn default_drain_deadline() -> f64 {
    10.0
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            settle: default_settle(),
            linger: default_linger(),
            rescan: default_rescan(),
            drain_deadline: default_drain_deadline(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `scheme://host[:port]`. Required unless `emulator = true`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_api")]
    pub api: ApiVersion,
    /// Start a VikingDB emulator in-process and sync into it (demo and tests; no account needed).
    #[serde(default)]
    pub emulator: bool,
    /// Seconds for a whole request, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: f64,
    /// Seconds to establish a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
}

fn default_region() -> String {
    "cn-beijing".into()
}
fn default_api() -> ApiVersion {
    ApiVersion::V2
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_connect_timeout() -> f64 {
    5.0
}

/// `[storage]`: where `s3://` and `tos://` sources live. Every key overrides the AWS environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, …). Key files are
/// paths, never secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `http(s)://host[:port]` of an S3-compatible server.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `"path"` or `"virtual"` (bucket in the host name). Default: path with an endpoint,
    /// virtual for tos:// and AWS.
    pub addressing: Option<crate::source::object::Addressing>,
    /// Allow an `http://` endpoint (tests, a server inside the cluster).
    pub allow_http: Option<bool>,
    pub access_key_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    /// Seconds for one request (a ranged GET of at most 4 MiB, a listing page), body included.
    pub request_timeout: Option<f64>,
}

/// Where credentials come from besides the environment. Values are file paths, never secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub access_key_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    /// V2 only: an API key sent as `Authorization: Bearer`; used instead of AK/SK signing.
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    pub name: Option<String>,
    /// V2 only: the collection's resource id, instead of `name`.
    pub resource_id: Option<String>,
    /// V1 only: a collection alias, instead of `name`.
    pub alias: Option<String>,
    pub primary_key: String,
    #[serde(default)]
    pub vectorize: bool,
    /// Dimension of the `vector` field, checked before sending when set.
    pub dim: Option<usize>,
    /// Send `ignore_unknown_fields` and drop fields the schema does not know instead of rejecting.
    #[serde(default)]
    pub ignore_unknown_fields: bool,
    /// Send upserts with `"async": true` (v2, not vectorize): paced by `[rate]
    /// async_rows_per_second`; rows become visible in the collection later (minutes).
    #[serde(default)]
    pub async_upsert: bool,
    /// How an upsert's vector read as numbers (a Parquet list) is sent: `"auto"` (the default:
    /// packed when the server is seen to store a packed vector exactly, else arrays), `"array"`
    /// (JSON numbers, always) or `"base64"` (V2 only: its packed little-endian float32 bytes,
    /// under half the text and no decimal formatting, unchecked). Updates and vectors read as text
    /// (CSV, JSONL) go as they are. When vectors go packed, a cell of such base64 text is also read
    /// as a vector.
    #[serde(default)]
    pub vector_encoding: VectorEncoding,
    pub fields: BTreeMap<String, FieldType>,
}

/// `[collection] vector_encoding`: the wire form of a vector held as `f32`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorEncoding {
    /// `Base64` once the server has been seen to store a packed vector exactly (one row upserted
    /// packed, then fetched back and compared bit for bit), else `Array`; V1 always `Array`.
    /// Until that is settled (and in the schema, which is only ever given a settled one), as
    /// `Array`.
    #[default]
    Auto,
    /// A JSON array of numbers, each the decimal text that reads back as the same `f32`.
    Array,
    /// V2's packed form: a JSON string, base64 of the elements' little-endian `f32` bytes.
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// A ceiling on the sync write rate, rows per second (writes, updates and deletes together;
    /// 0 = none). Below it, the rate controller finds the collection's real quota.
    #[serde(default = "default_rps")]
    pub rows_per_second: u32,
    /// The ceiling of async upserts (`[collection] async_upsert`), rows per second; 0 = none.
    #[serde(default = "default_async_rps")]
    pub async_rows_per_second: u32,
    /// Requests in flight: `"auto"` (adaptive) or a number that pins it.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// The most requests in flight `"auto"` may reach.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Rows per request (at most 100; writes to a vectorize collection always go one per request).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_rps() -> u32 {
    1500
}
fn default_async_rps() -> u32 {
    15_000
}
fn default_max_concurrency() -> usize {
    64
}

/// `[rate] concurrency`: adaptive, or pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    #[default]
    Auto,
    Fixed(u64),
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"auto\" or a whole number of requests from 1 to 1024"))?
        {
            Raw::Int(n) => Ok(Concurrency::Fixed(n)),
            Raw::Text(t) if t == "auto" => Ok(Concurrency::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "`{t}`: expected \"auto\" or a whole number of requests from 1 to 1024"
            ))),
        }
    }
}

impl Concurrency {
    /// The pinned number, if any.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Concurrency::Auto => None,
            Concurrency::Fixed(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }
}
fn default_batch_rows() -> usize {
    100
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            rows_per_second: default_rps(),
            async_rows_per_second: default_async_rps(),
            concurrency: Concurrency::Auto,
            max_concurrency: default_max_concurrency(),
            batch_rows: default_batch_rows(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: usize,
    /// Seconds of backoff a request may spend in total before the run stops.
    #[serde(default = "default_max_elapsed")]
    pub max_elapsed: f64,
    /// First backoff, seconds.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: f64,
    /// Largest backoff, seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: f64,
}

fn default_attempts() -> usize {
    10
}
fn default_max_elapsed() -> f64 {
    300.0
}
fn default_initial_backoff() -> f64 {
    0.2
}
fn default_max_backoff() -> f64 {
    10.0
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            max_elapsed: default_max_elapsed(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Holds `dead-letter.jsonl`, the checkpoint and the lock.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// Stop the run (exit 2) once more rows than this were rejected. Unset = no limit.
    pub max_rejected_rows: Option<u64>,
    /// Stop when this process alone has rejected more than this many rows (a CronJob's runs
    /// each start from zero here, while `max_rejected_rows` counts the whole backfill).
    #[serde(default)]
    pub max_rejected_rows_per_run: Option<u64>,
    /// Seconds between checkpoint commits.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: f64,
    /// Rows acknowledged between checkpoint commits.
    #[serde(default = "default_commit_rows")]
    pub commit_rows: u64,
    /// What to do when a source file changed under the same name since the checkpoint.
    #[serde(default)]
    pub on_change: OnChange,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_commit_interval() -> f64 {
    0.05
}
fn default_commit_rows() -> u64 {
    1000
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            max_rejected_rows: None,
            max_rejected_rows_per_run: None,
            commit_interval: default_commit_interval(),
            commit_rows: default_commit_rows(),
            on_change: OnChange::default(),
        }
    }
}

/// Policy for a source file whose content changed since its checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChange {
    /// Stop with an error naming the file.
    #[default]
    Error,
    /// Forget the old progress and read the file again from the start.
    Reprocess,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A file or glob, relative to the config file's directory.
    pub path: String,
    /// The op for every row; or use `op_column`.
    pub op: Option<Op>,
    /// Column holding each row's op (`update`, `upsert` or `delete`).
    pub op_column: Option<String>,
    /// Override the format detected from the extension.
    pub format: Option<Format>,
    /// CSV delimiter, one character.
    pub delimiter: Option<char>,
    /// Column renames: source column → field.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// TTL in seconds for every row of this source (0 = never expire).
    pub ttl: Option<u32>,
    /// Column holding each row's TTL in seconds.
    pub ttl_column: Option<String>,
}

impl Config {
    /// Reads, interpolates and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, path, base_dir)
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        interpolate(&mut value, &|name| std::env::var(name).ok()).map_err(parse_err)?;
        let mut config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        config.base_dir = base_dir;
        config.check().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn check(&mut self) -> Result<(), String> {
        let c = &self.collection;
        let locators = [&c.name, &c.resource_id, &c.alias]
            .iter()
            .filter(|l| l.is_some())
            .count();
        if locators != 1 {
            return Err("[collection] needs exactly one of `name`, `resource_id` (v2) or `alias` (v1)".into());
        }
        if c.resource_id.is_some() && self.target.api != ApiVersion::V2 {
            return Err("[collection] `resource_id` is a v2 locator; v1 uses `name` or `alias`".into());
        }
        if c.alias.is_some() && self.target.api != ApiVersion::V1 {
            return Err("[collection] `alias` is a v1 locator; v2 uses `name` or `resource_id`".into());
        }
        match c.fields.get(&c.primary_key) {
            None => {
                return Err(format!(
                    "[collection] primary_key `{}` is not declared in [collection.fields]",
                    c.primary_key
                ));
            }
            Some(t) if !t.can_be_primary_key() => {
                return Err(format!(
                    "[collection] primary_key `{}` must be int64 or string, not {t}",
                    c.primary_key
                ));
            }
            _ => {}
        }
        if !self.target.emulator && self.target.endpoint.is_none() {
            return Err("[target] needs `endpoint` (or `emulator = true` for a local emulator)".into());
        }
        if let Some(ep) = &self.target.endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(format!("[target] endpoint `{ep}` must start with http:// or https://"));
        }
        if let Some(ep) = &self.target.endpoint {
            check_endpoint(ep)?;
        }
        for (key, secs, limit) in [
            ("[target] request_timeout", self.target.request_timeout, limits::TIMEOUT),
            ("[target] connect_timeout", self.target.connect_timeout, limits::TIMEOUT),
            ("[retry] initial_backoff", self.retry.initial_backoff, limits::BACKOFF),
            ("[retry] max_backoff", self.retry.max_backoff, limits::BACKOFF),
            ("[retry] max_elapsed", self.retry.max_elapsed, limits::MAX_ELAPSED),
            ("[serve] settle", self.serve.settle, limits::SERVE),
            ("[serve] linger", self.serve.linger, limits::SERVE),
            ("[serve] rescan", self.serve.rescan, limits::SERVE),
            ("[serve] drain_deadline", self.serve.drain_deadline, limits::SERVE),
            (
                "[state] commit_interval",
                self.state.commit_interval,
                limits::COMMIT_INTERVAL,
            ),
        ] {
            check_secs(key, secs, limit)?;
        }
        check_count(
            "[read] threads",
            self.read.threads as u64,
            0,
            limits::MAX_READ_THREADS,
            " (0 = one per core)",
        )?;
        if let Concurrency::Fixed(n) = self.rate.concurrency {
            check_count("[rate] concurrency", n, 1, limits::MAX_CONCURRENCY, "")?;
        }
        check_count(
            "[rate] max_concurrency",
            self.rate.max_concurrency as u64,
            1,
            limits::MAX_CONCURRENCY,
            "",
        )?;
        if self.rate.async_rows_per_second > limits::MAX_ROWS_PER_SECOND {
            return Err(format!(
                "[rate] async_rows_per_second = {} is out of range: use 0 for no limit, or 1 to {}",
                self.rate.async_rows_per_second,
                limits::MAX_ROWS_PER_SECOND
            ));
        }
        if self.collection.vector_encoding == VectorEncoding::Base64 && self.target.api != ApiVersion::V2 {
            return Err(
                "[collection] vector_encoding = \"base64\" needs [target] api = \"v2\" (V1 takes vectors only as \
                 arrays of numbers): remove it, or set it to \"array\""
                    .into(),
            );
        }
        if self.collection.async_upsert {
            if self.target.api != ApiVersion::V2 {
                return Err("[collection] async_upsert needs [target] api = \"v2\"".into());
            }
            if self.collection.vectorize {
                return Err(
                    "[collection] async_upsert cannot be used with a vectorize collection (the service does not \
                     support async writes there)"
                        .into(),
                );
            }
            // An async upsert becomes visible minutes later: a delete or update of the same key sent
            // meanwhile would be undone by it. Async is for upsert-only backfills.
            for (i, src) in self.sources.iter().enumerate() {
                if src.op != Some(Op::Upsert) || src.op_column.is_some() {
                    return Err(format!(
                        "[collection] async_upsert is for upsert-only backfills, but [[sources]] #{} ({}) is not \
                         `op = \"upsert\"`: an async upsert becomes visible minutes later and would undo a delete \
                         or update of its key sent meanwhile. Run those sources without async_upsert",
                        i + 1,
                        src.path
                    ));
                }
            }
        }
        check_count(
            "[rate] batch_rows",
            self.rate.batch_rows as u64,
            1,
            limits::MAX_BATCH_ROWS,
            " (VikingDB's per-request limit)",
        )?;
        if self.rate.rows_per_second > limits::MAX_ROWS_PER_SECOND {
            return Err(format!(
                "[rate] rows_per_second = {} is out of range: use 0 for no limit, or 1 to {}",
                self.rate.rows_per_second,
                limits::MAX_ROWS_PER_SECOND
            ));
        }
        check_count(
            "[retry] max_attempts",
            self.retry.max_attempts as u64,
            1,
            limits::MAX_ATTEMPTS,
            "",
        )?;
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(format!(
                "[retry] initial_backoff ({} s) must not exceed max_backoff ({} s)",
                self.retry.initial_backoff, self.retry.max_backoff
            ));
        }
        check_count(
            "[state] commit_rows",
            self.state.commit_rows,
            1,
            limits::MAX_COMMIT_ROWS,
            "",
        )?;
        if let Some(dim) = self.collection.dim {
            check_count("[collection] dim", dim as u64, 1, limits::MAX_DIM, "")?;
        }
        if self.emulator_faults.is_some() && !self.target.emulator {
            return Err("[emulator_faults] applies only with [target] emulator = true".into());
        }
        if self.sources.is_empty() {
            return Err("at least one [[sources]] entry is needed".into());
        }
        self.check_storage()?;
        for (i, s) in self.sources.iter().enumerate() {
            let n = i + 1;
            match (&s.op, &s.op_column) {
                (Some(_), Some(_)) => return Err(format!("[[sources]] #{n}: set `op` or `op_column`, not both")),
                (None, None) if s.format == Some(Format::DeadLetter) => {}
                (None, None) => {
                    return Err(format!(
                        "[[sources]] #{n}: set `op` (update|upsert|delete) or `op_column`"
                    ));
                }
                _ => {}
            }
            if s.ttl.is_some() && s.ttl_column.is_some() {
                return Err(format!("[[sources]] #{n}: set `ttl` or `ttl_column`, not both"));
            }
            if let Some(d) = s.delimiter
                && !d.is_ascii()
            {
                return Err(format!("[[sources]] #{n}: delimiter must be a single ASCII character"));
            }
            for field in s.columns.values() {
                if !self.collection.fields.contains_key(field) && !self.collection.ignore_unknown_fields {
                    return Err(format!(
                        "[[sources]] #{n}: columns maps to `{field}`, which is not a declared field"
                    ));
                }
            }
        }
        for s in &mut self.sources {
            // A dead-letter file says each row's op, unless the source overrides it.
            if s.format == Some(Format::DeadLetter) && s.op.is_none() && s.op_column.is_none() {
                s.op_column = Some(crate::source::DEAD_LETTER_OP_COLUMN.to_string());
            }
        }
        if !self.state.dir.is_absolute() {
            self.state.dir = normalize(&self.base_dir.join(&self.state.dir));
        }
        Ok(())
    }

    /// `[target] request_timeout`, within its documented range.
    pub fn request_timeout(&self) -> Duration {
        self.target.request_timeout()
    }

    /// `[target] connect_timeout`, within its documented range.
    pub fn connect_timeout(&self) -> Duration {
        self.target.connect_timeout()
    }
}

/// `a/b/../c` → `a/c`, lexically (for paths shown to people).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string value. An unset variable without a
/// default is an error naming it; `$$` is a literal `$`.
pub fn interpolate(value: &mut toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate_str(s, env)?;
            Ok(())
        }
        toml::Value::Array(items) => items.iter_mut().try_for_each(|v| interpolate(v, env)),
        toml::Value::Table(t) => t.iter_mut().try_for_each(|(_, v)| interpolate(v, env)),
        _ => Ok(()),
    }
}

fn interpolate_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            // As in the shell, `${VAR:-default}` also takes the default when VAR is empty.
            match (env(name).filter(|v| !(v.is_empty() && default.is_some())), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable `{name}` is not set (used in `{s}`)")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[target]
endpoint = "https://api-vikingdb.vikingdb.cn-beijing.volces.com"
[collection]
name = "products"
primary_key = "f_id"
[collection.fields]
f_id = "string"
vec = "vector"
[[sources]]
path = "data/*.csv"
op = "upsert"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), PathBuf::from("/cfg"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).expect("parses");
        assert_eq!(c.target.api, ApiVersion::V2);
        assert_eq!(c.rate.rows_per_second, 1500);
        assert_eq!(c.rate.concurrency, Concurrency::Auto);
        assert_eq!(c.rate.max_concurrency, 64);
        assert_eq!(c.state.dir, PathBuf::from("/cfg/state"));
        assert_eq!(c.collection.fields["vec"], FieldType::Vector);
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = MINIMAL.replace("[collection]\n", "[collection]\nprimary_kye = \"x\"\n");
        let err = parse(&text).expect_err("unknown key").to_string();
        assert!(err.contains("primary_kye"), "{err}");
        let text = MINIMAL.replace("op = \"upsert\"", "op = \"upsert\"\nopp = 1");
        let err = parse(&text).expect_err("unknown key").to_string();
        assert!(err.contains("opp"), "{err}");
    }

    #[test]
    fn bad_field_type_and_pk_are_explained() {
        let err = parse(&MINIMAL.replace("vec = \"vector\"", "vec = \"vectr\""))
            .expect_err("bad type")
            .to_string();
        assert!(err.contains("vectr") && err.contains("sparse_vector"), "{err}");
        let err = parse(&MINIMAL.replace("primary_key = \"f_id\"", "primary_key = \"id\""))
            .expect_err("pk")
            .to_string();
        assert!(err.contains("primary_key `id`"), "{err}");
    }

    #[test]
    fn interpolation_expands_and_names_missing_variables() {
        let env = |n: &str| (n == "REGION").then(|| "cn-shanghai".to_string());
        assert_eq!(interpolate_str("${REGION}", &env).expect("set"), "cn-shanghai");
        assert_eq!(interpolate_str("a-${NOPE:-x}-b", &env).expect("default"), "a-x-b");
        let empty = |n: &str| (n == "EMPTY").then(String::new);
        assert_eq!(interpolate_str("${EMPTY:-d}", &empty).expect("empty"), "d");
        assert_eq!(interpolate_str("[${EMPTY}]", &empty).expect("empty"), "[]");
        assert_eq!(interpolate_str("$$5 and $x", &env).expect("literal"), "$5 and $x");
        let err = interpolate_str("${NOPE}", &env).expect_err("unset");
        assert!(err.contains("NOPE"));
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let c = parse(MINIMAL).expect("parses");
        let env = |n: &str| match n {
            "VOLC_ACCESSKEY" => Some("AKVISIBLE".to_string()),
            "VOLC_SECRETKEY" => Some("SUPERSECRETVALUE".to_string()),
            "VIKINGDB_SESSION_TOKEN" => Some("TOKENVALUE".to_string()),
            _ => None,
        };
        let creds = Credentials::load_with(&c, &env).expect("loads");
        let dbg = format!("{creds:?}");
        assert!(dbg.contains("AKVISIBLE"));
        assert!(
            !dbg.contains("SUPERSECRETVALUE") && !dbg.contains("TOKENVALUE"),
            "{dbg}"
        );
        // VIKINGDB_API_KEY is a v2 thing: a v1 run with it set still signs with AK/SK.
        let mut v1 = c.clone();
        v1.target.api = ApiVersion::V1;
        let with_key = |n: &str| match n {
            "VIKINGDB_API_KEY" => Some("APIKEY".to_string()),
            other => env(other),
        };
        assert!(matches!(
            Credentials::load_with(&v1, &with_key),
            Ok(Credentials::Signed { .. })
        ));
        assert!(matches!(
            Credentials::load_with(&c, &with_key),
            Ok(Credentials::ApiKey(_))
        ));
        let none = Credentials::load_with(&c, &|_| None).expect_err("missing");
        assert!(none.to_string().contains("VIKINGDB_AK"));
    }
    /// MINIMAL with `key = value` added under `[table]` (created if MINIMAL lacks it).
    fn with(table: &str, key: &str, value: &str) -> String {
        let header = format!("[{table}]\n");
        if MINIMAL.contains(&header) {
            MINIMAL.replacen(&header, &format!("{header}{key} = {value}\n"), 1)
        } else {
            format!("{header}{key} = {value}\n{MINIMAL}")
        }
    }

    #[test]
    fn every_duration_is_range_checked_and_named() {
        for (table, key) in [
            ("target", "request_timeout"),
            ("target", "connect_timeout"),
            ("retry", "initial_backoff"),
            ("retry", "max_backoff"),
            ("retry", "max_elapsed"),
            ("state", "commit_interval"),
        ] {
            for bad in ["1e300", "nan", "inf", "-inf", "-1", "0", "1e-9", "1e7"] {
                let err = parse(&with(table, key, bad))
                    .expect_err(&format!("{key} = {bad}"))
                    .to_string();
                assert!(err.contains(&format!("[{table}] {key} = ")), "{key} = {bad}: {err}");
                assert!(err.contains("out of range") && err.contains("seconds"), "{err}");
            }
            // The largest allowed value loads, and its Duration is exact.
            let max = match key {
                "request_timeout" | "connect_timeout" => 86_400.0,
                "max_elapsed" => 604_800.0,
                _ => 3_600.0,
            };
            let mut text = with(table, key, &format!("{max:?}"));
            if key == "initial_backoff" {
                text = text.replace("[retry]\n", "[retry]\nmax_backoff = 3600\n");
            }
            let c = parse(&text).unwrap_or_else(|e| panic!("{key} = {max}: {e}"));
            let d = match key {
                "request_timeout" => c.request_timeout(),
                "connect_timeout" => c.connect_timeout(),
                "initial_backoff" => c.retry.initial_backoff(),
                "max_backoff" => c.retry.max_backoff(),
                "max_elapsed" => c.retry.max_elapsed(),
                _ => c.state.commit_interval(),
            };
            assert_eq!(d, Duration::from_secs_f64(max), "{key}");
        }
        let err = parse(&with("target", "request_timeout", "1e300"))
            .expect_err("big")
            .to_string();
        assert!(err.contains("1e300") && err.contains("1 day"), "{err}");
    }

    #[test]
    fn duration_accessors_never_panic_even_unchecked() {
        let mut r = RetryConfig::default();
        assert_eq!(r.initial_backoff(), Duration::from_millis(200));
        assert_eq!(r.max_backoff(), Duration::from_secs(10));
        assert_eq!(r.max_elapsed(), Duration::from_secs(300));
        for v in [1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0] {
            r.initial_backoff = v;
            r.max_backoff = v;
            r.max_elapsed = v;
            assert!(r.initial_backoff() <= Duration::from_secs(3600));
            assert!(r.max_backoff() >= Duration::from_millis(1));
            assert!(r.max_elapsed() <= Duration::from_secs(7 * 86_400));
        }
        let mut s = StateConfig::default();
        assert_eq!(s.commit_interval(), Duration::from_millis(50));
        s.commit_interval = f64::INFINITY;
        assert_eq!(s.commit_interval(), Duration::from_secs(3600));
    }

    #[test]
    fn absurd_numbers_are_refused_with_the_key_and_range() {
        for (table, key, bad, range) in [
            ("rate", "concurrency", "0", "1 to 1024"),
            ("rate", "concurrency", "1000000000000", "1 to 1024"),
            ("rate", "batch_rows", "0", "1 to 100"),
            ("rate", "batch_rows", "101", "1 to 100"),
            ("rate", "rows_per_second", "4294967295", "1 to 1000000"),
            ("retry", "max_attempts", "0", "1 to 1000"),
            ("retry", "max_attempts", "1000000000000000000", "1 to 1000"),
            ("state", "commit_rows", "0", "1 to 100000000"),
            ("collection", "dim", "0", "1 to 65536"),
            ("collection", "dim", "9223372036854775807", "1 to 65536"),
        ] {
            let err = parse(&with(table, key, bad)).expect_err(key).to_string();
            assert!(
                err.contains(&format!("[{table}] {key} = {bad}")) && err.contains(range),
                "{key} = {bad}: {err}"
            );
        }
        // Values of the wrong sign or size for the type are refused by the parser, naming the key.
        for (table, key, bad) in [
            ("rate", "concurrency", "-1"),
            ("rate", "concurrency", "\"many\""),
            ("rate", "rows_per_second", "-5"),
            ("rate", "rows_per_second", "99999999999"),
            ("state", "max_rejected_rows", "-1"),
            ("collection", "dim", "-4"),
            ("retry", "max_attempts", "1.5"),
        ] {
            let err = parse(&with(table, key, bad)).expect_err(key).to_string();
            assert!(err.contains(key), "{key} = {bad}: {err}");
        }
        let ttl = MINIMAL.replace("op = \"upsert\"", "op = \"upsert\"\nttl = -1");
        let err = parse(&ttl).expect_err("ttl").to_string();
        assert!(err.contains("ttl"), "{err}");
        // The bounds themselves load.
        for (table, key, ok) in [
            ("rate", "concurrency", "1024"),
            ("rate", "concurrency", "\"auto\""),
            ("rate", "max_concurrency", "1"),
            ("rate", "rows_per_second", "1000000"),
            ("rate", "rows_per_second", "0"),
            ("retry", "max_attempts", "1000"),
            ("collection", "dim", "65536"),
            ("state", "max_rejected_rows", "9223372036854775807"),
        ] {
            parse(&with(table, key, ok)).unwrap_or_else(|e| panic!("{key} = {ok}: {e}"));
        }
    }

    #[test]
    fn endpoints_are_checked() {
        for bad in ["http://host:99999", "http://", "https://:443", "http://host:0"] {
            let text = MINIMAL.replace("https://api-vikingdb.vikingdb.cn-beijing.volces.com", bad);
            let err = parse(&text).expect_err(bad).to_string();
            assert!(err.contains("[target] endpoint") && err.contains(bad), "{bad}: {err}");
        }
    }

    fn creds_err(c: &Config, env: &[(&str, &str)]) -> String {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        Credentials::load_with(c, &lookup).expect_err("malformed").to_string()
    }

    #[test]
    fn malformed_credentials_are_named_without_their_value() {
        let c = parse(MINIMAL).expect("parses");
        let err = creds_err(&c, &[("VIKINGDB_AK", "AKGOOD"), ("VIKINGDB_SK", "SECRET\u{1}PART")]);
        assert!(
            err.contains("VIKINGDB_SK") && err.contains("control character") && err.contains("character 7"),
            "{err}"
        );
        assert!(!err.contains("SECRET") && !err.contains("PART"), "{err}");
        let err = creds_err(&c, &[("VIKINGDB_AK", "AK\nX"), ("VIKINGDB_SK", "S")]);
        assert!(err.contains("VIKINGDB_AK") && err.contains("U+000A"), "{err}");
        let err = creds_err(&c, &[("VOLC_ACCESSKEY", "AK"), ("VOLC_SECRETKEY", "S K")]);
        assert!(err.contains("VOLC_SECRETKEY") && err.contains("whitespace"), "{err}");
        let err = creds_err(&c, &[("VIKINGDB_API_KEY", "key\u{200b}")]);
        assert!(err.contains("VIKINGDB_API_KEY") && err.contains("non-ASCII"), "{err}");
        let err = creds_err(
            &c,
            &[
                ("VIKINGDB_AK", "A"),
                ("VIKINGDB_SK", "S"),
                ("VIKINGDB_SESSION_TOKEN", "t\u{7f}"),
            ],
        );
        assert!(err.contains("VIKINGDB_SESSION_TOKEN"), "{err}");
        let err = creds_err(&c, &[("VIKINGDB_AK", " \n"), ("VIKINGDB_SK", "S")]);
        assert!(err.contains("VIKINGDB_AK") && err.contains("empty"), "{err}");
        // Surrounding whitespace is trimmed, in the environment as in files.
        let ok = |n: &str| match n {
            "VIKINGDB_AK" => Some(" AK\r\n".to_string()),
            "VIKINGDB_SK" => Some("SK\n".to_string()),
            _ => None,
        };
        match Credentials::load_with(&c, &ok).expect("trimmed") {
            Credentials::Signed {
                access_key, secret_key, ..
            } => assert_eq!((access_key.as_str(), secret_key.expose()), ("AK", "SK")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credential_files_keep_the_trailing_newline_rule_and_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = parse(MINIMAL).expect("parses");
        c.base_dir = dir.path().to_path_buf();
        std::fs::write(dir.path().join("ak"), "AKFILE\n").expect("write");
        std::fs::write(dir.path().join("sk"), "SKFILE\r\n").expect("write");
        c.auth.access_key_file = Some(PathBuf::from("ak"));
        c.auth.secret_key_file = Some(PathBuf::from("sk"));
        let creds = Credentials::load_with(&c, &|_| None).expect("a trailing newline is trimmed");
        assert!(matches!(creds, Credentials::Signed { ref access_key, .. } if access_key == "AKFILE"));
        std::fs::write(dir.path().join("sk"), "SKFI\nLE\n").expect("write");
        let err = Credentials::load_with(&c, &|_| None)
            .expect_err("inner newline")
            .to_string();
        assert!(
            err.contains("[auth] secret_key_file") && err.contains("sk") && err.contains("character 5"),
            "{err}"
        );
        assert!(!err.contains("SKFI"), "{err}");
        std::fs::write(dir.path().join("sk"), "\n").expect("write");
        let err = Credentials::load_with(&c, &|_| None).expect_err("empty").to_string();
        assert!(err.contains("secret_key_file") && err.contains("empty"), "{err}");
        std::fs::write(dir.path().join("sk"), b"SK\xff").expect("write");
        let err = Credentials::load_with(&c, &|_| None)
            .expect_err("not utf-8")
            .to_string();
        assert!(err.contains("secret_key_file") && err.contains("UTF-8"), "{err}");
    }
}
