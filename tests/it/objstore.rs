//! Object storage sources (`s3://bucket/prefix/*`) against a real S3 server: `moto_server` from
//! PyPI (`tests/objstore/requirements.txt`), one per test on a free loopback port, killed at the
//! end. `.ci/run` installs it into `.venv` and sets `VIKINGSYNC_MOTO_SERVER` to its
//! `moto_server`; without it these tests fail under CI, and elsewhere say how to enable them.
//!
//! Buckets are created with a plain HTTP PUT and objects uploaded with object_store, as any
//! writer would; the real binary then reads them through the S3 API (listing, ranged GETs with
//! If-Match) and the emulator's final state is compared with what the input implies.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::harness::*;

const KEY_ID: &str = "AKIAMOTOTESTKEY";
const SECRET: &str = "moto-test-secret-never-shown";

/// A running moto_server, killed (and reaped) when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto_server to run, or `None` (outside CI only) when it is not installed.
fn moto_server() -> Option<String> {
    match std::env::var("VIKINGSYNC_MOTO_SERVER") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the object storage tests: .ci/run sets VIKINGSYNC_MOTO_SERVER"
            );
            eprintln!(
                "object storage test not run: set VIKINGSYNC_MOTO_SERVER to a moto_server installed from \
                 tests/objstore/requirements.txt (bash .ci/run does this)"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Moto {
    /// Starts moto_server on a free loopback port; `env` for its settings (auth).
    async fn start(env: &[(&str, &str)]) -> Option<Moto> {
        let bin = moto_server()?;
        let port = free_port();
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("moto_server starts");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((_, _)) = http_get(addr, "/moto-api/").await {
                return Some(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_bucket(&self, bucket: &str) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(resp.status().is_success(), "create bucket: {}", resp.status());
    }

    fn store(&self, bucket: &str) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .expect("store")
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.store(bucket)
            .put(&KeyPath::from(key), PutPayload::from(bytes))
            .await
            .expect("put");
    }

    /// The `[storage]` table for this server.
    fn storage(&self) -> String {
        format!(
            "\n[storage]\nendpoint = \"{}\"\nallow_http = true\nregion = \"us-east-1\"\n",
            self.endpoint
        )
    }
}

/// The binary with keys for moto in the AWS environment (and no other AWS setting).
fn s3_binary(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = binary(dir, args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
    cmd
}

async fn run_s3(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(120), s3_binary(dir, args).output())
        .await
        .expect("the binary finishes within 120 s")
        .expect("the binary runs")
}

/// The bytes of `rows` written as `fmt` (through a temporary file).
fn encode(fmt: Fmt, rows: &[Row], with_op: bool) -> Vec<u8> {
    let dir = tempdir();
    let p = dir.path().join(format!("x.{}", fmt.ext()));
    write(&p, fmt, rows, with_op);
    std::fs::read(&p).expect("read")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gz");
    enc.finish().expect("gz")
}

fn upserts_with_bad(seed: u64, prefix: &str, n: usize, bad_every: usize) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    let mut rows: Vec<Row> = (0..n)
        .map(|i| full_row(&mut rng, "upsert", format!("{prefix}{i:05}")))
        .collect();
    for (i, r) in rows.iter_mut().enumerate() {
        if i % bad_every == bad_every / 2 {
            r.score_raw = Some("not-a-number".into());
            r.bad = Some("wrong type");
        }
    }
    rows
}

/// The emulator holds exactly `expected`, and the dead-letter file has exactly `dead`, once each.
fn assert_exact(dir: &Path, emu: &vikingdb_emulator::Emulator, files: &[(&str, &[Row])], shown: &str) {
    let (expected, expected_dead) = model(files);
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "record count\n{shown}");
    let wrong: Vec<&String> = expected.keys().filter(|k| actual.get(*k) != expected.get(*k)).collect();
    assert!(
        wrong.is_empty(),
        "{} records differ, e.g. {:?}\n{shown}",
        wrong.len(),
        wrong.first()
    );
    let dead = dead_letters(dir);
    let dead_set: BTreeSet<(String, u64)> = dead.iter().map(|(f, r, _)| (f.clone(), *r)).collect();
    assert_eq!(dead.len(), dead_set.len(), "each rejected row once: {dead:#?}");
    assert_eq!(dead_set, expected_dead, "dead letters\n{shown}");
    for (_, _, v) in &dead {
        let file = v["file"].as_str().unwrap_or_default();
        assert!(
            file.starts_with("s3://data/"),
            "the dead letter names the object URL: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_gz_jsonl_and_parquet_from_a_bucket_end_exact() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], faults_on(), 5).await;

    let part1 = upserts_with_bad(1, "a", 300, 40);
    let part2 = upserts_with_bad(2, "a", 250, 50);
    let feed = upserts_with_bad(3, "a", 200, 30);
    // Parquet cannot hold a wrong-typed score: its bad rows have no key.
    let mut pq = upserts_with_bad(4, "p", 700, 1_000_000);
    for r in pq.iter_mut().skip(50).step_by(100) {
        r.id = String::new();
        r.bad = Some("missing key");
    }
    moto.put("data", "exports/part-1.csv.gz", gzip(&encode(Fmt::Csv, &part1, false)))
        .await;
    moto.put("data", "exports/part-2.csv.gz", gzip(&encode(Fmt::Csv, &part2, false)))
        .await;
    // Not matched: another prefix level, a hidden name, another extension.
    moto.put("data", "exports/old/part-9.csv.gz", b"not read".to_vec())
        .await;
    moto.put("data", "exports/.part-3.csv.gz", b"not read".to_vec()).await;
    moto.put("data", "exports/part-1.csv.gz.md5", b"not read".to_vec())
        .await;
    moto.put("data", "feed/changes.jsonl", encode(Fmt::Jsonl, &feed, false))
        .await;
    // Row groups of 64 rows: 11 of them, read with ranged GETs.
    moto.put("data", "pq/more.parquet", encode(Fmt::Parquet, &pq, false))
        .await;

    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[
            ("s3://data/exports/part-*.csv.gz".into(), Some("upsert")),
            ("s3://data/feed/*.jsonl".into(), Some("upsert")),
            ("s3://data/pq/more.parquet".into(), Some("upsert")),
        ],
    ) + &moto.storage();
    write_config(dir.path(), &cfg);
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains(SECRET), "the secret key is never shown: {shown}");
    assert_exact(
        dir.path(),
        &emu,
        &[
            ("part-1.csv.gz", &part1),
            ("part-2.csv.gz", &part2),
            ("changes.jsonl", &feed),
            ("more.parquet", &pq),
        ],
        &shown,
    );
    // The checkpoint knows each object by URL and ETag; `status` reads it.
    let status = run_s3(dir.path(), &["status", "--config", "sync.toml"]).await;
    let st = text(&status);
    assert_eq!(status.status.code(), Some(0), "{st}");
    assert!(st.contains("s3://data/pq/more.parquet"), "{st}");
    assert_eq!(st.matches(" unchanged ").count(), 4, "nothing changed: {st}");
    // A second run reads nothing again.
    let before = emu.stats();
    let again = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let after = emu.stats();
    assert_eq!(
        before.rows_applied_upsert,
        after.rows_applied_upsert,
        "{}",
        text(&again)
    );
    emu.shutdown().await;
}

/// The "rows read" figure of a run's summary.
fn rows_read(out: &std::process::Output) -> u64 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("rows read")?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_in_the_middle_of_objects_resumes_without_loss() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    // A quota that makes the run last seconds, so the kills land inside objects.
    let emu = start_emulator(vec![spec("items", 600, false)], FaultConfig::default(), 8).await;
    let base = upserts_with_bad(11, "u", 2400, 150);
    let mut more = upserts_with_bad(12, "p", 1200, 1_000_000);
    for (i, r) in more.iter_mut().enumerate() {
        if i % 200 == 100 {
            r.id = String::new();
            r.bad = Some("missing key");
        }
    }
    let changes = upserts_with_bad(13, "u", 600, 120);
    moto.put("data", "in/01-base.csv", encode(Fmt::Csv, &base, false)).await;
    moto.put("data", "in/02-more.parquet", encode(Fmt::Parquet, &more, false))
        .await;
    moto.put(
        "data",
        "in/03-changes.jsonl.gz",
        gzip(&encode(Fmt::Jsonl, &changes, false)),
    )
    .await;
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        600,
        &[("s3://data/in/*".into(), Some("upsert"))],
    )
    .replace("[state]\n", "[state]\ncommit_interval = 0.05\n")
        + &moto.storage();
    write_config(dir.path(), &cfg);
    let total = (base.len() + more.len() + changes.len()) as u64;

    // Kill 1 inside the plain CSV, kill 2 inside the Parquet object: each once the committed
    // checkpoint has passed a mark (the quota keeps the run going for seconds after it).
    let committed = |dir: &Path| -> u64 {
        match vikingsync::checkpoint::load(&dir.join("state")) {
            Ok(Some(cp)) => cp.files.iter().map(|f| f.position.map_or(0, |p| p.rows())).sum(),
            _ => 0,
        }
    };
    let mut positions = Vec::new();
    for mark in [300u64, 2700] {
        let mut child = s3_binary(dir.path(), &["run", "--config", "sync.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed(dir.path()) < mark {
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "exited before row {mark}"
            );
            assert!(Instant::now() < deadline, "no commit past row {mark} within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "still running at the kill"
        );
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        let cp = vikingsync::checkpoint::load(&dir.path().join("state"))
            .expect("checkpoint loads")
            .expect("a checkpoint was committed");
        let done: u64 = cp.files.iter().map(|f| f.position.map_or(0, |p| p.rows())).sum();
        positions.push((
            done,
            cp.files
                .iter()
                .map(|f| (f.path.clone(), f.position))
                .collect::<Vec<_>>(),
        ));
        for f in &cp.files {
            assert!(
                f.fingerprint.etag.is_some(),
                "an object's checkpoint holds its ETag: {f:?}"
            );
        }
    }
    let first = &positions[0];
    assert!(
        first.0 > 0 && first.0 < base.len() as u64,
        "the first kill landed inside the CSV object: {positions:?}"
    );
    assert!(
        positions[1].0 > first.0 && positions[1].0 < (base.len() + more.len()) as u64,
        "the second kill landed inside the Parquet object: {positions:?}"
    );
    println!(
        "objstore kill test: committed rows after each kill {:?}",
        positions.iter().map(|p| p.0).collect::<Vec<_>>()
    );

    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("resumed"), "the final run resumed: {shown}");
    // It started from the checkpoint: it read fewer rows than the objects hold.
    let read = rows_read(&out);
    assert!(
        read > 0 && read < total - positions[1].0 + 500,
        "read {read} of {total}: {shown}"
    );
    assert_exact(
        dir.path(),
        &emu,
        &[
            ("01-base.csv", &base),
            ("02-more.parquet", &more),
            ("03-changes.jsonl.gz", &changes),
        ],
        &shown,
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_object_is_treated_per_on_change() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 9).await;
    let v1 = upserts_with_bad(21, "r", 50, 1_000_000);
    moto.put("data", "x/a.csv", encode(Fmt::Csv, &v1, false)).await;
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[("s3://data/x/a.csv".into(), Some("upsert"))],
    ) + &moto.storage();
    write_config(dir.path(), &cfg);
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Rewritten under the same key: a new ETag.
    let v2 = upserts_with_bad(22, "r", 50, 1_000_000);
    moto.put("data", "x/a.csv", encode(Fmt::Csv, &v2, false)).await;
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "on_change = error stops the run: {shown}");
    assert!(
        shown.contains("s3://data/x/a.csv") && shown.contains("ETag changed"),
        "names the object and why: {shown}"
    );
    let (old_state, _) = model(&[("a.csv", &v1)]);
    assert_eq!(emu.records("items").expect("c").len(), old_state.len());

    write_config(
        dir.path(),
        &cfg.replace("[state]\n", "[state]\non_change = \"reprocess\"\n"),
    );
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let (expected, _) = model(&[("a.csv", &v1), ("a.csv", &v2)]);
    let actual = emu.records("items").expect("c");
    assert_eq!(actual.len(), expected.len(), "{shown}");
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}: {shown}");
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_corrupt_gzip_and_missing_keys_are_clear_errors() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 10).await;
    let one = |path: &str| {
        config_text(
            &emu.endpoint(),
            "v2",
            "items",
            false,
            0,
            &[(path.to_string(), Some("upsert"))],
        ) + &moto.storage()
    };

    // A bucket that does not exist.
    write_config(dir.path(), &one("s3://no-such-bucket/in/*.csv"));
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("s3://no-such-bucket/in/*.csv"), "names the URL: {shown}");
    assert!(shown.contains("no such bucket"), "says what is wrong: {shown}");
    assert!(!shown.contains("panicked"), "{shown}");

    // A gzip object cut short: the verify pass refuses it before any row is sent.
    let rows = upserts_with_bad(31, "g", 2000, 1_000_000);
    let gz = gzip(&encode(Fmt::Csv, &rows, false));
    moto.put("data", "cut/a.csv.gz", gz[..gz.len() / 2].to_vec()).await;
    write_config(dir.path(), &one("s3://data/cut/*.csv.gz"));
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("s3://data/cut/a.csv.gz") && shown.contains("corrupt or truncated"),
        "names the object: {shown}"
    );
    assert_eq!(emu.records("items").expect("c").len(), 0, "no row of it was sent");

    // A pattern that matches nothing.
    write_config(dir.path(), &one("s3://data/nothing/*.csv"));
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("matches no objects"), "{shown}");

    // No keys at all: the config is unusable (78) before any request.
    write_config(dir.path(), &one("s3://data/cut/*.csv.gz"));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        s3_binary(dir.path(), &["run", "--config", "sync.toml"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output(),
    )
    .await
    .expect("in time")
    .expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(78), "{shown}");
    assert!(shown.contains("AWS_ACCESS_KEY_ID"), "says what to set: {shown}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_403_without_the_secret() {
    // Auth enforced from the first request: the key is not one moto's IAM knows.
    let Some(moto) = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await else {
        return;
    };
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 11).await;
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[("s3://data/in/*.csv".into(), Some("upsert"))],
    ) + &moto.storage();
    write_config(dir.path(), &cfg);
    let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("s3://data/in/*.csv"), "names the URL: {shown}");
    assert!(
        shown.contains("403") && shown.contains("access denied"),
        "says why: {shown}"
    );
    assert!(!shown.contains(SECRET), "the secret key is never shown: {shown}");
    assert!(!shown.contains("panicked"), "{shown}");
    emu.shutdown().await;
}

/// A loopback server that answers every request with `response`, for `n` connections.
async fn canned_server(response: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..200 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_endpoint_is_a_clear_error_not_a_panic() {
    if moto_server().is_none() {
        return;
    }
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 12).await;
    const HTML: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 20\r\nconnection: close\r\n\r\n<html>welcome</html>";
    const REDIRECT: &str = "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    for (what, response, path, says) in [
        // A listing answered with HTML reads as an empty listing: the pattern matches nothing.
        (
            "a listing answered with HTML",
            HTML,
            "s3://data/in/*.csv",
            "is an S3 API",
        ),
        // An object whose ranged GET is answered 200 with a whole (other) body.
        (
            "a ranged GET answered with HTML",
            HTML,
            "s3://data/in/a.csv",
            "ignored the byte range",
        ),
        ("a redirected listing", REDIRECT, "s3://data/in/*.csv", "never followed"),
        ("a redirected HEAD", REDIRECT, "s3://data/in/a.csv", "never followed"),
    ] {
        let endpoint = canned_server(response).await;
        let dir = tempdir();
        let cfg = config_text(
            &emu.endpoint(),
            "v2",
            "items",
            false,
            0,
            &[(path.into(), Some("upsert"))],
        ) + &format!("\n[storage]\nendpoint = \"{endpoint}\"\nallow_http = true\n");
        write_config(dir.path(), &cfg);
        let out = run_s3(dir.path(), &["run", "--config", "sync.toml"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {shown}");
        assert!(shown.contains(path), "{what}: names the URL: {shown}");
        assert!(shown.contains(says), "{what}: says what is wrong: {shown}");
        assert!(!shown.contains("panicked"), "{what}: {shown}");
        assert!(!shown.contains(SECRET), "{what}: {shown}");
    }
    emu.shutdown().await;
}

/// `vikingsync serve` on `dir`'s sync.toml, its log in serve.log, once it listens.
async fn start_serve(dir: &Path) -> tokio::process::Child {
    let log = std::fs::File::create(dir.join("serve.log")).expect("log");
    let mut child = s3_binary(dir, &["serve", "--config", "sync.toml", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let (_, mut lines) = listening_address(&mut child).await;
    // Keep reading stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// A config upserting `glob` into the emulator's `items`, plus `tail` (storage and serve tables).
fn serve_config(emulator: &str, glob: &str, tail: &str) -> String {
    config_text(emulator, "v2", "items", false, 0, &[(glob.into(), Some("upsert"))]) + tail
}

/// Waits until the emulator's `items` holds `n` records, or panics after 30 s with `log()`.
async fn wait_for_records(emu: &vikingdb_emulator::Emulator, n: usize, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.records("items").map_or(0, |r| r.len()) < n {
        assert!(Instant::now() < deadline, "serve did not apply {n} rows\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, then the exit code (within 30 s).
async fn stop_serve(child: &mut tokio::process::Child) -> Option<i32> {
    let pid = child.id().expect("running");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait")
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_picks_up_new_objects_by_listing() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 13).await;
    let first = upserts_with_bad(41, "s", 120, 1_000_000);
    moto.put("data", "drop/001.csv", encode(Fmt::Csv, &first, false)).await;
    let tail = moto.storage() + "\n[serve]\nrescan = 0.2\nlinger = 0.05\n";
    write_config(
        dir.path(),
        &serve_config(&emu.endpoint(), "s3://data/drop/*.csv", &tail),
    );
    let mut child = start_serve(dir.path()).await;
    let log_text = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    wait_for_records(&emu, first.len(), log_text).await;
    // A new object under the prefix: found by the next listing.
    let second = upserts_with_bad(42, "t", 80, 1_000_000);
    moto.put("data", "drop/002.csv", encode(Fmt::Csv, &second, false)).await;
    wait_for_records(&emu, first.len() + second.len(), log_text).await;
    assert_eq!(stop_serve(&mut child).await, Some(0), "{}", log_text());
    let (expected, _) = model(&[("001.csv", &first), ("002.csv", &second)]);
    let actual = emu.records("items").expect("c");
    assert_eq!(actual.len(), expected.len());
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}");
    }
    emu.shutdown().await;
}

/// An empty listing is what `serve` waits on; a web server that is not an S3 API answers a
/// listing with 200 and a page, which reads as no keys. Serve must tell the two apart: wait on
/// the first, stop with a clear error on the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_on_an_empty_prefix_but_stops_on_an_endpoint_that_is_not_s3() {
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 14).await;

    // An S3 API with nothing under the prefix yet: serve keeps listing, then picks a file up.
    let dir = tempdir();
    let tail = moto.storage() + "\n[serve]\nrescan = 0.1\nlinger = 0.05\n";
    write_config(
        dir.path(),
        &serve_config(&emu.endpoint(), "s3://data/later/*.csv", &tail),
    );
    let mut child = start_serve(dir.path()).await;
    let log_text = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    // Ten listings or more of the empty prefix.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "serve stopped on an empty prefix: {}",
        log_text()
    );
    let rows = upserts_with_bad(43, "w", 60, 1_000_000);
    moto.put("data", "later/001.csv", encode(Fmt::Csv, &rows, false)).await;
    wait_for_records(&emu, rows.len(), log_text).await;
    assert_eq!(stop_serve(&mut child).await, Some(0), "{}", log_text());

    // A web server: every request answered 200 with a page.
    const HTML: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 20\r\nconnection: close\r\n\r\n<html>welcome</html>";
    let endpoint = canned_server(HTML).await;
    let dir = tempdir();
    let tail = format!("\n[storage]\nendpoint = \"{endpoint}\"\nallow_http = true\n[serve]\nrescan = 0.1\n");
    write_config(
        dir.path(),
        &serve_config(&emu.endpoint(), "s3://data/later/*.csv", &tail),
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        s3_binary(
            dir.path(),
            &["serve", "--config", "sync.toml", "--listen", "127.0.0.1:0"],
        )
        .output(),
    )
    .await
    .expect("serve stops on its own")
    .expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("s3://data/later/*.csv"), "names the URL: {shown}");
    assert!(shown.contains("S3 API"), "says what is wrong: {shown}");
    assert!(!shown.contains("panicked"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    emu.shutdown().await;
}

use vikingdb_emulator::FaultConfig;

/// Every row (and its end position) read from `path` or, with `object`, from the object.
fn read_rows(
    path: &Path,
    object: Option<&vikingsync::source::object::ObjectFile>,
    start: Option<vikingsync::source::Position>,
) -> Vec<(u64, vikingsync::source::Position, String)> {
    let opts = vikingsync::source::ReadOptions {
        object: object.cloned(),
        ..vikingsync::source::ReadOptions::default()
    };
    crate::readers::rows_with(path, &opts, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_reads_equal_local_reads_from_every_resume_position() {
    use vikingsync::source::object::{Addressing, ObjectUrl, Storage, StorageKeys, StorageSettings};
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let dir = tempdir();
    let rows = upserts_with_bad(51, "e", 400, 37);
    let mut pq_rows = upserts_with_bad(52, "q", 300, 1_000_000);
    pq_rows[77].id = String::new();
    // A file of two gzip members: the second starts inside a chunk.
    let jsonl = encode(Fmt::Jsonl, &rows, false);
    let half = jsonl[..jsonl.len() / 2]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("a line")
        + 1;
    let mut two_members = gzip(&jsonl[..half]);
    two_members.extend(gzip(&jsonl[half..]));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.csv", encode(Fmt::Csv, &rows, false)),
        ("b.jsonl.gz", two_members),
        (
            "c.csv.zst",
            zstd::encode_all(&encode(Fmt::Csv, &rows, false)[..], 3).expect("zstd"),
        ),
        ("d.parquet", encode(Fmt::Parquet, &pq_rows, false)),
    ];
    let settings = StorageSettings {
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        addressing: Addressing::Path,
        allow_http: true,
        keys: Some(StorageKeys {
            access_key: KEY_ID.into(),
            secret_key: vikingsync::config::Secret::new(SECRET),
            session_token: None,
            origin: "test".into(),
        }),
        request_timeout: 30.0,
        connect_timeout: 5.0,
    };
    let storage = Storage::new(Some(settings), None).expect("storage");
    // Chunks of 1000 bytes: rows, gzip members and zstd frames cross chunk boundaries.
    storage.set_chunk_bytes(1000);
    for (name, bytes) in files {
        let local = dir.path().join(name);
        std::fs::write(&local, &bytes).expect("write");
        moto.put("data", &format!("eq/{name}"), bytes).await;
        let url = ObjectUrl::parse(&format!("s3://data/eq/{name}")).expect("url");
        let storage = storage.clone();
        let remote = PathBuf::from(url.to_string());
        tokio::task::spawn_blocking(move || {
            let objects = storage.expand(&url, false).expect("expand");
            assert_eq!(objects.len(), 1);
            let object = &objects[0];
            let full = read_rows(&local, None, None);
            assert!(full.len() >= 300, "{name}: {} rows", full.len());
            assert_eq!(read_rows(&remote, Some(object), None), full, "{name}: from the start");
            let step = if name.ends_with(".parquet") { 13 } else { 29 };
            for k in (0..full.len()).step_by(step) {
                let from_object = read_rows(&remote, Some(object), Some(full[k].1));
                assert_eq!(
                    from_object,
                    full[k + 1..].to_vec(),
                    "{name}: resume after row {}",
                    full[k].0
                );
            }
        })
        .await
        .expect("reads");
    }
}

/// Not a test: writes the Parquet file `bench/objstore.py` reads, from `bench/gen.py`'s JSONL
/// (stdlib Python cannot write Parquet). `VIKINGSYNC_BENCH_JSONL=in.jsonl
/// VIKINGSYNC_BENCH_PARQUET=out.parquet cargo test --test it objstore::bench_jsonl_to_parquet --
/// --ignored`. Columns id, title (utf8), score (float32), tags (list<utf8>), vec (list<float32>);
/// row groups of 16,384 rows.
#[test]
#[ignore = "a tool for bench/objstore.py, run by it"]
fn bench_jsonl_to_parquet() {
    use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::io::BufRead;
    use std::sync::Arc;
    let (Ok(input), Ok(output)) = (
        std::env::var("VIKINGSYNC_BENCH_JSONL"),
        std::env::var("VIKINGSYNC_BENCH_PARQUET"),
    ) else {
        panic!("set VIKINGSYNC_BENCH_JSONL and VIKINGSYNC_BENCH_PARQUET");
    };
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
        Field::new("tags", list(DataType::Utf8), true),
        Field::new("vec", list(DataType::Float32), true),
    ]));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(16_384))
        .build();
    let file = std::fs::File::create(&output).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    let lines = std::io::BufReader::new(std::fs::File::open(&input).expect("open")).lines();
    let mut chunk: Vec<serde_json::Value> = Vec::new();
    let mut flush = |chunk: &mut Vec<serde_json::Value>| {
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_string);
        let ids: StringArray = chunk.iter().map(|v| text(v, "id")).collect();
        let titles: StringArray = chunk.iter().map(|v| text(v, "title")).collect();
        let scores: Float32Array = chunk.iter().map(|v| v["score"].as_f64().map(|f| f as f32)).collect();
        let mut tags = ListBuilder::new(StringBuilder::new());
        let mut vecs = ListBuilder::new(Float32Builder::new());
        for v in chunk.iter() {
            for t in v["tags"].as_array().into_iter().flatten() {
                tags.values().append_value(t.as_str().unwrap_or_default());
            }
            tags.append(true);
            for x in v["vec"].as_array().into_iter().flatten() {
                vecs.values().append_value(x.as_f64().unwrap_or_default() as f32);
            }
            vecs.append(true);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(titles),
            Arc::new(scores),
            Arc::new(tags.finish()),
            Arc::new(vecs.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
        writer.write(&batch).expect("write");
        chunk.clear();
    };
    for line in lines {
        chunk.push(serde_json::from_str(&line.expect("line")).expect("json"));
        if chunk.len() == 8192 {
            flush(&mut chunk);
        }
    }
    flush(&mut chunk);
    writer.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_rewritten_during_a_read_stops_the_read() {
    use vikingsync::source::object::{Addressing, ObjectUrl, Storage, StorageKeys, StorageSettings};
    let Some(moto) = Moto::start(&[]).await else { return };
    moto.create_bucket("data").await;
    let rows = upserts_with_bad(61, "w", 300, 1_000_000);
    moto.put("data", "w/a.csv", encode(Fmt::Csv, &rows, false)).await;
    let storage = Storage::new(
        Some(StorageSettings {
            endpoint: Some(moto.endpoint.clone()),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            allow_http: true,
            keys: Some(StorageKeys {
                access_key: KEY_ID.into(),
                secret_key: vikingsync::config::Secret::new(SECRET),
                session_token: None,
                origin: "test".into(),
            }),
            request_timeout: 30.0,
            connect_timeout: 5.0,
        }),
        None,
    )
    .expect("storage");
    storage.set_chunk_bytes(2000);
    let url = ObjectUrl::parse("s3://data/w/a.csv").expect("url");
    let objects = tokio::task::spawn_blocking({
        let storage = storage.clone();
        move || storage.expand(&url, false).expect("expand")
    })
    .await
    .expect("expand");
    let object = objects[0].clone();
    let mut reader = tokio::task::spawn_blocking(move || {
        let opts = vikingsync::source::ReadOptions {
            object: Some(object),
            ..vikingsync::source::ReadOptions::default()
        };
        let mut r = vikingsync::source::open(Path::new("s3://data/w/a.csv"), &opts, None).expect("open");
        for _ in 0..5 {
            r.next_row().expect("a row").expect("readable");
        }
        r
    })
    .await
    .expect("first rows");
    // Rewritten while the reader is a few rows in.
    let other = upserts_with_bad(62, "x", 300, 1_000_000);
    moto.put("data", "w/a.csv", encode(Fmt::Csv, &other, false)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut read = 5;
        loop {
            match reader.next_row() {
                Some(Ok(row)) => {
                    assert!(
                        row.to_json()["id"].as_str().is_some_and(|id| id.starts_with('w')),
                        "a row of the new version: {row:?}"
                    );
                    read += 1;
                }
                Some(Err(e)) => return (read, e.to_string()),
                None => return (read, String::new()),
            }
        }
    })
    .await
    .expect("rest");
    assert!(outcome.0 < rows.len(), "stopped before the end: {outcome:?}");
    assert!(
        outcome.1.contains("s3://data/w/a.csv") && outcome.1.contains("rewritten"),
        "says why: {outcome:?}"
    );
}
