//! The emulated collections: records, request validation against the schema, atomic apply, TTL
//! per-collection row quotas and pending async upserts.
//!
//! Owns: what a valid row / id is, what upsert, update and delete do to the records, when a
//! record has expired, the row-quota token buckets, and when an async upsert lands.
//! Never: knows about HTTP, envelopes, V1/V2 field names or faults; applies part of a request
//! (every check runs before the first change); panics on request data.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{ASYNC_QUOTA_FACTOR, CollectionSpec, EmulatorConfig, UpdateMissing};
use vikingdb_types::{FieldType, MAX_ROWS_PER_REQUEST as MAX_ROWS};

/// At most this many rows in one upsert or update of a vectorize collection.
pub(crate) const MAX_ROWS_VECTORIZE: usize = 1;

/// Why a request is refused (the HTTP layer maps these to statuses and codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Unauthorized(String),
    Forbidden(String),
    Missing(String),
    Invalid(String),
    CollectionNotFound(String),
    DataNotFound(String),
    Throttled(String),
    Internal(String),
}

/// How a request names its collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Locator {
    Name(String),
    ResourceId(String),
    Alias(String),
}

/// Validated rows: PK text and the row to store.
pub(crate) type Rows = Vec<(String, Map<String, Value>)>;

/// A validated write, ready to apply. Keys are PK texts; rows hold normalized values.
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Upsert {
        rows: Rows,
        ttl: u64,
    },
    /// `ttl: None` (absent from the request) keeps each record's TTL.
    Update {
        rows: Rows,
        ttl: Option<u64>,
    },
    Delete(Vec<String>),
    DeleteAll,
}

impl Prepared {
    /// Rows charged against the quota (`del_all` costs one).
    pub fn quota_rows(&self) -> u32 {
        let n = match self {
            Prepared::Upsert { rows, .. } | Prepared::Update { rows, .. } => rows.len(),
            Prepared::Delete(keys) => keys.len(),
            Prepared::DeleteAll => 1,
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub upserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub ignored: u64,
    pub del_all: bool,
}

#[derive(Debug, Clone)]
struct Stored {
    fields: Map<String, Value>,
    expires: Option<Instant>,
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

/// A strict token bucket in rows, as a server-side quota.
///
/// Capacity = max(rate × burst_seconds, 1) rows; it starts full and refills continuously at
/// `rate` rows/s up to capacity. A request of n rows is admitted when tokens ≥ min(n, capacity),
/// and then n is subtracted. Tokens can go negative: a request bigger than the bucket is admitted
/// only when the bucket is full, and its debt must be paid back before the next one fits.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// `None` for a rate of 0 (unlimited).
    pub fn new(rows_per_second: u32, burst_seconds: f64, now: Instant) -> Option<Self> {
        if rows_per_second == 0 {
            return None;
        }
        let rate = f64::from(rows_per_second);
        let capacity = (rate * burst_seconds).max(1.0);
        Some(Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        })
    }

    #[cfg(test)]
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Takes `rows` when they are admitted now (see the type's rule); false leaves the bucket
    /// as it was (apart from refilling).
    pub fn try_take(&mut self, rows: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now.max(self.last);
        let rows = f64::from(rows);
        // A small tolerance so that a bucket refilled to exactly n in floating point admits n.
        if self.tokens + 1e-9 >= rows.min(self.capacity) {
            self.tokens -= rows;
            true
        } else {
            false
        }
    }
}

/// Which quota bucket a write is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    Sync,
    Async,
}

/// An accepted async upsert, waiting for its due time.
#[derive(Debug, Clone)]
struct PendingUpsert {
    due: Instant,
    op: Prepared,
}

/// One collection and its records.
pub(crate) struct Collection {
    pub spec: CollectionSpec,
    records: BTreeMap<String, Stored>,
    sync_bucket: Option<Bucket>,
    async_bucket: Option<Bucket>,
    async_delay: Duration,
    /// Accepted async upserts in arrival order (so in due order: the delay is constant).
    pending: VecDeque<PendingUpsert>,
}

impl Collection {
    pub fn new(spec: CollectionSpec, config: &EmulatorConfig, now: Instant) -> Self {
        let burst = config.quota_burst_seconds;
        let async_quota = config
            .async_quota_rows_per_second
            .unwrap_or(spec.quota_rows_per_second.saturating_mul(ASYNC_QUOTA_FACTOR));
        Collection {
            sync_bucket: Bucket::new(spec.quota_rows_per_second, burst, now),
            async_bucket: Bucket::new(async_quota, burst, now),
            async_delay: config.async_visible_after,
            spec,
            records: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The name stats and dumps use (name, else resource_id, else alias).
    pub fn label(&self) -> &str {
        let s = &self.spec;
        if !s.name.is_empty() {
            &s.name
        } else {
            s.resource_id.as_deref().or(s.alias.as_deref()).unwrap_or_default()
        }
    }

    pub fn matches(&self, loc: &Locator) -> bool {
        let s = &self.spec;
        match loc {
            Locator::Name(n) => !n.is_empty() && *n == s.name,
            Locator::ResourceId(r) => s.resource_id.as_deref() == Some(r.as_str()),
            Locator::Alias(a) => s.alias.as_deref() == Some(a.as_str()),
        }
    }

    /// Takes `rows` from the pool's bucket; false when they do not fit now.
    pub fn take_quota(&mut self, pool: Pool, rows: u32, now: Instant) -> bool {
        let bucket = match pool {
            Pool::Sync => &mut self.sync_bucket,
            Pool::Async => &mut self.async_bucket,
        };
        bucket.as_mut().is_none_or(|b| b.try_take(rows, now))
    }

    /// Queues a validated upsert to be applied `async_visible_after` from `now`.
    pub fn enqueue_async(&mut self, op: Prepared, now: Instant) {
        let due = now.checked_add(self.async_delay).unwrap_or(now);
        // Keep due times monotonic, so arrival order is apply order.
        let due = self.pending.back().map_or(due, |p| p.due.max(due));
        self.pending.push_back(PendingUpsert { due, op });
    }

    /// Applies the pending async upserts due by `now`, in arrival order, each as of its due time
    /// (a TTL counts from then).
    pub fn apply_due(&mut self, now: Instant) -> Applied {
        let mut total = Applied::default();
        while self.pending.front().is_some_and(|p| p.due <= now) {
            let Some(p) = self.pending.pop_front() else { break };
            // An upsert never fails to apply (it was validated when accepted).
            if let Ok(a) = self.apply(&p.op, UpdateMissing::Error, p.due) {
                total.upserted += a.upserted;
            }
        }
        total
    }

    /// When the last pending async upsert falls due.
    pub fn last_due(&self) -> Option<Instant> {
        self.pending.back().map(|p| p.due)
    }

    /// Rows accepted as async upserts and not applied yet.
    pub fn pending_rows(&self) -> u64 {
        self.pending.iter().map(|p| u64::from(p.op.quota_rows())).sum()
    }

    /// Applies a validated write atomically: on error nothing has changed.
    pub fn apply(&mut self, op: &Prepared, update_missing: UpdateMissing, now: Instant) -> Result<Applied, Failure> {
        let mut applied = Applied::default();
        match op {
            Prepared::Upsert { rows, ttl } => {
                let expires = expiry(now, *ttl);
                for (key, row) in rows {
                    let stored = Stored {
                        fields: row.clone(),
                        expires,
                    };
                    self.records.insert(key.clone(), stored);
                    applied.upserted += 1;
                }
            }
            Prepared::Update { rows, ttl } => {
                let expires = ttl.map(|t| expiry(now, t));
                // Stage every change first so a missing key refuses the whole request.
                let mut staged: BTreeMap<&str, Stored> = BTreeMap::new();
                for (key, row) in rows {
                    let current = staged
                        .get(key.as_str())
                        .cloned()
                        .or_else(|| self.records.get(key).filter(|r| r.live(now)).cloned());
                    let next = match (current, update_missing) {
                        (Some(mut rec), _) => {
                            for (name, value) in row {
                                rec.fields.insert(name.clone(), value.clone());
                            }
                            if let Some(e) = expires {
                                rec.expires = e;
                            }
                            rec
                        }
                        (None, UpdateMissing::Error) => {
                            return Err(Failure::DataNotFound(format!(
                                "no record with {} = {key}",
                                self.spec.primary_key
                            )));
                        }
                        (None, UpdateMissing::Ignore) => {
                            applied.ignored += 1;
                            continue;
                        }
                        (None, UpdateMissing::Upsert) => {
                            let mut fields = row.clone();
                            fill_defaults(&self.spec, &mut fields)
                                .map_err(|e| Failure::Invalid(format!("update of missing key {key}: {e}")))?;
                            Stored {
                                fields,
                                expires: expires.flatten(),
                            }
                        }
                    };
                    staged.insert(key, next);
                    applied.updated += 1;
                }
                for (key, rec) in staged {
                    self.records.insert(key.to_string(), rec);
                }
            }
            Prepared::Delete(keys) => {
                for key in keys {
                    self.records.remove(key);
                    applied.deleted += 1;
                }
            }
            Prepared::DeleteAll => {
                applied.deleted = self.live_count(now);
                self.records.clear();
                applied.del_all = true;
            }
        }
        Ok(applied)
    }

    /// The live record with PK text `key`.
    pub fn get(&self, key: &str, now: Instant) -> Option<&Map<String, Value>> {
        self.records.get(key).filter(|r| r.live(now)).map(|r| &r.fields)
    }

    pub fn live(&self, now: Instant) -> BTreeMap<String, Map<String, Value>> {
        self.records
            .iter()
            .filter(|(_, r)| r.live(now))
            .map(|(k, r)| (k.clone(), r.fields.clone()))
            .collect()
    }

    pub fn live_count(&self, now: Instant) -> u64 {
        self.records.values().filter(|r| r.live(now)).count() as u64
    }
}

fn expiry(now: Instant, ttl: u64) -> Option<Instant> {
    if ttl == 0 {
        None
    } else {
        now.checked_add(Duration::from_secs(ttl))
    }
}

/// How a request may write a vector: V2 also takes base64 of its packed bytes, V1 only arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorForms {
    ArraysOnly,
    /// Arrays, or base64 of packed little-endian floats.
    AlsoPacked,
    /// Arrays, or packed float32s read as big-endian (a fault: `FaultConfig::packed_big_endian`).
    PackedBigEndian,
}

/// Validates an upsert (`full`) or update row list. `what` names the array in messages
/// (`data` for V2, `fields` for V1).
pub(crate) fn prepare_rows(
    spec: &CollectionSpec,
    what: &str,
    rows: &[Value],
    full: bool,
    ignore_unknown: bool,
    vectors: VectorForms,
) -> Result<Rows, Failure> {
    let limit = if spec.vectorize { MAX_ROWS_VECTORIZE } else { MAX_ROWS };
    if rows.is_empty() {
        return Err(Failure::Invalid(format!("`{what}` is empty")));
    }
    if rows.len() > limit {
        let kind = if spec.vectorize {
            " for a vectorize collection"
        } else {
            ""
        };
        return Err(Failure::Invalid(format!(
            "`{what}` has {} rows; at most {limit} per request{kind}",
            rows.len()
        )));
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            validate_row(spec, row, full, ignore_unknown, vectors)
                .map_err(|e| Failure::Invalid(format!("{what}[{i}]: {e}")))
        })
        .collect()
}

/// Validates a list of primary keys (delete or fetch): PK texts and normalized values.
pub(crate) fn prepare_ids(spec: &CollectionSpec, what: &str, ids: &[Value]) -> Result<Vec<(String, Value)>, Failure> {
    if ids.is_empty() {
        return Err(Failure::Invalid(format!("`{what}` is empty")));
    }
    if ids.len() > MAX_ROWS {
        return Err(Failure::Invalid(format!(
            "`{what}` has {} keys; at most {MAX_ROWS} per request",
            ids.len()
        )));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| pk_of(spec, id).map_err(|e| Failure::Invalid(format!("{what}[{i}]: {e}"))))
        .collect()
}

fn validate_row(
    spec: &CollectionSpec,
    row: &Value,
    full: bool,
    ignore_unknown: bool,
    vectors: VectorForms,
) -> Result<(String, Map<String, Value>), String> {
    let Some(obj) = row.as_object() else {
        return Err(format!("a row must be a JSON object, got {}", kind(row)));
    };
    let mut out = Map::new();
    let mut key = None;
    for (name, value) in obj {
        if *name == spec.primary_key {
            let (k, normalized) = pk_of(spec, value).map_err(|e| format!("primary key `{name}`: {e}"))?;
            key = Some(k);
            out.insert(name.clone(), normalized);
            continue;
        }
        match spec.fields.get(name) {
            None if ignore_unknown => {}
            None => {
                return Err(format!(
                    "unknown field `{name}` (set ignore_unknown_fields to drop unknown fields)"
                ));
            }
            Some(FieldType::Vector) if value.is_string() && vectors != VectorForms::ArraysOnly => {
                let big_endian = vectors == VectorForms::PackedBigEndian;
                let unpacked = unpack_vector(value.as_str().unwrap_or_default(), spec.dim, big_endian)
                    .map_err(|e| format!("field `{name}`: {e}"))?;
                check_value(FieldType::Vector, &unpacked, spec.dim).map_err(|e| format!("field `{name}`: {e}"))?;
                out.insert(name.clone(), unpacked);
            }
            Some(t) => {
                check_value(*t, value, spec.dim).map_err(|e| format!("field `{name}`: {e}"))?;
                out.insert(name.clone(), value.clone());
            }
        }
    }
    let Some(key) = key else {
        return Err(format!("primary key `{}` is missing", spec.primary_key));
    };
    if full {
        fill_defaults(spec, &mut out)?;
    }
    Ok((key, out))
}

/// Fills the documented defaults of missing fields; a missing field without a default (vector,
/// sparse_vector, text, image) is an error; date_time and geo_point stay absent.
fn fill_defaults(spec: &CollectionSpec, row: &mut Map<String, Value>) -> Result<(), String> {
    for (name, t) in &spec.fields {
        if row.contains_key(name) {
            continue;
        }
        let default = match t {
            FieldType::Int64 => Value::from(0),
            FieldType::Float32 => Value::from(0.0),
            FieldType::String => Value::from("default"),
            FieldType::Bool => Value::from(false),
            FieldType::ListString => Value::from(vec!["default"]),
            FieldType::ListInt64 => Value::from(vec![0]),
            FieldType::DateTime | FieldType::GeoPoint => continue,
            FieldType::Vector | FieldType::SparseVector | FieldType::Text | FieldType::Image => {
                return Err(format!("field `{name}` ({t}) has no default and is missing"));
            }
        };
        row.insert(name.clone(), default);
    }
    Ok(())
}

/// The PK text and normalized JSON value of a primary-key value.
fn pk_of(spec: &CollectionSpec, value: &Value) -> Result<(String, Value), String> {
    match spec.fields.get(&spec.primary_key) {
        Some(FieldType::Int64) => {
            let parsed = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse::<i64>().ok(),
                _ => None,
            };
            match parsed {
                None => Err(format!(
                    "expected an int64 (a JSON integer within i64), got {}",
                    kind(value)
                )),
                Some(0) => Err("must not be 0".into()),
                Some(i) => Ok((i.to_string(), Value::from(i))),
            }
        }
        _ => match value.as_str() {
            None => Err(format!("expected a string, got {}", kind(value))),
            Some("") => Err("must not be empty".into()),
            Some(s) => Ok((s.to_string(), value.clone())),
        },
    }
}

/// A V2 packed vector, "float32/float64压缩为bytes后的base64编码" (doc 2173269): standard
/// base64 (padded) of the elements' little-endian bytes, as an array of numbers. The docs do not
/// say the byte order; little-endian is what numpy's `tobytes()` gives on every platform the
/// SDKs run on. With `dim` set, 4·dim bytes are float32s and 8·dim bytes float64s; without it,
/// float32s. Each float32 is stored as its exact value (an f64), which reads back as it.
fn unpack_vector(text: &str, dim: Option<usize>, big_endian: bool) -> Result<Value, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("a vector given as a string must be base64 of its packed bytes: {e}"))?;
    let width = match dim {
        Some(d) if bytes.len() == d * 8 => 8,
        Some(d) if bytes.len() == d * 4 => 4,
        Some(d) => {
            return Err(format!(
                "packed vector has {} bytes; the collection's dim {d} needs {} (float32) or {} (float64)",
                bytes.len(),
                d * 4,
                d * 8
            ));
        }
        None if bytes.len() % 4 == 0 => 4,
        None => return Err(format!("packed vector has {} bytes, not whole float32s", bytes.len())),
    };
    let numbers: Option<Vec<Value>> = bytes
        .chunks_exact(width)
        .map(|b| {
            let x = match *b {
                [a, b, c, d] if big_endian => f64::from(f32::from_be_bytes([a, b, c, d])),
                [a, b, c, d] => f64::from(f32::from_le_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => f64::from_le_bytes([a, b, c, d, e, f, g, h]),
                _ => return None,
            };
            serde_json::Number::from_f64(x).map(Value::Number)
        })
        .collect();
    numbers
        .map(Value::Array)
        .ok_or_else(|| "packed vector holds a NaN or an infinity".to_string())
}

/// Checks `value` against the field type.
fn check_value(t: FieldType, value: &Value, dim: Option<usize>) -> Result<(), String> {
    if value.is_null() {
        return Err(format!("null is not a {t} value (leave the field out instead)"));
    }
    let expected = |what: &str| Err(format!("expected {what}, got {}", kind(value)));
    match t {
        FieldType::Int64 => match value.as_i64() {
            Some(_) => Ok(()),
            None => expected("an int64 (a JSON integer within i64)"),
        },
        FieldType::Float32 => match value.as_f64() {
            Some(f) if f.abs() <= f64::from(f32::MAX) => Ok(()),
            Some(_) => Err("out of float32 range".into()),
            None => expected("a number"),
        },
        FieldType::String | FieldType::Text => match value {
            Value::String(_) => Ok(()),
            _ => expected("a string"),
        },
        FieldType::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => expected("true or false"),
        },
        FieldType::ListString => match value.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => expected("an array of strings"),
        },
        FieldType::ListInt64 => match value.as_array() {
            Some(a) if a.iter().all(|v| v.as_i64().is_some()) => Ok(()),
            _ => expected("an array of int64 integers"),
        },
        FieldType::Vector => match value.as_array() {
            Some(a) if a.iter().all(Value::is_number) => match dim {
                Some(d) if a.len() != d => Err(format!(
                    "vector has {} dimensions; the collection's dim is {d}",
                    a.len()
                )),
                _ if a.is_empty() => Err("vector is empty".into()),
                _ => Ok(()),
            },
            _ => expected("an array of numbers (vector)"),
        },
        FieldType::SparseVector => match value.as_object() {
            Some(m) if m.values().all(Value::is_number) => Ok(()),
            _ => expected("an object of token → number (sparse_vector)"),
        },
        FieldType::DateTime => match value.as_str() {
            Some(s) if parse_date_time(s) => Ok(()),
            Some(s) => Err(format!(
                "`{s}` is not an RFC 3339 date_time (e.g. 2025-08-12T11:33:56+08:00)"
            )),
            None => expected("an RFC 3339 string"),
        },
        FieldType::GeoPoint => match value.as_str() {
            Some(s) if geo_point_ok(s) => Ok(()),
            Some(s) => Err(format!(
                "`{s}` is not a geo_point \"longitude,latitude\" with lon in (-180,180) and lat in (-90,90)"
            )),
            None => expected("a \"longitude,latitude\" string"),
        },
        FieldType::Image => match value.as_str() {
            Some(s) if ["tos://", "http://", "https://"].iter().any(|p| s.starts_with(p)) => Ok(()),
            Some(_) => Err("an image must be a tos://, http:// or https:// URL".into()),
            None => expected("a URL string"),
        },
    }
}

/// RFC 3339 at second or millisecond precision, or at minute precision (`2025-08-12T11:33Z`).
fn parse_date_time(s: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return true;
    }
    if let Some(base) = s.strip_suffix('Z') {
        return chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%dT%H:%M").is_ok();
    }
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%:z").is_ok()
}

fn geo_point_ok(s: &str) -> bool {
    let Some((lon, lat)) = s.split_once(',') else {
        return false;
    };
    match (lon.trim().parse::<f64>(), lat.trim().parse::<f64>()) {
        // Open intervals, as the API docs give them: lon in (-180, 180), lat in (-90, 90).
        (Ok(lon), Ok(lat)) => lon > -180.0 && lon < 180.0 && lat > -90.0 && lat < 90.0,
        _ => false,
    }
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_rule() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 100 rows/s × 0.1 s = 10 rows of capacity.
        let mut b = Bucket::new(100, 0.1, t0).expect("limited");
        assert_eq!(b.capacity(), 10.0);
        assert!(b.try_take(6, t0));
        assert!(b.try_take(4, t0));
        assert!(!b.try_take(1, t0), "empty");
        assert!(b.try_take(1, at(10)), "1 row refilled after 10 ms");
        // Bigger than the bucket: only when full, then a debt of 15 rows.
        assert!(!b.try_take(25, at(100)), "9 tokens < capacity");
        assert!(b.try_take(25, at(110)), "full bucket admits 25 rows");
        assert!(!b.try_take(1, at(200)), "debt: -15 + 9 = -6 tokens");
        assert!(!b.try_take(1, at(260)), "0 tokens < 1");
        assert!(b.try_take(1, at(270)), "1 token");
        // Tiny quotas still hold one row; unlimited has no bucket.
        assert_eq!(Bucket::new(1, 0.1, t0).expect("limited").capacity(), 1.0);
        assert!(Bucket::new(0, 0.1, t0).is_none());
    }

    #[test]
    fn checks_scalar_formats() {
        assert!(parse_date_time("2025-08-12T11:33:56+08:00"));
        assert!(parse_date_time("2025-08-12T11:33:56.123Z"));
        assert!(parse_date_time("2025-08-12T11:33Z"));
        assert!(parse_date_time("2025-08-12T11:33+08:00"));
        assert!(!parse_date_time("2025-08-12 11:33:56"));
        assert!(geo_point_ok("116.408108,39.915023"));
        assert!(!geo_point_ok("200,10"));
        assert!(!geo_point_ok("180,10"), "the bounds are open");
        assert!(!geo_point_ok("1;2"));
        assert!(check_value(FieldType::Int64, &json!(1.0), None).is_err());
        assert!(check_value(FieldType::Int64, &json!(u64::MAX), None).is_err());
        assert!(check_value(FieldType::Float32, &json!(1), None).is_ok());
        assert!(check_value(FieldType::Float32, &json!(1e300), None).is_err());
        assert!(check_value(FieldType::SparseVector, &json!({"a": 0.5}), None).is_ok());
        assert!(check_value(FieldType::Image, &json!("ftp://x"), None).is_err());
    }
}
