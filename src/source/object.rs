//! Object storage sources: `s3://bucket/key` (AWS S3 or any S3-compatible store) and
//! `tos://bucket/key` (Volcengine TOS through its S3-compatible endpoint), read through the
//! `object_store` crate.
//!
//! Owns: parsing object URLs, building one S3 client per bucket from resolved [`StorageSettings`]
//! (endpoint, region, addressing, keys), listing a prefix and matching the keys with the same
//! glob rules as local files, and blocking reads for the sync readers: an [`ObjectFile`] serves
//! byte ranges (Parquet's footer and page windows, through `parquet_reader`'s `ChunkReader`) and
//! sequential streams ([`ObjectRead`], for CSV/JSONL and their gzip/zstd forms) as a chain of
//! bounded ranged GETs (at most two chunks of [`CHUNK_BYTES`] in memory: the one being read and
//! the one fetched ahead), every one with `If-Match: <the listed ETag>`, so that an object
//! rewritten during a read stops the read instead of mixing two versions.
//! Never: downloads a whole object into memory, follows a redirect, retries a 4xx, asks the
//! instance metadata service for keys (no keys is a config error before any request), or puts a
//! secret in a message or a `Debug` output.
//!
//! The requests run on a small runtime of their own (one worker thread): the readers are sync
//! and run on a plain thread, and planning runs inside the main runtime; both wait for the
//! answer on a channel, which is safe from any thread.

use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path as KeyPath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::secret::Secret;

/// Bytes of one ranged GET of a sequential read.
pub const CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// The URL schemes of object sources.
pub const SCHEMES: [&str; 2] = ["s3://", "tos://"];

/// Whether a source path names objects (`s3://…` or `tos://…`) rather than local files.
pub fn is_object_url(path: &str) -> bool {
    SCHEMES.iter().any(|s| path.starts_with(s))
}

/// Which protocol family an object URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    S3,
    Tos,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://",
            Scheme::Tos => "tos://",
        }
    }
}

/// `s3://bucket/key` split into its parts. The key may hold glob characters (a pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    pub scheme: Scheme,
    pub bucket: String,
    pub key: String,
}

impl ObjectUrl {
    /// Parses `s3://bucket/key` or `tos://bucket/key`; the error says what is wrong.
    pub fn parse(url: &str) -> Result<ObjectUrl, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("s3://") {
            (Scheme::S3, r)
        } else if let Some(r) = url.strip_prefix("tos://") {
            (Scheme::Tos, r)
        } else {
            return Err(format!(
                "{url:?} is not an object URL (s3://bucket/key or tos://bucket/key)"
            ));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(format!(
                "{url:?}: {bucket:?} is not a valid bucket name (3 to 63 lower-case letters, digits, '-' and '.')"
            ));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(format!(
                "{url:?} names no object: give a key or a glob after the bucket, e.g. {}{bucket}/exports/*.csv.gz",
                scheme.prefix()
            ));
        }
        if key.starts_with('/') || key.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!(
                "{url:?}: the key has an empty, '.' or '..' segment; object keys are matched literally"
            ));
        }
        Ok(ObjectUrl {
            scheme,
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The key's part before its first glob character, up to its last `/`: the prefix to list.
    fn list_prefix(&self) -> &str {
        let literal = match self.key.find(['*', '?', '[']) {
            Some(i) => &self.key[..i],
            None => &self.key,
        };
        match literal.rfind('/') {
            Some(i) => &literal[..i],
            None => "",
        }
    }

    fn is_pattern(&self) -> bool {
        self.key.contains(['*', '?', '['])
    }

    fn with_key(&self, key: &str) -> ObjectUrl {
        ObjectUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/{}", self.scheme.prefix(), self.bucket, self.key)
    }
}

/// How the bucket goes into the request URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// `{endpoint}/{bucket}/{key}`: S3-compatible servers, MinIO, moto.
    Path,
    /// `{bucket}.{endpoint host}/{key}`: AWS, and the only style TOS accepts.
    Virtual,
}

/// An access key pair for the object store.
#[derive(Clone)]
pub struct StorageKeys {
    pub access_key: String,
    pub secret_key: Secret,
    pub session_token: Option<Secret>,
    /// Where the keys came from (`[storage] files`, `AWS_* environment`, …), for messages.
    pub origin: String,
}

impl fmt::Debug for StorageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageKeys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("origin", &self.origin)
            .finish()
    }
}

/// Everything needed to reach one scheme's buckets, resolved from `[storage]` and the environment
/// (see `config::storage`).
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// `None`: AWS's regional endpoint (s3://) or TOS's `https://{bucket}.tos-s3-{region}.volces.com`.
    pub endpoint: Option<String>,
    pub region: String,
    pub addressing: Addressing,
    pub allow_http: bool,
    /// `None`: the keys come from a web identity token or the container credentials endpoint
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_CONTAINER_CREDENTIALS_*`), which object_store reads.
    pub keys: Option<StorageKeys>,
    /// Seconds for one request, body included.
    pub request_timeout: f64,
    pub connect_timeout: f64,
}

impl StorageSettings {
    /// The endpoint requests for `bucket` go to, with the bucket in the host for virtual-hosted
    /// addressing (object_store takes such an endpoint verbatim).
    pub fn bucket_endpoint(&self, scheme: Scheme, bucket: &str) -> Option<String> {
        let endpoint = match (&self.endpoint, scheme) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Scheme::Tos) => format!("https://tos-s3-{}.volces.com", self.region),
            (None, Scheme::S3) if self.addressing == Addressing::Virtual => {
                format!("https://s3.{}.amazonaws.com", self.region)
            }
            (None, Scheme::S3) => return None,
        };
        if self.addressing == Addressing::Path {
            return Some(endpoint);
        }
        let Some((proto, host)) = endpoint.split_once("://") else {
            return Some(endpoint);
        };
        if host.starts_with(&format!("{bucket}.")) {
            Some(endpoint)
        } else {
            Some(format!("{proto}://{bucket}.{host}"))
        }
    }
}

/// A reqwest client that never follows a redirect (a 3xx is an error naming the status), with
/// the configured timeouts. object_store's own connector follows up to ten.
#[derive(Debug)]
struct NoRedirects {
    timeout: Duration,
    connect_timeout: Duration,
}

impl HttpConnector for NoRedirects {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// The runtime the object requests run on; shut down without blocking when dropped (it may be
/// dropped inside the main runtime).
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One bucket's client: (scheme, bucket name) → store.
type BucketClient = ((Scheme, String), Arc<dyn ObjectStore>);

/// The clients of every bucket a config reads, and the runtime their requests run on.
pub struct Storage {
    s3: Option<StorageSettings>,
    tos: Option<StorageSettings>,
    runtime: IoRuntime,
    stores: Mutex<Vec<BucketClient>>,
    /// Bytes of one ranged GET of a sequential read ([`CHUNK_BYTES`]; smaller in tests).
    chunk_bytes: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("s3", &self.s3)
            .field("tos", &self.tos)
            .finish_non_exhaustive()
    }
}

/// A failed object request, with what to do about it; never holds a secret.
fn describe(e: &object_store::Error) -> String {
    let hint = match e {
        object_store::Error::NotFound { .. } => {
            " (no such bucket or object: check the bucket name, the key, the endpoint and the region)"
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            " (access denied: check the access key pair ([storage] key files, AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY, or for tos:// the Volcengine AK/SK), its permission to list and read \
             the bucket, and the region)"
        }
        object_store::Error::Precondition { .. } => {
            " (the object was rewritten while it was read: its ETag changed; run again to read the new version)"
        }
        _ => "",
    };
    let text = tidy(&e.to_string());
    let extra = if hint.is_empty() && text.contains("status code: 3") {
        " (a redirect, which is never followed: check the endpoint, the region and [storage] addressing; AWS \
         redirects requests for a bucket of another region)"
    } else if hint.is_empty() && text.contains("non-partial response") {
        " (the server ignored the byte range: is the endpoint an S3 API?)"
    } else if hint.is_empty() && text.contains("403") {
        " (access denied: check the access key pair and its permission to list and read the bucket)"
    } else if hint.is_empty() && (text.contains("NoSuchBucket") || text.contains("404")) {
        " (no such bucket or object: check the bucket name, the endpoint and the region)"
    } else {
        hint
    };
    format!("{text}{extra}")
}

/// An S3 error body reduced to its code and message (`403 Forbidden: InvalidAccessKeyId: The AWS
/// Access Key Id you provided does not exist in our records.`); any other text cut to 600
/// characters (an odd answer's body can be long).
fn tidy(text: &str) -> String {
    let between = |open: &str, close: &str| -> Option<String> {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].to_string())
    };
    if let (Some(code), Some(message)) = (between("<Code>", "</Code>"), between("<Message>", "</Message>"))
        && let Some(body) = text.find("<?xml").or_else(|| text.find("<Error>"))
    {
        return format!("{}{code}: {message}", &text[..body]);
    }
    text.chars().take(600).collect()
}

impl Storage {
    /// A storage for the given settings of each scheme (`None`: no source uses that scheme).
    pub fn new(s3: Option<StorageSettings>, tos: Option<StorageSettings>) -> io::Result<Arc<Storage>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vikingsync-objects")
            .enable_all()
            .build()?;
        Ok(Arc::new(Storage {
            s3,
            tos,
            runtime: IoRuntime(Some(runtime)),
            stores: Mutex::new(Vec::new()),
            chunk_bytes: std::sync::atomic::AtomicU64::new(CHUNK_BYTES),
        }))
    }

    /// Sets the bytes of one ranged GET of sequential reads (at least 1; tests use small chunks to
    /// cross chunk boundaries inside rows and gzip members).
    pub fn set_chunk_bytes(&self, n: u64) {
        self.chunk_bytes.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `fut` on the storage's runtime and waits for it from this (any) thread.
    fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> io::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.spawn(fut, tx)?;
        rx.recv()
            .map_err(|_| io::Error::other("the object storage runtime stopped before answering"))
    }

    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
        tx: mpsc::SyncSender<T>,
    ) -> io::Result<()> {
        let Some(rt) = &self.runtime.0 else {
            return Err(io::Error::other("the object storage runtime is shut down"));
        };
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        Ok(())
    }

    fn settings(&self, scheme: Scheme) -> Result<&StorageSettings, String> {
        match scheme {
            Scheme::S3 => self.s3.as_ref(),
            Scheme::Tos => self.tos.as_ref(),
        }
        .ok_or_else(|| format!("no storage settings for {}", scheme.prefix()))
    }

    /// The client of one bucket, built on first use.
    fn store(&self, scheme: Scheme, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = stores.iter().find(|((sc, b), _)| *sc == scheme && b == bucket) {
            return Ok(s.clone());
        }
        let settings = self.settings(scheme)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http)
            .with_http_connector(NoRedirects {
                timeout: Duration::from_secs_f64(settings.request_timeout),
                connect_timeout: Duration::from_secs_f64(settings.connect_timeout),
            })
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        let endpoint = settings.bucket_endpoint(scheme, bucket);
        tracing::info!(
            bucket = %format!("{}{bucket}", scheme.prefix()),
            endpoint = endpoint.as_deref().unwrap_or("AWS (regional)"),
            region = %settings.region,
            addressing = ?settings.addressing,
            keys = settings.keys.as_ref().map_or("web identity / container credentials", |k| k.origin.as_str()),
            "object storage client"
        );
        match endpoint {
            Some(e) => {
                builder = builder
                    .with_endpoint(e)
                    .with_virtual_hosted_style_request(settings.addressing == Addressing::Virtual);
            }
            None => builder = builder.with_virtual_hosted_style_request(false),
        }
        if let Some(keys) = &settings.keys {
            builder = builder
                .with_access_key_id(&keys.access_key)
                .with_secret_access_key(keys.secret_key.expose());
            if let Some(t) = &keys.session_token {
                builder = builder.with_token(t.expose());
            }
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| format!("cannot set up the S3 client: {}", describe(&e)))?,
        );
        stores.push(((scheme, bucket.to_string()), store.clone()));
        Ok(store)
    }

    /// The objects a source's `path` names, sorted by key: a literal key (which must exist), or
    /// a glob matched against the keys listed under its literal prefix, with the local rules:
    /// `*` and `?` do not cross `/`, `**` does, and wildcards skip names that start with `.`.
    pub fn expand(self: &Arc<Self>, url: &ObjectUrl, allow_empty: bool) -> Result<Vec<ObjectFile>, String> {
        let store = self.store(url.scheme, &url.bucket)?;
        if !url.is_pattern() {
            let key = KeyPath::from(url.key.as_str());
            let store2 = store.clone();
            let meta = self
                .block(async move { store2.head(&key).await })
                .map_err(|e| e.to_string())?;
            return match meta {
                Ok(m) => Ok(vec![ObjectFile::new(self.clone(), store, url.clone(), m)]),
                Err(object_store::Error::NotFound { .. }) if allow_empty => Ok(Vec::new()),
                Err(e) => Err(format!("cannot read the object: {}", describe(&e))),
            };
        }
        let pattern = glob::Pattern::new(&url.key).map_err(|e| format!("invalid glob pattern: {e}"))?;
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let prefix = url.list_prefix().to_string();
        let store2 = store.clone();
        let listed = self
            .block(async move {
                let prefix = (!prefix.is_empty()).then(|| KeyPath::from(prefix.as_str()));
                store2.list(prefix.as_ref()).try_collect::<Vec<_>>().await
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot list the bucket: {}", describe(&e)))?;
        if listed.is_empty() && allow_empty {
            self.check_empty_listing(&store, url.list_prefix())?;
        }
        let mut files: Vec<ObjectFile> = listed
            .into_iter()
            .filter(|m| pattern.matches_with(m.location.as_ref(), options))
            .map(|m| {
                let u = url.with_key(m.location.as_ref());
                ObjectFile::new(self.clone(), store.clone(), u, m)
            })
            .collect();
        if files.is_empty() && !allow_empty {
            return Err(format!(
                "the pattern matches no objects (listed the keys under {:?}); check the key pattern, and that \
                 the endpoint is an S3 API",
                url.list_prefix()
            ));
        }
        files.sort_by(|a, b| a.url.key.cmp(&b.url.key));
        Ok(files)
    }

    /// An empty listing is what `serve` waits on, but it is also what a web server that is not
    /// an S3 API makes of a listing (200 and an HTML page, which reads as no keys). A HEAD of a
    /// key that cannot exist tells them apart: an S3 API answers 404. Access denied cannot tell,
    /// and passes.
    fn check_empty_listing(self: &Arc<Self>, store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<(), String> {
        let key = format!(
            "{prefix}{}vikingsync-absent-{:016x}",
            if prefix.is_empty() { "" } else { "/" },
            rand::random::<u64>()
        );
        let probe = KeyPath::from(key.as_str());
        let store = store.clone();
        let answer = self
            .block(async move { store.head(&probe).await })
            .map_err(|e| e.to_string())?;
        match answer {
            Err(object_store::Error::NotFound { .. })
            | Err(object_store::Error::PermissionDenied { .. })
            | Err(object_store::Error::Unauthenticated { .. }) => Ok(()),
            Ok(_) => Err(format!(
                "the listing was empty, and a HEAD of {key:?}, which does not exist, succeeded: the endpoint does \
                 not answer as an S3 API (check [storage] endpoint)"
            )),
            Err(e) => Err(format!(
                "the listing was empty, and a HEAD of {key:?}, which does not exist, did not answer 404 as an S3 \
                 API does: {} (check [storage] endpoint)",
                describe(&e)
            )),
        }
    }
}

/// One object as listed: its URL, size and ETag. Reads go to exactly this version (`If-Match`).
#[derive(Clone)]
pub struct ObjectFile {
    storage: Arc<Storage>,
    store: Arc<dyn ObjectStore>,
    pub url: ObjectUrl,
    location: KeyPath,
    pub size: u64,
    pub etag: Option<String>,
    /// Seconds since the epoch.
    pub modified: Option<u64>,
}

impl fmt::Debug for ObjectFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectFile")
            .field("url", &self.url.to_string())
            .field("size", &self.size)
            .field("etag", &self.etag)
            .finish()
    }
}

impl ObjectFile {
    fn new(storage: Arc<Storage>, store: Arc<dyn ObjectStore>, url: ObjectUrl, meta: object_store::ObjectMeta) -> Self {
        ObjectFile {
            storage,
            store,
            url,
            location: meta.location,
            size: meta.size,
            etag: meta.e_tag,
            modified: u64::try_from(meta.last_modified.timestamp()).ok(),
        }
    }

    /// Bytes `start..end` of the object (this version), in one ranged GET.
    pub fn get_range(&self, start: u64, end: u64) -> io::Result<Bytes> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.fetch(start, end, tx)?;
        rx.recv()
            .map_err(|_| io::Error::other("the object storage runtime stopped before answering"))?
    }

    /// Starts fetching `start..end`; the answer arrives on `tx`.
    fn fetch(&self, start: u64, end: u64, tx: mpsc::SyncSender<io::Result<Bytes>>) -> io::Result<()> {
        if start >= end {
            let _ = tx.send(Ok(Bytes::new()));
            return Ok(());
        }
        let store = self.store.clone();
        let location = self.location.clone();
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..end)),
            if_match: self.etag.clone(),
            ..GetOptions::default()
        };
        let want = end - start;
        self.storage.spawn(
            async move {
                let got = async { store.get_opts(&location, options).await?.bytes().await }.await;
                match got {
                    Ok(b) if b.len() as u64 == want => Ok(b),
                    Ok(b) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "bytes {start}..{end}: the server sent {} bytes, not {want}; the object is shorter than \
                             listed (truncated or rewritten)",
                            b.len()
                        ),
                    )),
                    Err(e) => Err(io::Error::other(format!("bytes {start}..{end}: {}", describe(&e)))),
                }
            },
            tx,
        )
    }

    /// Bytes of one ranged GET of a sequential read ([`CHUNK_BYTES`] unless a test set less).
    pub fn chunk_bytes(&self) -> u64 {
        self.storage.chunk_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A sequential stream of bytes `start..end`, fetched one chunk ahead.
    pub fn reader(&self, start: u64, end: u64) -> ObjectRead {
        ObjectRead {
            file: self.clone(),
            next: start,
            end: end.min(self.size),
            buf: Bytes::new(),
            pending: None,
        }
    }
}

/// A sequential read of an object as bounded ranged GETs (see the module comment).
pub struct ObjectRead {
    file: ObjectFile,
    /// Start of the next chunk to request.
    next: u64,
    end: u64,
    buf: Bytes,
    pending: Option<mpsc::Receiver<io::Result<Bytes>>>,
}

impl ObjectRead {
    fn request(&mut self) -> io::Result<()> {
        if self.pending.is_some() || self.next >= self.end {
            return Ok(());
        }
        let chunk = self.file.chunk_bytes();
        let to = self.next.saturating_add(chunk).min(self.end);
        let (tx, rx) = mpsc::sync_channel(1);
        self.file.fetch(self.next, to, tx)?;
        self.next = to;
        self.pending = Some(rx);
        Ok(())
    }
}

impl Read for ObjectRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.request()?;
            let Some(rx) = self.pending.take() else {
                return Ok(0);
            };
            self.buf = rx
                .recv()
                .map_err(|_| io::Error::other("the object storage runtime stopped before answering"))??;
            // The next chunk is on its way while this one is read.
            self.request()?;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_refuse_what_is_not_an_object() {
        let u = ObjectUrl::parse("s3://my-bucket/exports/2026/part-*.csv.gz").expect("parse");
        assert_eq!(u.scheme, Scheme::S3);
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.key, "exports/2026/part-*.csv.gz");
        assert_eq!(u.list_prefix(), "exports/2026");
        assert_eq!(u.to_string(), "s3://my-bucket/exports/2026/part-*.csv.gz");
        let t = ObjectUrl::parse("tos://bkt/a.jsonl").expect("parse");
        assert_eq!((t.scheme, t.list_prefix(), t.is_pattern()), (Scheme::Tos, "", false));
        assert_eq!(ObjectUrl::parse("s3://bkt/**/x*.csv").expect("p").list_prefix(), "");
        for bad in [
            "s3://",
            "s3://bkt",
            "s3://bkt/",
            "s3://bkt/dir/",
            "s3://BKT/a.csv",
            "s3://b/a.csv",
            "s3://bkt//a.csv",
            "s3://bkt/a/../b.csv",
            "gs://bkt/a.csv",
        ] {
            assert!(ObjectUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    fn settings(endpoint: Option<&str>, addressing: Addressing) -> StorageSettings {
        StorageSettings {
            endpoint: endpoint.map(str::to_string),
            region: "cn-shanghai".into(),
            addressing,
            allow_http: false,
            keys: None,
            request_timeout: 30.0,
            connect_timeout: 5.0,
        }
    }

    #[test]
    fn tos_resolves_to_the_regional_virtual_hosted_endpoint() {
        let s = settings(None, Addressing::Virtual);
        assert_eq!(
            s.bucket_endpoint(Scheme::Tos, "data").as_deref(),
            Some("https://data.tos-s3-cn-shanghai.volces.com")
        );
        let s = settings(Some("https://tos-s3-cn-beijing.ivolces.com/"), Addressing::Virtual);
        assert_eq!(
            s.bucket_endpoint(Scheme::Tos, "data").as_deref(),
            Some("https://data.tos-s3-cn-beijing.ivolces.com")
        );
        // Already holding the bucket: verbatim.
        let s = settings(Some("https://data.tos-s3-cn-beijing.volces.com"), Addressing::Virtual);
        assert_eq!(
            s.bucket_endpoint(Scheme::Tos, "data").as_deref(),
            Some("https://data.tos-s3-cn-beijing.volces.com")
        );
        let s = settings(Some("http://127.0.0.1:9000"), Addressing::Path);
        assert_eq!(
            s.bucket_endpoint(Scheme::S3, "data").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(settings(None, Addressing::Path).bucket_endpoint(Scheme::S3, "d"), None);
    }

    #[test]
    fn error_bodies_are_reduced_to_code_and_message() {
        let raw = "Error performing GET http://h/b?list-type=2 in 1ms - Server returned non-2xx status code: \
                   403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>No such \
                   key.</Message><RequestId>X</RequestId></Error>";
        assert_eq!(
            tidy(raw),
            "Error performing GET http://h/b?list-type=2 in 1ms - Server returned non-2xx status code: \
             403 Forbidden: InvalidAccessKeyId: No such key."
        );
        let long = "x".repeat(2000);
        assert_eq!(tidy(&long).len(), 600);
    }

    #[test]
    fn debug_output_hides_the_secret_and_the_token() {
        let keys = StorageKeys {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: Secret::new("wJalrXUtnFEMI-very-secret"),
            session_token: Some(Secret::new("token-also-secret")),
            origin: "test".into(),
        };
        let mut s = settings(None, Addressing::Virtual);
        s.keys = Some(keys);
        let storage = Storage::new(Some(s.clone()), Some(s)).expect("storage");
        let text = format!("{storage:?}");
        assert!(text.contains("AKIDEXAMPLE"), "{text}");
        assert!(!text.contains("very-secret") && !text.contains("also-secret"), "{text}");
    }
}
