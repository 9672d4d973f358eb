//! The run configuration (TOML): the public contract of `vikingsync run` and `validate`.
//!
//! Owns: parsing, `${VAR}` / `${VAR:-default}` interpolation, defaults, cross-field checks, and
//! loading credentials from the environment or from files.
//! Never: logs or formats a secret (`Secret` redacts itself), or reads data files.
//! Every key is documented in `docs/config.md`; unknown keys are an error naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::record::Op;
use crate::schema::FieldType;
use crate::source::Format;

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

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which API generation to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V1,
    V2,
}

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
    /// Faults for the in-process emulator (`target.emulator = true`): see the emulator docs.
    #[serde(default)]
    pub emulator_faults: Option<crate::emulator::FaultConfig>,
    pub sources: Vec<SourceConfig>,
    /// Directory of the config file: relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
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
    pub fields: BTreeMap<String, FieldType>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// The collection's quota in rows per second (writes, updates and deletes together); 0 = unlimited.
    #[serde(default = "default_rps")]
    pub rows_per_second: u32,
    /// Requests in flight.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Rows per request (at most 100; writes to a vectorize collection always go one per request).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
}

fn default_rps() -> u32 {
    1500
}
fn default_concurrency() -> usize {
    8
}
fn default_batch_rows() -> usize {
    100
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            rows_per_second: default_rps(),
            concurrency: default_concurrency(),
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
        if self.rate.concurrency == 0 {
            return Err("[rate] concurrency must be at least 1".into());
        }
        if self.rate.batch_rows == 0 || self.rate.batch_rows > 100 {
            return Err("[rate] batch_rows must be between 1 and 100 (VikingDB's per-request limit)".into());
        }
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err("[retry] initial_backoff must not exceed max_backoff".into());
        }
        if self.state.commit_rows == 0 {
            return Err("[state] commit_rows must be at least 1".into());
        }
        if self.emulator_faults.is_some() && !self.target.emulator {
            return Err("[emulator_faults] applies only with [target] emulator = true".into());
        }
        if self.retry.max_attempts == 0 {
            return Err("[retry] max_attempts must be at least 1".into());
        }
        for (name, secs) in [
            ("target.request_timeout", self.target.request_timeout),
            ("target.connect_timeout", self.target.connect_timeout),
            ("retry.max_elapsed", self.retry.max_elapsed),
            ("retry.initial_backoff", self.retry.initial_backoff),
            ("retry.max_backoff", self.retry.max_backoff),
            ("state.commit_interval", self.state.commit_interval),
        ] {
            if !(secs.is_finite() && secs > 0.0) {
                return Err(format!("`{name}` must be a positive number of seconds"));
            }
        }
        if self.sources.is_empty() {
            return Err("at least one [[sources]] entry is needed".into());
        }
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

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.target.request_timeout)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.target.connect_timeout)
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

/// How requests are authenticated.
#[derive(Clone)]
pub enum Credentials {
    /// SignerV4 with an access key pair and an optional STS session token.
    Signed {
        access_key: String,
        secret_key: Secret,
        session_token: Option<Secret>,
    },
    /// V2 API key: `Authorization: Bearer`.
    ApiKey(Secret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Signed {
                access_key,
                session_token,
                ..
            } => f
                .debug_struct("Signed")
                .field("access_key", access_key)
                .field("secret_key", &"***")
                .field("session_token", &session_token.as_ref().map(|_| "***"))
                .finish(),
            Credentials::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

impl Credentials {
    /// Credentials from the config's files, else the environment (`VIKINGDB_AK`/`VIKINGDB_SK`,
    /// or the official SDK's `VOLC_ACCESSKEY`/`VOLC_SECRETKEY`; `VIKINGDB_SESSION_TOKEN` /
    /// `VOLC_SESSION_TOKEN`; `VIKINGDB_API_KEY` for V2).
    pub fn load(config: &Config) -> Result<Credentials, ConfigError> {
        Credentials::load_with(config, &|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn load_with(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, ConfigError> {
        let auth = &config.auth;
        let read = |p: &PathBuf| -> Result<String, ConfigError> {
            let full = config.base_dir.join(p);
            std::fs::read_to_string(&full)
                .map(|s| s.trim().to_string())
                .map_err(|e| ConfigError::Credentials(format!("cannot read {}: {e}", full.display())))
        };
        // An API key is a V2 feature: a configured file with v1 is an error; the environment
        // variable is simply not used for v1 (AK/SK are).
        let api_key = match (&auth.api_key_file, config.target.api) {
            (Some(_), ApiVersion::V1) => {
                return Err(ConfigError::Credentials(
                    "[auth] api_key_file works only with api = \"v2\"; v1 signs with AK/SK".into(),
                ));
            }
            (Some(p), ApiVersion::V2) => Some(read(p)?),
            (None, ApiVersion::V2) => env("VIKINGDB_API_KEY"),
            (None, ApiVersion::V1) => None,
        };
        if let Some(key) = api_key {
            return Ok(Credentials::ApiKey(Secret::new(key)));
        }
        let ak = match &auth.access_key_file {
            Some(p) => Some(read(p)?),
            None => env("VIKINGDB_AK").or_else(|| env("VOLC_ACCESSKEY")),
        };
        let sk = match &auth.secret_key_file {
            Some(p) => Some(read(p)?),
            None => env("VIKINGDB_SK").or_else(|| env("VOLC_SECRETKEY")),
        };
        let token = match &auth.session_token_file {
            Some(p) => Some(read(p)?),
            None => env("VIKINGDB_SESSION_TOKEN").or_else(|| env("VOLC_SESSION_TOKEN")),
        };
        match (ak, sk) {
            (Some(access_key), Some(secret_key)) if !access_key.is_empty() && !secret_key.is_empty() => {
                Ok(Credentials::Signed {
                    access_key,
                    secret_key: Secret::new(secret_key),
                    session_token: token.filter(|t| !t.is_empty()).map(Secret::new),
                })
            }
            _ => Err(ConfigError::Credentials(
                "no credentials: set VIKINGDB_AK and VIKINGDB_SK (or VOLC_ACCESSKEY/VOLC_SECRETKEY), \
                 name files in [auth], or set VIKINGDB_API_KEY (v2)"
                    .into(),
            )),
        }
    }
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
        assert_eq!(c.rate.concurrency, 8);
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
}
