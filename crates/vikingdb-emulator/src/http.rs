//! The emulator's HTTP surface: routes, V1/V2 request shapes and envelopes, error codes, request
//! ids, fault injection and the admin endpoints.
//!
//! Owns: the order of a request's life (latency → auth → parse → locate → validate → quota →
//! faults → apply or queue (async) → answer), applying due async upserts before any access to a
//! collection, and the stats it records.
//! Never: validates values itself (that is `store`), checks signatures itself (that is `auth`),
//! logs a header value or a body, or panics on request data. The admin endpoints are
//! unauthenticated by design: this is a local test tool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use vikingdb_types::Op;

use super::auth::{Incoming, Verifier};
use super::store::{Applied, Collection, Failure, Locator, Pool, Prepared, VectorForms, prepare_ids, prepare_rows};
use super::{AccessKey, CollectionStats, EmulatorConfig, FaultConfig, Stats, UpdateMissing};

/// Largest request body read (bytes); larger bodies are refused with 400.
const MAX_BODY: usize = 64 * 1024 * 1024;
const V2_SUCCESS_MESSAGE: &str = "The API call was executed successfully.";
const ASYNC_ONLY_UPSERT: &str = "`async` is only for upserts into non-vectorize collections";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

/// What a data-plane route does: a write (the shared [`Op`]), a fetch or a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Write(Op),
    Fetch,
    Ping,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Write(op) => op.as_str(),
            Action::Fetch => "fetch",
            Action::Ping => "ping",
        }
    }
}

/// The data plane's routes, written once: path, method (`true` = GET), API and action.
const ROUTES: [(&str, bool, Api, Action); 10] = [
    ("/api/vikingdb/data/upsert", false, Api::V2, Action::Write(Op::Upsert)),
    ("/api/vikingdb/data/update", false, Api::V2, Action::Write(Op::Update)),
    ("/api/vikingdb/data/delete", false, Api::V2, Action::Write(Op::Delete)),
    ("/api/vikingdb/data/fetch_in_collection", false, Api::V2, Action::Fetch),
    ("/api/vikingdb/Ping", true, Api::V2, Action::Ping),
    ("/api/collection/upsert_data", false, Api::V1, Action::Write(Op::Upsert)),
    ("/api/collection/update_data", false, Api::V1, Action::Write(Op::Update)),
    ("/api/collection/del_data", false, Api::V1, Action::Write(Op::Delete)),
    // V1 fetch is a GET with a JSON body.
    ("/api/collection/fetch_data", true, Api::V1, Action::Fetch),
    ("/api/viking_db/data/ping", true, Api::V1, Action::Ping),
];

/// How a request ended, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Unauthorized,
    Forbidden,
    Invalid,
    NotFound,
    DataNotFound,
    Throttled,
    Internal,
    ErrorBefore,
    ErrorAfter,
    DropBefore,
    DropAfter,
}

impl Outcome {
    fn of(f: &Failure) -> Outcome {
        match f {
            Failure::Unauthorized(_) => Outcome::Unauthorized,
            Failure::Forbidden(_) => Outcome::Forbidden,
            Failure::Missing(_) | Failure::Invalid(_) => Outcome::Invalid,
            Failure::CollectionNotFound(_) => Outcome::NotFound,
            Failure::DataNotFound(_) => Outcome::DataNotFound,
            Failure::Throttled(_) => Outcome::Throttled,
            Failure::Internal(_) => Outcome::Internal,
        }
    }
}

/// What to send back.
enum Reply {
    /// V2: `result` (null when `None`); V1: `data` (absent when `None`).
    Success(Option<Value>),
    Fail(Failure),
    /// Close the connection without a valid response.
    Drop,
}

/// The fault drawn for one write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    ErrorBefore,
    ErrorAfter,
    DropBefore,
    DropAfter,
}

/// State shared by every request.
pub(crate) struct Shared {
    keys: Vec<AccessKey>,
    api_keys: Vec<String>,
    max_clock_skew: Duration,
    update_missing: UpdateMissing,
    throttle_retry_after: Option<Duration>,
    collections: Vec<Mutex<Collection>>,
    stats: Mutex<Stats>,
    faults: Mutex<FaultConfig>,
    rng: Mutex<SmallRng>,
    next_id: AtomicU64,
}

/// Locks, ignoring poisoning (a panicking request must not wedge the emulator).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(mut config: EmulatorConfig) -> Self {
        let now = Instant::now();
        let collections: Vec<Mutex<Collection>> = std::mem::take(&mut config.collections)
            .into_iter()
            .map(|spec| Mutex::new(Collection::new(spec, &config, now)))
            .collect();
        let mut stats = Stats::default();
        for c in &collections {
            stats
                .collections
                .insert(lock(c).label().to_string(), CollectionStats::default());
        }
        Shared {
            keys: config.keys,
            api_keys: config.api_keys,
            max_clock_skew: config.max_clock_skew,
            update_missing: config.update_missing,
            throttle_retry_after: config.throttle_retry_after,
            collections,
            stats: Mutex::new(stats),
            faults: Mutex::new(config.faults),
            rng: Mutex::new(SmallRng::seed_from_u64(config.seed)),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn stats(&self) -> Stats {
        self.apply_due_async();
        let mut stats = lock(&self.stats).clone();
        let now = Instant::now();
        for c in &self.collections {
            let c = lock(c);
            let entry = stats.collections.entry(c.label().to_string()).or_default();
            entry.live_records = c.live_count(now);
            entry.pending_async_rows = c.pending_rows();
        }
        stats
    }

    /// Locks a collection after applying its async upserts that are due (and counting them).
    fn open<'a>(&self, cell: &'a Mutex<Collection>) -> MutexGuard<'a, Collection> {
        let mut c = lock(cell);
        let applied: Applied = c.apply_due(Instant::now());
        if applied.upserted > 0 {
            let label = c.label().to_string();
            self.record_stats(|s| {
                s.rows_applied_upsert += applied.upserted;
                s.rows_applied_async += applied.upserted;
                let cs = s.collections.entry(label).or_default();
                cs.rows_applied_upsert += applied.upserted;
                cs.rows_applied_async += applied.upserted;
            });
        }
        c
    }

    /// Applies every collection's due async upserts.
    pub fn apply_due_async(&self) {
        for c in &self.collections {
            drop(self.open(c));
        }
    }

    /// When the last pending async upsert (of any collection) falls due.
    pub fn last_async_due(&self) -> Option<Instant> {
        self.collections.iter().filter_map(|c| lock(c).last_due()).max()
    }

    pub fn pending_async_rows(&self) -> u64 {
        self.collections.iter().map(|c| lock(c).pending_rows()).sum()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        *lock(&self.faults) = faults;
    }

    fn faults(&self) -> FaultConfig {
        lock(&self.faults).clone()
    }

    fn find(&self, loc: &Locator) -> Option<&Mutex<Collection>> {
        self.collections.iter().find(|c| lock(c).matches(loc))
    }

    /// A collection by name, resource_id or alias.
    fn find_any(&self, name: &str) -> Option<&Mutex<Collection>> {
        [
            Locator::Name(name.to_string()),
            Locator::ResourceId(name.to_string()),
            Locator::Alias(name.to_string()),
        ]
        .iter()
        .find_map(|loc| self.find(loc))
    }

    pub fn records(&self, name: &str) -> Option<std::collections::BTreeMap<String, Map<String, Value>>> {
        self.find_any(name).map(|c| self.open(c).live(Instant::now()))
    }

    fn record_stats(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    fn collection_stats(&self, label: &str, f: impl FnOnce(&mut CollectionStats)) {
        f(lock(&self.stats).collections.entry(label.to_string()).or_default());
    }

    /// A request id in the service's style: `02`, 13 digits of epoch millis, 38 hex digits.
    fn new_request_id(&self) -> String {
        let seq = self.next_id.fetch_add(1, Ordering::Relaxed);
        let millis = chrono::Utc::now().timestamp_millis().max(0);
        format!("02{millis:013}{seq:038x}")
    }

    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            keys: &self.keys,
            api_keys: &self.api_keys,
            max_clock_skew: self.max_clock_skew,
        }
    }

    /// Draws this write's fault and slow delay. Always draws four numbers so that a given seed
    /// gives the same sequence whatever the probabilities.
    fn draw(&self, faults: &FaultConfig) -> (Fault, Option<bool>) {
        let mut rng = lock(&self.rng);
        let draws: [f64; 4] = [rng.random(), rng.random(), rng.random(), rng.random()];
        let [r, side, s, slow_side] = draws;
        let (side, slow_side) = (side < 0.5, slow_side < 0.5);
        let eb = faults.error_before;
        let ea = eb + faults.error_after;
        let dc = ea + faults.drop_connection;
        let fault = if r < eb {
            Fault::ErrorBefore
        } else if r < ea {
            Fault::ErrorAfter
        } else if r < dc {
            if side { Fault::DropBefore } else { Fault::DropAfter }
        } else {
            Fault::None
        };
        let slow = (faults.slow_ms > 0 && s < faults.slow).then_some(slow_side);
        (fault, slow)
    }

    fn jitter(&self, jitter_ms: u64) -> u64 {
        if jitter_ms == 0 {
            0
        } else {
            lock(&self.rng).random_range(0..=jitter_ms)
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for (path, is_get, api, action) in ROUTES {
        let handler = move |state: State<Arc<Shared>>, req: Request| data_plane(state, req, api, action);
        router = router.route(path, if is_get { get(handler) } else { post(handler) });
    }
    router
        .route("/admin/stats", get(admin_stats))
        .route("/admin/dump", get(admin_dump))
        .route("/admin/faults", get(admin_get_faults).put(admin_put_faults))
        .fallback(fallback)
        .with_state(shared)
}

async fn fallback(req: Request) -> Response {
    let body = json!({
        "code": "NotFound",
        "message": format!("no such API: {} {}", req.method(), req.uri().path()),
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn data_plane(State(shared): State<Arc<Shared>>, req: Request, api: Api, op: Action) -> Response {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .headers
        .get("x-tt-logid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| shared.new_request_id());
    shared.record_stats(|s| {
        s.requests += 1;
        *s.requests_by_op.entry(op.name().to_string()).or_default() += 1;
    });
    let faults = shared.faults();
    let delay = faults.latency_ms + shared.jitter(faults.jitter_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let f = Failure::Invalid(format!("the body is unreadable or over {MAX_BODY} bytes"));
            finish(&shared, Outcome::of(&f));
            return respond(api, &request_id, Reply::Fail(f));
        }
    };
    // Run to completion even if the client goes away, as a real server would.
    let task = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let incoming = Incoming {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                body: &body,
            };
            let (reply, outcome) = process(&shared, api, op, &incoming, &faults).await;
            finish(&shared, outcome);
            reply
        })
    };
    let reply = match task.await {
        Ok(reply) => reply,
        Err(_) => {
            finish(&shared, Outcome::Internal);
            Reply::Fail(Failure::Internal("the request handler failed".into()))
        }
    };
    let mut response = respond(api, &request_id, reply);
    if response.status() == StatusCode::TOO_MANY_REQUESTS
        && let Some(after) = shared.throttle_retry_after
        && let Ok(v) = HeaderValue::from_str(&retry_after_text(after))
    {
        response.headers_mut().insert("retry-after", v);
    }
    tracing::debug!(
        api = ?api,
        op = op.name(),
        status = response.status().as_u16(),
        %request_id,
        "emulator request"
    );
    response
}

/// `Retry-After` in seconds, with millisecond decimals when needed (`1`, `0.25`).
fn retry_after_text(after: Duration) -> String {
    let ms = after.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        let text = format!("{}.{:03}", ms / 1000, ms % 1000);
        text.trim_end_matches('0').to_string()
    }
}

fn finish(shared: &Shared, outcome: Outcome) {
    shared.record_stats(|s| {
        let counter = match outcome {
            Outcome::Ok => &mut s.ok,
            Outcome::Unauthorized => &mut s.unauthorized,
            Outcome::Forbidden => &mut s.forbidden,
            Outcome::Invalid => &mut s.invalid,
            Outcome::NotFound => &mut s.not_found,
            Outcome::DataNotFound => &mut s.data_not_found,
            Outcome::Throttled => &mut s.throttled,
            Outcome::Internal => &mut s.internal_errors,
            Outcome::ErrorBefore => &mut s.injected_error_before,
            Outcome::ErrorAfter => &mut s.injected_error_after,
            Outcome::DropBefore => &mut s.dropped_before_apply,
            Outcome::DropAfter => &mut s.dropped_after_apply,
        };
        *counter += 1;
        match outcome {
            Outcome::Unauthorized
            | Outcome::Forbidden
            | Outcome::Invalid
            | Outcome::NotFound
            | Outcome::DataNotFound
            | Outcome::Throttled => s.refused_requests += 1,
            Outcome::DropBefore | Outcome::DropAfter => s.dropped += 1,
            _ => {}
        }
    });
}

/// Authenticates, parses, validates and applies one data-plane request.
async fn process(shared: &Shared, api: Api, op: Action, req: &Incoming<'_>, faults: &FaultConfig) -> (Reply, Outcome) {
    match process_inner(shared, api, op, req, faults).await {
        Ok((reply, outcome)) => (reply, outcome),
        Err(f) => {
            let outcome = Outcome::of(&f);
            (Reply::Fail(f), outcome)
        }
    }
}

async fn process_inner(
    shared: &Shared,
    api: Api,
    op: Action,
    req: &Incoming<'_>,
    faults: &FaultConfig,
) -> Result<(Reply, Outcome), Failure> {
    if !(api == Api::V2 && op == Action::Ping) {
        let service = match api {
            Api::V1 => "air",
            Api::V2 => "vikingdb",
        };
        shared
            .verifier()
            .verify(req, service, api == Api::V2, chrono::Utc::now())
            .map_err(|e| match e {
                super::auth::AuthError::Unauthorized(m) => Failure::Unauthorized(m),
                super::auth::AuthError::Forbidden(m) => Failure::Forbidden(m),
            })?;
    }
    if op == Action::Ping {
        return Ok((Reply::Success(None), Outcome::Ok));
    }
    let body: Value =
        serde_json::from_slice(req.body).map_err(|e| Failure::Invalid(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(Failure::Invalid("the body must be a JSON object".into()));
    };
    let locator = locator(api, &body)?;
    let Some(cell) = shared.find(&locator) else {
        let name = match &locator {
            Locator::Name(n) | Locator::ResourceId(n) | Locator::Alias(n) => n.clone(),
        };
        return Err(Failure::CollectionNotFound(name));
    };
    let label = lock(cell).label().to_string();
    shared.collection_stats(&label, |c| c.requests += 1);

    // Only writes take `async` (fetch ignores it, as before).
    let is_async = matches!(op, Action::Write(_)) && bool_param(&body, "async")?;
    let prepared = match op {
        Action::Fetch => {
            let ids = keys_param(api, &body, shared, op)?;
            let c = shared.open(cell);
            let what = key_param_name(api);
            let keys = prepare_ids(&c.spec, what, &ids)?;
            let mut found = fetch(api, &c, &keys, &ids);
            if faults.fetch_hides_vectors {
                hide_vectors(&mut found, &c.spec);
            }
            return Ok((Reply::Success(Some(found)), Outcome::Ok));
        }
        Action::Write(Op::Upsert) | Action::Write(Op::Update) => {
            let what = match api {
                Api::V1 => "fields",
                Api::V2 => "data",
            };
            let rows = match body.get(what) {
                None | Some(Value::Null) => {
                    return Err(Failure::Missing(format!("`{what}` is required")));
                }
                Some(Value::Array(rows)) => rows,
                Some(_) => return Err(Failure::Invalid(format!("`{what}` must be an array"))),
            };
            note_largest(shared, op, rows.len());
            let ttl = ttl_param(&body)?;
            let given_ttl = body.contains_key("ttl").then_some(ttl);
            let ignore_unknown = bool_param(&body, "ignore_unknown_fields")?;
            let c = lock(cell);
            if is_async && (op != Action::Write(Op::Upsert) || c.spec.vectorize) {
                return Err(Failure::Invalid(ASYNC_ONLY_UPSERT.into()));
            }
            let vectors = match api {
                Api::V1 => VectorForms::ArraysOnly,
                Api::V2 if faults.packed_refused => VectorForms::ArraysOnly,
                Api::V2 if faults.packed_big_endian => VectorForms::PackedBigEndian,
                Api::V2 => VectorForms::AlsoPacked,
            };
            let upsert = op == Action::Write(Op::Upsert);
            let packed = rows
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|row| row.iter())
                .filter(|(name, value)| {
                    value.is_string() && c.spec.fields.get(*name) == Some(&vikingdb_types::FieldType::Vector)
                })
                .count() as u64;
            let rows = prepare_rows(&c.spec, what, rows, upsert, ignore_unknown, vectors)?;
            if packed > 0 {
                shared.record_stats(|s| s.packed_vectors += packed);
            }
            if op == Action::Write(Op::Upsert) {
                Prepared::Upsert { rows, ttl }
            } else {
                Prepared::Update { rows, ttl: given_ttl }
            }
        }
        Action::Write(Op::Delete) => {
            if is_async {
                return Err(Failure::Invalid(ASYNC_ONLY_UPSERT.into()));
            }
            if bool_param(&body, "del_all")? {
                note_largest(shared, op, 1);
                Prepared::DeleteAll
            } else {
                let ids = keys_param(api, &body, shared, op)?;
                let c = lock(cell);
                let keys = prepare_ids(&c.spec, key_param_name(api), &ids)?;
                Prepared::Delete(keys.into_iter().map(|(k, _)| k).collect())
            }
        }
        Action::Ping => return Ok((Reply::Success(None), Outcome::Ok)),
    };

    let rows = prepared.quota_rows();
    let pool = if is_async { Pool::Async } else { Pool::Sync };
    let admitted = lock(cell).take_quota(pool, rows, Instant::now());
    let n = u64::from(rows);
    let count = |throttled: &mut u64, throttled_async: &mut u64, sync: &mut u64, asy: &mut u64| match (admitted, pool) {
        (false, Pool::Sync) => *throttled += n,
        (false, Pool::Async) => {
            *throttled += n;
            *throttled_async += n;
        }
        (true, Pool::Sync) => *sync += n,
        (true, Pool::Async) => *asy += n,
    };
    shared.record_stats(|s| {
        count(
            &mut s.throttled_rows,
            &mut s.throttled_rows_async,
            &mut s.rows_accepted_sync,
            &mut s.rows_accepted_async,
        );
        let c = s.collections.entry(label.clone()).or_default();
        count(
            &mut c.throttled_rows,
            &mut c.throttled_rows_async,
            &mut c.rows_accepted_sync,
            &mut c.rows_accepted_async,
        );
    });
    if !admitted {
        let which = if is_async { "async upsert" } else { "row" };
        return Err(Failure::Throttled(format!(
            "the collection's {which} quota cannot take {rows} more rows now"
        )));
    }

    let (fault, slow) = shared.draw(faults);
    if slow.is_some() {
        shared.record_stats(|s| s.slowed += 1);
    }
    let slow_delay = Duration::from_millis(faults.slow_ms);
    if slow == Some(true) {
        tokio::time::sleep(slow_delay).await;
    }
    match fault {
        Fault::ErrorBefore => {
            return Ok((
                Reply::Fail(Failure::Internal("internal error".into())),
                Outcome::ErrorBefore,
            ));
        }
        Fault::DropBefore => return Ok((Reply::Drop, Outcome::DropBefore)),
        _ => {}
    }
    let applied = if is_async {
        lock(cell).enqueue_async(prepared, Instant::now());
        Applied::default()
    } else {
        shared
            .open(cell)
            .apply(&prepared, shared.update_missing, Instant::now())?
    };
    shared.record_stats(|s| {
        s.rows_applied_upsert += applied.upserted;
        s.rows_applied_update += applied.updated;
        s.rows_applied_delete += applied.deleted;
        s.rows_ignored_update += applied.ignored;
        s.del_all_applied += u64::from(applied.del_all);
    });
    shared.collection_stats(&label, |c| {
        c.rows_applied_upsert += applied.upserted;
        c.rows_applied_update += applied.updated;
        c.rows_applied_delete += applied.deleted;
    });
    if slow == Some(false) {
        tokio::time::sleep(slow_delay).await;
    }
    if matches!(fault, Fault::ErrorAfter | Fault::DropAfter) {
        // Queued async rows will land: they count as unacknowledged too.
        let queued = if is_async { n } else { 0 };
        let rows = applied.upserted + applied.updated + applied.deleted + queued;
        shared.record_stats(|s| s.rows_applied_unacknowledged += rows);
    }
    Ok(match fault {
        Fault::ErrorAfter => (
            Reply::Fail(Failure::Internal("internal error".into())),
            Outcome::ErrorAfter,
        ),
        Fault::DropAfter => (Reply::Drop, Outcome::DropAfter),
        _ => {
            let result = match (api, op) {
                (Api::V2, Action::Write(Op::Upsert) | Action::Write(Op::Update)) => Some(json!({"token_usage": {}})),
                _ => None,
            };
            (Reply::Success(result), Outcome::Ok)
        }
    })
}

fn note_largest(shared: &Shared, op: Action, rows: usize) {
    let rows = rows as u64;
    shared.record_stats(|s| {
        let e = s.largest_request_rows.entry(op.name().to_string()).or_default();
        *e = (*e).max(rows);
        match op {
            Action::Write(Op::Upsert) | Action::Write(Op::Update) => {
                s.largest_write_request_rows = s.largest_write_request_rows.max(rows);
            }
            Action::Write(Op::Delete) => s.largest_delete_request_rows = s.largest_delete_request_rows.max(rows),
            _ => {}
        }
    });
}

/// `collection_name`, else `collection_alias` (V1) / `resource_id` (V2); `""` counts as absent.
fn locator(api: Api, body: &Map<String, Value>) -> Result<Locator, Failure> {
    let text = |key: &str| -> Result<Option<String>, Failure> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Failure::Invalid(format!("`{key}` must be a string"))),
        }
    };
    let (other, wrap): (&str, fn(String) -> Locator) = match api {
        Api::V1 => ("collection_alias", Locator::Alias),
        Api::V2 => ("resource_id", Locator::ResourceId),
    };
    if let Some(name) = text("collection_name")? {
        return Ok(Locator::Name(name));
    }
    match text(other)? {
        Some(v) => Ok(wrap(v)),
        None => Err(Failure::Missing(format!("`collection_name` or `{other}` is required"))),
    }
}

fn key_param_name(api: Api) -> &'static str {
    match api {
        Api::V1 => "primary_keys",
        Api::V2 => "ids",
    }
}

/// The key list of a delete or fetch (V1 also takes a single scalar key).
fn keys_param(api: Api, body: &Map<String, Value>, shared: &Shared, op: Action) -> Result<Vec<Value>, Failure> {
    let what = key_param_name(api);
    let ids = match (api, body.get(what)) {
        (_, None | Some(Value::Null)) => {
            let alt = if op == Action::Write(Op::Delete) {
                " (or del_all)"
            } else {
                ""
            };
            return Err(Failure::Missing(format!("`{what}`{alt} is required")));
        }
        (_, Some(Value::Array(a))) => a.clone(),
        (Api::V1, Some(v @ (Value::String(_) | Value::Number(_)))) => vec![v.clone()],
        (Api::V1, Some(_)) => {
            return Err(Failure::Invalid(format!("`{what}` must be a key or an array of keys")));
        }
        (Api::V2, Some(_)) => return Err(Failure::Invalid(format!("`{what}` must be an array"))),
    };
    note_largest(shared, op, ids.len());
    Ok(ids)
}

/// `ttl`: absent or null = 0, else a non-negative integer.
fn ttl_param(body: &Map<String, Value>) -> Result<u64, Failure> {
    match body.get("ttl") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(t), _) => Ok(t),
            (None, Some(_)) => Err(Failure::Invalid("`ttl` must not be negative".into())),
            _ => Err(Failure::Invalid("`ttl` must be an integer number of seconds".into())),
        },
        Some(_) => Err(Failure::Invalid("`ttl` must be an integer number of seconds".into())),
    }
}

/// A boolean flag: absent or null = false.
fn bool_param(body: &Map<String, Value>, key: &str) -> Result<bool, Failure> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Failure::Invalid(format!("`{key}` must be true or false"))),
    }
}

/// The fetch payload: V2 `{fetch, ids_not_exist}`; V1 always an array, even for a scalar key
/// (the docs show a map, but the official Python and Java V1 SDKs read `data[0]`).
fn fetch(api: Api, c: &Collection, keys: &[(String, Value)], ids: &[Value]) -> Value {
    let now = Instant::now();
    match api {
        Api::V2 => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for ((key, pk), original) in keys.iter().zip(ids) {
                match c.get(key, now) {
                    Some(fields) => found.push(json!({"id": pk, "fields": fields})),
                    None => missing.push(original.clone()),
                }
            }
            json!({"fetch": found, "ids_not_exist": missing})
        }
        Api::V1 => {
            let items: Vec<Value> = keys
                .iter()
                .map(|(key, pk)| match c.get(key, now) {
                    Some(fields) => Value::Object(fields.clone()),
                    None => json!({ c.spec.primary_key.clone(): pk }),
                })
                .collect();
            Value::Array(items)
        }
    }
}

/// Leaves every vector field out of a fetch answer (`FaultConfig::fetch_hides_vectors`).
fn hide_vectors(found: &mut Value, spec: &super::CollectionSpec) {
    let is_vector = |name: &String| spec.fields.get(name) == Some(&vikingdb_types::FieldType::Vector);
    match found {
        // V1: the rows' fields themselves.
        Value::Array(rows) => {
            for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                row.retain(|name, _| !is_vector(name));
            }
        }
        // V2: {"fetch": [{"id", "fields"}], …}.
        Value::Object(answer) => {
            if let Some(Value::Array(rows)) = answer.get_mut("fetch") {
                for fields in rows.iter_mut().filter_map(|r| r.get_mut("fields")?.as_object_mut()) {
                    fields.retain(|name, _| !is_vector(name));
                }
            }
        }
        _ => {}
    }
}

/// Status, code and message of a failure in either API.
fn failure_parts(api: Api, f: &Failure) -> (StatusCode, Value, String) {
    match api {
        Api::V1 => {
            let (status, code, message) = match f {
                Failure::Unauthorized(m) => (401, 1000001, format!("unauthorized: {m}")),
                Failure::Forbidden(m) => (403, 1000002, format!("no permission: {m}")),
                Failure::Missing(m) | Failure::Invalid(m) => (400, 1000003, format!("invalid request: {m}")),
                Failure::CollectionNotFound(n) => (400, 1000005, format!("collection not exist: {n}")),
                Failure::DataNotFound(m) => (400, 1000011, format!("data not found: {m}")),
                Failure::Throttled(m) => (429, 1000029, format!("rate limited: {m}")),
                Failure::Internal(m) => (500, 1000028, m.clone()),
            };
            (status_code(status), json!(code), message)
        }
        Api::V2 => {
            let (status, code, message) = match f {
                Failure::Unauthorized(m) => (401, "Unauthorized", m.clone()),
                Failure::Forbidden(m) => (403, "Forbidden", m.clone()),
                Failure::Missing(m) => (400, "MissingParameter", m.clone()),
                Failure::Invalid(m) => (400, "InvalidParameter", m.clone()),
                Failure::CollectionNotFound(n) => (
                    404,
                    "NotFound.VikingdbCollection",
                    format!("The specified collection '{n}' of VikingDB does not exist."),
                ),
                Failure::DataNotFound(m) => (404, "NotFound.Data", m.clone()),
                Failure::Throttled(m) => (429, "RequestLimitExceeded", m.clone()),
                Failure::Internal(m) => (500, "InternalServerError", m.clone()),
            };
            (status_code(status), json!(code), message)
        }
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn respond(api: Api, request_id: &str, reply: Reply) -> Response {
    let (status, body) = match reply {
        Reply::Success(payload) => {
            let body = match api {
                Api::V2 => json!({
                    "code": "Success",
                    "message": V2_SUCCESS_MESSAGE,
                    "request_id": request_id,
                    "result": payload,
                }),
                Api::V1 => {
                    let mut body = json!({"code": 0, "message": "success", "request_id": request_id});
                    if let (Some(data), Some(obj)) = (payload, body.as_object_mut()) {
                        obj.insert("data".into(), data);
                    }
                    body
                }
            };
            (StatusCode::OK, body)
        }
        Reply::Fail(f) => {
            let (status, code, message) = failure_parts(api, &f);
            let mut body = json!({"code": code, "message": message, "request_id": request_id});
            if let (Api::V2, Some(obj)) = (api, body.as_object_mut()) {
                obj.insert("result".into(), Value::Null);
            }
            (status, body)
        }
        Reply::Drop => return broken_response(request_id),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-tt-logid", v);
    }
    response
}

/// A response whose body fails before its first byte: hyper then aborts the connection, so the
/// client sees a transport error instead of an answer.
fn broken_response(request_id: &str) -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected connection drop",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-tt-logid", v);
    }
    response
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

fn admin_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// The query of `/admin/dump`.
#[derive(serde::Deserialize)]
struct DumpQuery {
    collection: Option<String>,
}

/// `?collection=NAME` dumps one collection's live records; without it, every collection's.
async fn admin_dump(State(shared): State<Arc<Shared>>, Query(query): Query<DumpQuery>) -> Response {
    match query.collection {
        Some(name) => match shared.records(&name) {
            Some(records) => axum::Json(records).into_response(),
            None => admin_error(StatusCode::NOT_FOUND, format!("no collection `{name}`")),
        },
        None => {
            let now = Instant::now();
            let all: Map<String, Value> = shared
                .collections
                .iter()
                .map(|c| {
                    let c = shared.open(c);
                    let records = serde_json::to_value(c.live(now)).unwrap_or(Value::Null);
                    (c.label().to_string(), records)
                })
                .collect();
            axum::Json(all).into_response()
        }
    }
}

async fn admin_get_faults(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.faults()).into_response()
}

/// Replaces the faults; keys left out take their defaults (no fault).
async fn admin_put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: FaultConfig = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
    };
    if let Err(e) = faults.check() {
        return admin_error(StatusCode::BAD_REQUEST, e);
    }
    tracing::info!(?faults, "emulator faults changed");
    shared.set_faults(faults.clone());
    axum::Json(faults).into_response()
}
