//! The sender: signs and sends one batch, retries what is retryable, and isolates refused rows.
//!
//! Owns: the HTTP client (rustls, keep-alive pool, timeouts), request bodies' buffers (reused),
//! per-attempt signing (fresh `X-Date`, body hashed once per body), backoff (capped exponential,
//! full jitter, `Retry-After` honoured), feeding throttles to the limiter, and splitting a refused
//! batch in halves until each refused row stands alone.
//! Never: drops a row (every row comes back applied or rejected, or the whole call fails),
//! reorders rows of a key, or puts a secret into an error or log.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use rand::Rng;

use super::api::{self, Locator, ServerError};
use super::retry::{self, Action, WireError};
use crate::batch::Batch;
use crate::config::{ApiVersion, Credentials, RetryConfig};
use crate::limit::{ConcurrencyController, Outcome, RateController};
use crate::record::{Op, Record};
use crate::report::Stats;
use vikingdb_types::sign;

/// Why a batch could not be finished. The run stops.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server's answer means the run cannot go on (credentials, permission, collection, a redirect).
    #[error("{message}")]
    Fatal {
        message: String,
        #[source]
        source: Box<WireError>,
    },
    #[error(
        "gave up on a request of {rows} {op} rows after {attempts} attempts; the last was {}: {last}. The \
         service may be down, the network unreachable or something in between answering instead of VikingDB; \
         run again to continue",
        if *throttled { "throttled" } else { "a retryable failure" }
    )]
    Exhausted {
        op: Op,
        rows: usize,
        attempts: usize,
        throttled: bool,
        #[source]
        last: Box<WireError>,
    },
    #[error("bad endpoint `{0}`: expected scheme://host[:port]")]
    Endpoint(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A bug in vikingsync, not a problem with the server or the input.
    #[error("internal error: {0}. This is a bug in vikingsync; please report it")]
    Internal(String),
}

/// What happened to each row of a batch.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub applied: Vec<Record>,
    pub rejected: Vec<(Record, ServerError)>,
}

/// Everything the sender needs to reach one collection.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: String,
    pub region: String,
    pub api: ApiVersion,
    pub locator: Locator,
    pub ignore_unknown_fields: bool,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The most requests in flight (sizes the connection pool).
    pub max_concurrency: usize,
    /// Send upserts with `"async": true`, paced by the async rate controller.
    pub async_upsert: bool,
}

/// The flow controllers a sender obeys: shared with the coordinator (and every sender of the
/// collection in this process).
#[derive(Debug, Clone)]
pub struct Flow {
    /// Sync writes, updates and deletes.
    pub rate: Arc<RateController>,
    /// Async upserts (`[collection] async_upsert`).
    pub async_rate: Arc<RateController>,
    pub concurrency: Arc<ConcurrencyController>,
}

/// Request bodies' buffers, handed back when the last copy of a body is dropped (sent, or given up)
/// and reused for the next body: a fresh buffer of a few hundred KiB for every request was fresh
/// memory from the allocator each time (page faults, and heap growing and trimming), about as
/// much CPU as writing the body. At most [`POOLED_BODIES`] are kept; buffers larger than
/// [`POOLED_BODY_MAX`] are not.
#[derive(Debug, Default)]
struct BodyPool(std::sync::Mutex<Vec<Vec<u8>>>);

/// About the requests in flight at the usual concurrency.
const POOLED_BODIES: usize = 8;
/// A bigger buffer (a request of unusually large rows) goes back to the allocator.
const POOLED_BODY_MAX: usize = 4 << 20;

impl BodyPool {
    /// An empty buffer, with room from an earlier body when there is one.
    fn take(&self) -> Vec<u8> {
        self.0.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default()
    }
}

/// A body's bytes, back to the pool when `Bytes` drops its last copy.
struct PooledBody {
    buf: Vec<u8>,
    pool: Arc<BodyPool>,
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if buf.capacity() <= POOLED_BODY_MAX
            && let Ok(mut pool) = self.pool.0.lock()
            && pool.len() < POOLED_BODIES
        {
            pool.push(buf);
        }
    }
}

/// One HTTP answer as read off the wire.
pub(super) struct Answer {
    endpoint: String,
    status: u16,
    request_id: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    pub(super) bytes: Vec<u8>,
}

impl Answer {
    pub(super) fn reply(&self) -> api::Reply<'_> {
        api::Reply {
            status: self.status,
            body: &self.bytes,
            request_id: self.request_id.as_deref(),
            retry_after: self.retry_after,
            location: self.location.as_deref(),
            endpoint: &self.endpoint,
        }
    }
}

/// Sends batches to one collection. Cheap to share behind an `Arc`.
pub struct Sender {
    http: reqwest::Client,
    base: String,
    host: String,
    target: Target,
    credentials: Credentials,
    flow: Flow,
    retry: RetryConfig,
    stats: Arc<Stats>,
    bodies: Arc<BodyPool>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Pushes `rows` onto `stack` as pieces of at most `size` rows, so that popping sends them in order.
fn push_pieces(stack: &mut Vec<Vec<Record>>, mut rows: Vec<Record>, size: usize) {
    let size = size.max(1);
    while rows.len() > size {
        let tail = rows.split_off(rows.len() - ((rows.len() - 1) % size + 1));
        stack.push(tail);
    }
    stack.push(rows);
}

/// One failed attempt, with what was decided about it.
#[derive(Debug)]
pub(super) enum AttemptError {
    Throttled(Option<Duration>, WireError),
    Retryable(WireError),
    Fatal(String, WireError),
}

impl AttemptError {
    pub(super) fn wire(&self) -> &WireError {
        match self {
            AttemptError::Throttled(_, e) | AttemptError::Retryable(e) | AttemptError::Fatal(_, e) => e,
        }
    }
}

pub(super) enum Sent {
    Applied,
    Refused(ServerError),
    /// Throttled while larger than a request may now be: send it again as smaller requests.
    TooLarge,
}

impl Sender {
    pub fn new(
        target: Target,
        credentials: Credentials,
        flow: Flow,
        retry: RetryConfig,
        stats: Arc<Stats>,
    ) -> Result<Sender, SendError> {
        let url = reqwest::Url::parse(&target.endpoint).map_err(|_| SendError::Endpoint(target.endpoint.clone()))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(SendError::Endpoint(target.endpoint.clone())),
        };
        let base = format!("{}://{host}", url.scheme());
        let mut builder = reqwest::Client::builder()
            .connect_timeout(target.connect_timeout)
            .timeout(target.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(target.max_concurrency.max(1) * 2)
            // The data plane never redirects; a redirect is reported, never followed (a 302 followed
            // as a GET would drop the body and look like success).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vikingsync/", env!("CARGO_PKG_VERSION")));
        if url
            .host_str()
            .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
        {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(SendError::Client)?;
        Ok(Sender {
            http,
            base,
            host,
            target,
            credentials,
            flow,
            retry,
            stats,
            bodies: Arc::default(),
        })
    }

    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    pub(super) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sends a batch: every row comes back applied or rejected (with the server's reason), or the
    /// call fails and the run must stop.
    pub async fn send(&self, batch: Batch) -> Result<BatchResult, SendError> {
        let mut result = BatchResult::default();
        // Depth-first over pieces, left first, so rows keep their order. A batch larger than the
        // rate controller's request size goes as several smaller requests, in order.
        let size = self.request_rows(batch.op, batch.records.len());
        let mut stack = Vec::with_capacity(batch.records.len().div_ceil(size));
        push_pieces(&mut stack, batch.records, size);
        while let Some(mut rows) = stack.pop() {
            let asynchronous = self.target.async_upsert && batch.op == Op::Upsert;
            match self.send_with_retry(batch.op, batch.ttl, &rows, asynchronous).await? {
                Sent::Applied => result.applied.append(&mut rows),
                Sent::Refused(err) if rows.len() == 1 => {
                    result.rejected.extend(rows.drain(..).map(|rec| (rec, err.clone())));
                }
                Sent::Refused(err) => {
                    tracing::debug!(rows = rows.len(), %err, "request refused; splitting to isolate the bad rows");
                    let right = rows.split_off(rows.len() / 2);
                    stack.push(right);
                    stack.push(rows);
                }
                Sent::TooLarge => {
                    // Sized before the rate was cut: at a strict server, a request larger than the
                    // others' rarely finds room, and its retries back off to seconds while the
                    // process sends nothing (measured: one of three shards idle for 17 s behind
                    // one 73-row request when the rate allowed 10).
                    let size = self.request_rows(batch.op, rows.len());
                    tracing::debug!(
                        rows = rows.len(),
                        size,
                        "throttled request larger than the rate allows; resizing"
                    );
                    push_pieces(&mut stack, rows, size);
                }
            }
        }
        Ok(result)
    }

    /// Sends `rows` as one request (`"async": true` when `asynchronous`), retrying what is
    /// retryable.
    pub(super) async fn send_with_retry(
        &self,
        op: Op,
        ttl: Option<u32>,
        rows: &[Record],
        asynchronous: bool,
    ) -> Result<Sent, SendError> {
        let t = &self.target;
        let mut buf = self.bodies.take();
        api::write_body(
            &mut buf,
            t.api,
            &t.locator,
            op,
            ttl,
            api::Flags {
                ignore_unknown: t.ignore_unknown_fields,
                asynchronous,
            },
            rows,
        );
        let body = Bytes::from_owner(PooledBody {
            buf,
            pool: Arc::clone(&self.bodies),
        });
        let hash = sign::sha256_hex(&body);
        let path = api::path(t.api, op);
        let backoff = self.backoff();
        let mut attempts = 0usize;
        let deadline = Instant::now().checked_add(self.retry.max_elapsed());
        let max_backoff = self.retry.max_backoff();
        let outcome = (|| {
            attempts += 1;
            self.attempt(asynchronous, path, rows.len(), body.clone(), &hash)
        })
        .retry(backoff)
        .when(|e| match e {
            AttemptError::Fatal(..) => false,
            // Throttled and now larger than a request may be: resized by the caller, not retried.
            AttemptError::Throttled(..) => self.request_rows(op, rows.len()) >= rows.len(),
            AttemptError::Retryable(_) => true,
        })
        .adjust(|e, delay| {
            // Full jitter: a uniform pick in [0, delay]. Retry-After is honoured up to max_backoff,
            // and no wait runs past max_elapsed: past it, the request gives up.
            let jittered = delay.map(|d| d.mul_f64(rand::rng().random::<f64>()));
            let wait = match e {
                AttemptError::Throttled(Some(after), _) => jittered.map(|j| j.max((*after).min(max_backoff))),
                _ => jittered,
            }?;
            match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    (!left.is_zero()).then(|| wait.min(left))
                }
                None => Some(wait),
            }
        })
        .notify(|e, delay| {
            self.stats.retries.fetch_add(1, Relaxed);
            tracing::debug!(error = %e.wire(), ?delay, rows = rows.len(), %op, "retrying");
        })
        .await;
        match outcome {
            Ok(sent) => Ok(sent),
            Err(AttemptError::Throttled(..)) if self.request_rows(op, rows.len()) < rows.len() => Ok(Sent::TooLarge),
            Err(AttemptError::Fatal(message, source)) => Err(SendError::Fatal {
                message,
                source: Box::new(source),
            }),
            Err(e) => Err(SendError::Exhausted {
                op,
                rows: rows.len(),
                attempts,
                throttled: matches!(e, AttemptError::Throttled(..)),
                last: Box::new(match e {
                    AttemptError::Throttled(_, w) | AttemptError::Retryable(w) | AttemptError::Fatal(_, w) => w,
                }),
            }),
        }
    }

    /// Rows per request for `op` now: the rate controller sizes requests (see
    /// [`RateController::request_rows`]).
    fn request_rows(&self, op: Op, batch: usize) -> usize {
        self.rate_for(op).request_rows(batch)
    }

    /// Whether the endpoint answers HTTP at all (any status): a GET of its root, unsigned. For
    /// readiness, not a credential check.
    pub async fn ping(&self) -> Result<u16, String> {
        match self.http.get(format!("{}/", self.base)).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(WireError::transport(&format!("GET {}/", self.base), e).to_string()),
        }
    }

    /// Requests that may be in flight now (the concurrency controller's limit).
    pub fn in_flight_limit(&self) -> usize {
        self.flow.concurrency.limit()
    }

    /// The rate controller a request of `op` obeys.
    fn rate_for(&self, op: Op) -> &RateController {
        if self.target.async_upsert && op == Op::Upsert {
            &self.flow.async_rate
        } else {
            &self.flow.rate
        }
    }

    /// One attempt, paced by the rate controller of its kind (async upserts have their own).
    async fn attempt(
        &self,
        asynchronous: bool,
        path: &str,
        rows: usize,
        body: Bytes,
        hash: &str,
    ) -> Result<Sent, AttemptError> {
        let rate = if asynchronous {
            &self.flow.async_rate
        } else {
            &self.flow.rate
        };
        let sent_at = rate.acquire(rows).await;
        let flight = self.flow.concurrency.start();
        self.stats.requests.fetch_add(1, Relaxed);
        self.stats.in_flight.fetch_add(1, Relaxed);
        let on_wire = std::time::Instant::now();
        let outcome = self.exchange(path, body, hash).await;
        self.stats.in_flight.fetch_sub(1, Relaxed);
        let status = match &outcome {
            Ok(Sent::Applied) => Some(200),
            Ok(Sent::Refused(e)) => Some(e.status),
            Ok(Sent::TooLarge) => None,
            Err(AttemptError::Throttled(_, w) | AttemptError::Retryable(w) | AttemptError::Fatal(_, w)) => w.status(),
        };
        self.stats
            .observe_request(status.unwrap_or(0), status.map(|_| on_wire.elapsed().as_secs_f64()));
        match &outcome {
            Ok(_) => {
                rate.accepted(rows);
                flight.finish(Outcome::Answered);
            }
            Err(AttemptError::Throttled(retry_after, _)) => {
                flight.finish(Outcome::Throttled);
                self.stats.throttles.fetch_add(1, Relaxed);
                if rate.throttled(sent_at, *retry_after) {
                    self.stats.rate_cuts.fetch_add(1, Relaxed);
                }
            }
            Err(AttemptError::Retryable(_)) => flight.finish(Outcome::BackPressure),
            Err(AttemptError::Fatal(..)) => flight.finish(Outcome::Neutral),
        }
        self.stats
            .observe_flow(rate.current_rate(), self.flow.concurrency.limit());
        outcome
    }

    /// The retry policy of every request: capped exponential, at most `max_attempts`, within
    /// `max_elapsed` (jitter and `Retry-After` are added by the caller).
    pub(super) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry.initial_backoff())
            .with_max_delay(self.retry.max_backoff())
            .with_factor(2.0)
            .with_max_times(self.retry.max_attempts.saturating_sub(1))
            .with_total_delay(Some(self.retry.max_elapsed()))
    }

    /// One HTTP exchange, read and classified.
    async fn exchange(&self, path: &str, body: Bytes, hash: &str) -> Result<Sent, AttemptError> {
        let answer = self.round_trip(path, body, hash).await?;
        self.classify(&answer.reply())
    }

    /// What an answer means for the request that got it: [`Sent::Applied`] for a VikingDB
    /// success, else the failure typed as [`retry::decide`] says.
    #[allow(
        clippy::result_large_err,
        reason = "the error every attempt returns (the async ones are not linted); one per answer"
    )]
    pub(super) fn classify(&self, reply: &api::Reply<'_>) -> Result<Sent, AttemptError> {
        let Err(wire) = retry::read(self.target.api, reply) else {
            return Ok(Sent::Applied);
        };
        match retry::decide(self.target.api, &wire) {
            Action::Split(e) => Ok(Sent::Refused(e)),
            Action::Throttle(retry_after) => Err(AttemptError::Throttled(retry_after, wire)),
            Action::Retry => Err(AttemptError::Retryable(wire)),
            Action::Fatal(message) => Err(AttemptError::Fatal(message, wire)),
        }
    }

    /// One signed POST and its answer, read up to [`MAX_RESPONSE_BYTES`]; a transport failure or
    /// a longer answer is retryable.
    pub(super) async fn round_trip(&self, path: &str, body: Bytes, hash: &str) -> Result<Answer, AttemptError> {
        let endpoint = format!("POST {}{path}", self.base);
        let request = self.request(path, body, hash);
        let mut response = request
            .send()
            .await
            .map_err(|e| AttemptError::Retryable(WireError::transport(&endpoint, e)))?;
        let status = response.status().as_u16();
        let request_id = header(&response, "x-tt-logid");
        let location = header(&response, "location");
        let retry_after = header(&response, "retry-after")
            .and_then(|v| parse_retry_after(&v))
            .map(|d| d.min(self.retry.max_backoff()));
        let bytes = match read_capped(&mut response, MAX_RESPONSE_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(AttemptError::Retryable(WireError::Oversized {
                    endpoint,
                    status,
                    limit_kib: MAX_RESPONSE_BYTES / 1024,
                }));
            }
            Err(e) => return Err(AttemptError::Retryable(WireError::transport(&endpoint, e))),
        };
        Ok(Answer {
            endpoint,
            status,
            request_id,
            location,
            retry_after,
            bytes,
        })
    }

    /// Builds one signed request. The bytes sent are the bytes hashed.
    pub(super) fn request(&self, path: &str, body: Bytes, hash: &str) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .header("Host", &self.host);
        let builder = match &self.credentials {
            Credentials::ApiKey(key) => builder.header("Authorization", format!("Bearer {}", key.expose())),
            Credentials::Signed {
                access_key,
                secret_key,
                session_token,
            } => {
                let x_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let mut headers: Vec<(&str, &str)> = vec![
                    ("Content-Type", "application/json"),
                    ("Host", &self.host),
                    ("X-Date", &x_date),
                    ("X-Content-Sha256", hash),
                ];
                if let Some(token) = session_token {
                    headers.push(("X-Security-Token", token.expose()));
                }
                let service = match self.target.api {
                    ApiVersion::V2 => "vikingdb",
                    ApiVersion::V1 => "air",
                };
                let auth = sign::authorization(
                    access_key,
                    secret_key.expose(),
                    &x_date,
                    &self.target.region,
                    service,
                    &sign::SigningInput {
                        method: "POST",
                        path,
                        query: &[],
                        headers: &headers,
                        body_sha256: hash,
                    },
                );
                let mut b = builder
                    .header("X-Date", &x_date)
                    .header("X-Content-Sha256", hash)
                    .header("Authorization", auth);
                if let Some(token) = session_token {
                    b = b.header("X-Security-Token", token.expose());
                }
                b
            }
        };
        builder.body(body)
    }
}

/// A data-plane write answer is a few hundred bytes; anything bigger is not one, and is not read
/// into memory.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Reads a body up to `cap` bytes. `None`: it is longer (the rest is left unread).
async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > cap {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(300.0)));
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_buffer_goes_back_to_the_pool_when_its_last_copy_is_dropped() {
        let pool = Arc::new(BodyPool::default());
        let pooled = |buf: Vec<u8>| {
            Bytes::from_owner(PooledBody {
                buf,
                pool: Arc::clone(&pool),
            })
        };
        let body = pooled(b"{\"a\":1}".to_vec());
        let copy = body.clone();
        drop(body);
        assert_eq!(pool.0.lock().expect("pool").len(), 0, "a copy is still alive");
        assert_eq!(&copy[..], b"{\"a\":1}");
        drop(copy);
        let again = pool.take();
        assert!(again.is_empty() && again.capacity() >= 7, "{again:?}");
        assert!(pool.take().capacity() == 0, "one buffer was pooled");
        // At most POOLED_BODIES are kept, and none larger than POOLED_BODY_MAX.
        drop(pooled(Vec::with_capacity(POOLED_BODY_MAX + 1)));
        assert_eq!(pool.0.lock().expect("pool").len(), 0);
        let bodies: Vec<Bytes> = (0..POOLED_BODIES + 3).map(|_| pooled(vec![1; 16])).collect();
        drop(bodies);
        assert_eq!(pool.0.lock().expect("pool").len(), POOLED_BODIES);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sat, 01 Jan 2000 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
