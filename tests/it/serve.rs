//! `vikingsync serve`, the long-running service: files renamed (or settled) into a watched
//! directory land, rows appended to a plain file are followed line by line, SIGTERM drains and
//! commits so a restart re-sends nothing acknowledged, one unreadable file leaves the others
//! flowing, and the packed-vector check runs once a process. The real binary runs against the in-process emulator; its address is read from its
//! stdout, its JSON log from a file, and its state from /healthz, /readyz and /metrics. Every wait
//! polls with a generous deadline; assertions are on counts and states, never on elapsed time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::harness::*;
use vikingdb_emulator::{Emulator, FaultConfig};

/// How long any one condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The config of these tests: collection `items`, the given sources (globs), a `rows_per_second`
/// ceiling of `rps`, and short service timings.
fn serve_config(emu: &Emulator, rps: u32, sources: &[(&str, &str)]) -> String {
    let sources: Vec<(String, Option<&str>)> = sources.iter().map(|(p, op)| (p.to_string(), Some(*op))).collect();
    config_text(&emu.endpoint(), "v2", "items", false, rps, &sources)
        + "\n[serve]\nsettle = 0.3\nrescan = 0.2\nlinger = 0.05\ndrain_deadline = 10.0\n"
}

/// Upserts with keys `{prefix}{i:05}` for i in `range` (distinct keys).
fn upserts(seed: u64, prefix: &str, range: std::ops::Range<usize>) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    range
        .map(|i| full_row(&mut rng, "upsert", format!("{prefix}{i:05}")))
        .collect()
}

/// The CSV text of `rows` without its header line, exactly as `harness::write` writes them.
fn csv_body(dir: &Path, rows: &[Row]) -> String {
    let tmp = dir.join("body.tmp");
    write(&tmp, Fmt::Csv, rows, false);
    let text = std::fs::read_to_string(&tmp).expect("read body");
    std::fs::remove_file(&tmp).expect("rm body");
    let header_end = text.find('\n').expect("a header line") + 1;
    text[header_end..].to_string()
}

/// Writes `rows` as CSV under a name the glob does not match (`in/.NAME.tmp`), then renames it
/// into place.
fn drop_by_rename(dir: &Path, name: &str, rows: &[Row]) {
    let tmp = dir.join("in").join(format!(".{name}.tmp"));
    write(&tmp, Fmt::Csv, rows, false);
    std::fs::rename(&tmp, dir.join("in").join(name)).expect("rename into place");
}

/// Writes `rows` as CSV in a sibling directory, then moves it into `in/`.
fn drop_from_staging(dir: &Path, name: &str, rows: &[Row]) {
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).expect("staging dir");
    write(&staging.join(name), Fmt::Csv, rows, false);
    std::fs::rename(staging.join(name), dir.join("in").join(name)).expect("move into place");
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("append");
    f.flush().expect("flush");
}

/// `Ok` when the collection holds exactly `expected`; otherwise what differs.
fn exactly(emu: &Emulator, expected: &State) -> Result<(), String> {
    let actual = emu.records("items").expect("collection");
    if actual.len() != expected.len() {
        return Err(format!("{} records, expected {}", actual.len(), expected.len()));
    }
    let wrong: Vec<&String> = expected.keys().filter(|k| actual.get(*k) != expected.get(*k)).collect();
    match wrong.first() {
        None => Ok(()),
        Some(k) => Err(format!(
            "{} records differ, e.g. {k}: {:?} vs expected {:?}",
            wrong.len(),
            actual.get(*k),
            expected.get(*k)
        )),
    }
}

// ---- A Prometheus text parser (the HTTP client is the harness's `http_get`) ----

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let close;
        loop {
            // Skip separators, then read `key="value"` or find the closing brace.
            while chars.peek().is_some_and(|(_, c)| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let (start, c) = *chars.peek()?;
            if c == '}' {
                close = start;
                break;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_string();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        }
        rest = &inner[close + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The sum of the samples of `name` whose labels include every pair of `labels`; `None` when there
/// is no such sample.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for (n, ls, v) in text.lines().filter_map(parse_sample) {
        if n == name
            && labels
                .iter()
                .all(|(k, want)| ls.iter().any(|(lk, lv)| lk == k && lv == want))
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

fn has_series(text: &str, name: &str) -> bool {
    text.lines().filter_map(parse_sample).any(|(n, _, _)| n == name)
}

fn applied_upserts(metrics: &str) -> f64 {
    metric(
        metrics,
        "vikingsync_rows_total",
        &[("op", "upsert"), ("outcome", "applied")],
    )
    .unwrap_or(0.0)
}

fn rejected(metrics: &str) -> f64 {
    metric(metrics, "vikingsync_rows_total", &[("outcome", "rejected")]).unwrap_or(0.0)
}

fn files_in(metrics: &str, state: &str) -> Option<f64> {
    metric(metrics, "vikingsync_files", &[("state", state)])
}

// ---- The service under test ----

/// A running `vikingsync --log-format json serve`, killed when dropped.
struct Serve {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Serve {
    /// Starts serve in `dir` with `sync.toml`, its JSON log in `dir/{log}`, on an ephemeral port.
    async fn start(dir: &Path, log: &str) -> Serve {
        let log = dir.join(log);
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = binary(
            dir,
            &[
                "--log-format",
                "json",
                "serve",
                "--config",
                "sync.toml",
                "--listen",
                "127.0.0.1:0",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = String::new();
        let found = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                    return rest.trim_end_matches('/').parse::<SocketAddr>().ok();
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            None
        })
        .await;
        let Ok(Some(addr)) = found else {
            let _ = child.start_kill();
            let status = child.wait().await;
            panic!(
                "serve printed no `listening on http://ADDR` line (exit {status:?})\n--- stdout\n{seen}\n--- log\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        // Keep reading stdout so the child can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Serve { child, addr, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the log, for failure messages.
    fn log_tail(&self) -> String {
        let text = self.log_text();
        let keep = 30_000;
        if text.len() <= keep {
            return text;
        }
        let mut cut = text.len() - keep;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        format!("…\n{}", &text[cut..])
    }

    /// The log lines (JSON) whose message is `message`.
    fn events(&self, message: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v.get("message").and_then(Value::as_str) == Some(message)
                    || v.pointer("/fields/message").and_then(Value::as_str) == Some(message)
            })
            .collect()
    }

    /// The `message` lines whose `file` field names the file `name`.
    fn events_for(&self, message: &str, name: &str) -> Vec<Value> {
        self.events(message)
            .into_iter()
            .filter(|v| field(v, "file").and_then(Value::as_str).is_some_and(|f| names(f, name)))
            .collect()
    }

    async fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.addr, path).await
    }

    async fn metrics(&self) -> Result<String, String> {
        match self.get("/metrics").await? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("/metrics answered {status}: {body}")),
        }
    }

    /// Polls `check` every 100 ms until it is `Ok`. Panics, with the last reason and the log, if
    /// the process exits or the deadline passes first.
    async fn eventually(&mut self, what: &str, mut check: impl AsyncFnMut(&Serve) -> Result<(), String>) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = match check(&*self).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "serve exited ({status}) while waiting for {what}: {last}\n--- log\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!("no {what} within {DEADLINE:?}: {last}\n--- log\n{}", self.log_tail());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn still_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("serve exited ({status})\n--- log\n{}", self.log_tail());
        }
    }

    /// SIGTERM, then the exit status (within the deadline) and the whole log.
    async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("serve is still running");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(kill.success(), "kill -TERM {pid}");
        match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => (status.expect("wait"), self.log_text()),
            Err(_) => panic!(
                "serve did not exit within {DEADLINE:?} of SIGTERM\n--- log\n{}",
                self.log_tail()
            ),
        }
    }
}

/// A field of a flattened JSON log line (or of its `fields` object).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).or_else(|| v.get("fields").and_then(|f| f.get(name)))
}

/// Whether the path `path` names the file `name`.
fn names(path: &str, name: &str) -> bool {
    Path::new(path).file_name().is_some_and(|n| n.to_string_lossy() == name)
}

fn in_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("in")).expect("in/");
}

// ---- The tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_renamed_into_the_watched_directory_land() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 11).await;
    in_dir(dir.path());
    write_config(dir.path(), &serve_config(&emu, 2000, &[("in/*.csv", "upsert")]));
    let mut serve = Serve::start(dir.path(), "serve.log").await;

    // Alive at once; ready once it has reached the target, with nothing to do yet.
    let health = serve.get("/healthz").await;
    assert!(matches!(health, Ok((200, _))), "/healthz: {health:?}");
    serve
        .eventually("/readyz 200 on an empty directory", async |s: &Serve| {
            match s.get("/readyz").await? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("/readyz {status}: {body}")),
            }
        })
        .await;
    assert!(emu.records("items").expect("collection").is_empty());

    // Keys repeat within a file (the last write of a key wins); the files share none.
    let mut rng = Lcg::new(21);
    let a: Vec<Row> = (0..240)
        .map(|_| {
            let k = format!("a{:03}", rng.below(90));
            full_row(&mut rng, "upsert", k)
        })
        .collect();
    let b: Vec<Row> = (0..170)
        .map(|_| {
            let k = format!("b{:03}", rng.below(60));
            full_row(&mut rng, "upsert", k)
        })
        .collect();
    // One renamed within the directory, one moved in from a sibling directory.
    drop_by_rename(dir.path(), "a.csv", &a);
    drop_from_staging(dir.path(), "b.csv", &b);
    let (expected, dead) = model(&[("a.csv", &a), ("b.csv", &b)]);
    assert!(dead.is_empty());
    let rows = (a.len() + b.len()) as f64;

    serve
        .eventually("the two files' rows in the collection", async |_: &Serve| {
            exactly(&emu, &expected)
        })
        .await;
    serve
        .eventually("every row counted as applied", async |s: &Serve| {
            let m = s.metrics().await?;
            let applied = applied_upserts(&m);
            if applied == rows {
                Ok(())
            } else {
                Err(format!("applied upserts {applied}, expected {rows}"))
            }
        })
        .await;
    serve
        .eventually("a `file done` line for each file", async |s: &Serve| {
            let (da, db) = (s.events_for("file done", "a.csv"), s.events_for("file done", "b.csv"));
            if da.is_empty() || db.is_empty() {
                Err(format!("file done lines: a.csv {da:?}, b.csv {db:?}"))
            } else {
                Ok(())
            }
        })
        .await;
    serve
        .eventually("both files counted as done", async |s: &Serve| {
            let m = s.metrics().await?;
            match files_in(&m, "done") {
                Some(2.0) => Ok(()),
                other => Err(format!("vikingsync_files{{state=\"done\"}} {other:?}\n{m}")),
            }
        })
        .await;

    let m = serve.metrics().await.expect("metrics");
    assert_eq!(applied_upserts(&m), rows, "{m}");
    assert_eq!(rejected(&m), 0.0, "{m}");
    assert_eq!(files_in(&m, "failed").unwrap_or(0.0), 0.0, "{m}");
    assert_eq!(files_in(&m, "pending").unwrap_or(0.0), 0.0, "{m}");
    assert!(
        metric(&m, "vikingsync_requests_total", &[("status", "200")]).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "vikingsync_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0),
        "{m}"
    );
    for series in [
        "vikingsync_rows_total",
        "vikingsync_requests_total",
        "vikingsync_retries_total",
        "vikingsync_throttled_total",
        "vikingsync_in_flight",
        "vikingsync_rate_rows_per_second",
        "vikingsync_concurrency",
        "vikingsync_request_duration_seconds_bucket",
        "vikingsync_request_duration_seconds_sum",
        "vikingsync_request_duration_seconds_count",
        "vikingsync_checkpoint_lag_rows",
        "vikingsync_files",
        "vikingsync_build_info",
    ] {
        assert!(has_series(&m, series), "no {series} in /metrics:\n{m}");
    }
    // One `file done` per file, with its counts.
    for (name, n) in [("a.csv", a.len()), ("b.csv", b.len())] {
        let done = serve.events_for("file done", name);
        assert_eq!(done.len(), 1, "{name}: {done:?}");
        assert_eq!(
            field(&done[0], "applied").and_then(Value::as_u64),
            Some(n as u64),
            "{done:?}"
        );
        assert_eq!(field(&done[0], "rejected").and_then(Value::as_u64), Some(0), "{done:?}");
    }
    assert!(matches!(serve.get("/healthz").await, Ok((200, _))));
    let ready = serve.get("/readyz").await;
    assert!(matches!(ready, Ok((200, _))), "/readyz: {ready:?}");
    assert!(dead_letters(dir.path()).is_empty());
    // Nothing was sent twice.
    assert_eq!(emu.stats().rows_applied_upsert, rows as u64);

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

/// Rows appended to a followed file: a first write ends inside a row (before the newline inside
/// its quoted title), the second completes it. The cut row must wait, not be rejected or cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_appended_to_a_file_land_and_a_partial_last_line_waits() {
    appended_rows_land(|body| body.find(", comma").expect("a title in the first appended row")).await;
}

/// The same, with the first write ending just after the newline *inside* a quoted CSV field: the
/// file then ends in a line end, but not at the end of a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_cut_after_a_newline_inside_a_quoted_field_waits_for_its_end() {
    appended_rows_land(|body| body.find('\n').expect("a newline inside the first appended row") + 1).await;
}

/// `cut` picks where, in the text of the rows appended after the first 30, the first write stops.
async fn appended_rows_land(cut: impl Fn(&str) -> usize) {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 12).await;
    in_dir(dir.path());
    write_config(dir.path(), &serve_config(&emu, 2000, &[("in/*.csv", "upsert")]));
    let mut serve = Serve::start(dir.path(), "serve.log").await;

    const N: usize = 100;
    let all = upserts(31, "g", 0..N + 60);
    drop_by_rename(dir.path(), "a.csv", &all[..N]);
    let (first, _) = model(&[("a.csv", &all[..N])]);
    serve
        .eventually("the first 100 rows", async |_: &Serve| exactly(&emu, &first))
        .await;

    // 30 complete rows and part of the 31st.
    let head = csv_body(dir.path(), &all[N..N + 30]);
    let tail = csv_body(dir.path(), &all[N + 30..]);
    let at = cut(&tail);
    assert!(at > 0 && at < tail.find(&format!("\"g{:05}\"", N + 31)).expect("row 32"));
    let path = dir.path().join("in").join("a.csv");
    append(&path, format!("{head}{}", &tail[..at]).as_bytes());
    let (upto130, _) = model(&[("a.csv", &all[..N + 30])]);
    serve
        .eventually("the 30 complete appended rows", async |s: &Serve| {
            // Fail at once, not at the deadline, when the cut row fails the file.
            let failed = s.events_for("file failed", "a.csv");
            assert!(
                failed.is_empty(),
                "a row still being written failed its file: {failed:?}\n--- log\n{}",
                s.log_tail()
            );
            exactly(&emu, &upto130)
        })
        .await;
    // Give it several rescans and lingers to trip over the partial row.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    serve.still_running();
    exactly(&emu, &upto130).expect("the partial row waits");
    let m = serve.metrics().await.expect("metrics");
    assert_eq!(rejected(&m), 0.0, "the partial row was rejected:\n{m}");
    assert_eq!(
        files_in(&m, "failed").unwrap_or(0.0),
        0.0,
        "{m}\n--- log\n{}",
        serve.log_tail()
    );
    assert!(dead_letters(dir.path()).is_empty(), "{:?}", dead_letters(dir.path()));

    // The rest of the cut row and 29 more.
    append(&path, &tail.as_bytes()[at..]);
    let (everything, dead) = model(&[("a.csv", &all)]);
    assert!(dead.is_empty());
    serve
        .eventually("all 160 rows, with their values", async |_: &Serve| {
            exactly(&emu, &everything)
        })
        .await;
    serve
        .eventually("160 rows counted as applied", async |s: &Serve| {
            let applied = applied_upserts(&s.metrics().await?);
            if applied == all.len() as f64 {
                Ok(())
            } else {
                Err(format!("applied upserts {applied}"))
            }
        })
        .await;
    let m = serve.metrics().await.expect("metrics");
    assert_eq!(rejected(&m), 0.0, "{m}");
    assert_eq!(files_in(&m, "failed").unwrap_or(0.0), 0.0, "{m}");
    assert!(dead_letters(dir.path()).is_empty(), "{:?}", dead_letters(dir.path()));
    assert_eq!(emu.stats().rows_applied_upsert, all.len() as u64, "nothing sent twice");

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_then_a_restart_resends_nothing_acknowledged() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 300, false)], FaultConfig::default(), 13).await;
    in_dir(dir.path());
    write_config(dir.path(), &serve_config(&emu, 300, &[("in/*.csv", "upsert")]));
    let mut serve = Serve::start(dir.path(), "serve-1.log").await;

    const N: u64 = 3000;
    let data = upserts(41, "s", 0..N as usize);
    drop_by_rename(dir.path(), "big.csv", &data);
    serve
        .eventually("some rows applied", async |_: &Serve| {
            let applied = emu.stats().rows_applied_upsert;
            if applied >= 450 {
                Ok(())
            } else {
                Err(format!("{applied} rows applied"))
            }
        })
        .await;
    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop\n{log}");
    let first = emu.stats();
    let landed = first.rows_applied_upsert;
    assert!(landed < N, "stopped mid-stream: {landed} of {N} rows had landed\n{log}");
    assert_eq!(first.rows_accepted_sync, landed, "{first:?}");
    assert_eq!(emu.records("items").expect("collection").len() as u64, landed);

    // Restart on the same state directory: it goes on from the checkpoint.
    let mut serve = Serve::start(dir.path(), "serve-2.log").await;
    let (expected, _) = model(&[("big.csv", &data)]);
    serve
        .eventually("all 3000 rows", async |_: &Serve| exactly(&emu, &expected))
        .await;
    serve
        .eventually("a `file done` line", async |s: &Serve| {
            if s.events_for("file done", "big.csv").is_empty() {
                Err("none yet".into())
            } else {
                Ok(())
            }
        })
        .await;
    let m = serve.metrics().await.expect("metrics");
    let stats = emu.stats();
    println!(
        "serve restart: {landed} rows before SIGTERM; second run applied {} (metrics); emulator accepted {} in all, \
         {} throttled requests",
        applied_upserts(&m),
        stats.rows_accepted_sync,
        stats.throttled
    );
    // Nothing acknowledged before the stop was sent again, and nothing was lost.
    assert_eq!(stats.rows_accepted_sync, N, "rows the server admitted: {stats:?}");
    assert_eq!(stats.rows_applied_upsert, N, "{stats:?}");
    assert_eq!(
        applied_upserts(&m),
        (N - landed) as f64,
        "the second run's applied rows\n{m}"
    );
    assert_eq!(rejected(&m), 0.0, "{m}");
    assert!(dead_letters(dir.path()).is_empty());

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_leaves_the_others_flowing() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 14).await;
    in_dir(dir.path());
    write_config(
        dir.path(),
        &serve_config(&emu, 2000, &[("in/*.csv", "upsert"), ("in/*.csv.gz", "upsert")]),
    );
    let mut serve = Serve::start(dir.path(), "serve.log").await;

    // A gzip header, then garbage.
    let mut garbage = vec![0x1f, 0x8b, 0x08, 0x00];
    let mut rng = Lcg::new(5);
    garbage.extend((0..4096).map(|_| rng.below(256) as u8));
    let tmp = dir.path().join("in").join(".bad.csv.gz.tmp");
    std::fs::write(&tmp, &garbage).expect("write garbage");
    std::fs::rename(&tmp, dir.path().join("in").join("bad.csv.gz")).expect("rename");
    let a = upserts(51, "a", 0..150);
    drop_by_rename(dir.path(), "a.csv", &a);

    let (expected_a, _) = model(&[("a.csv", &a)]);
    serve
        .eventually("the good file's rows", async |_: &Serve| exactly(&emu, &expected_a))
        .await;
    serve
        .eventually("the bad file counted as failed", async |s: &Serve| {
            let m = s.metrics().await?;
            match files_in(&m, "failed") {
                Some(1.0) => Ok(()),
                other => Err(format!("vikingsync_files{{state=\"failed\"}} {other:?}")),
            }
        })
        .await;
    serve
        .eventually("a `file failed` line for bad.csv.gz", async |s: &Serve| {
            if s.events_for("file failed", "bad.csv.gz").is_empty() {
                Err(format!("`file failed` lines: {:?}", s.events("file failed")))
            } else {
                Ok(())
            }
        })
        .await;
    serve.still_running();
    assert!(matches!(serve.get("/healthz").await, Ok((200, _))));

    // The service goes on taking files.
    let b = upserts(52, "b", 0..120);
    drop_by_rename(dir.path(), "b.csv", &b);
    let (expected, _) = model(&[("a.csv", &a), ("b.csv", &b)]);
    serve
        .eventually("the next good file's rows", async |_: &Serve| exactly(&emu, &expected))
        .await;
    serve
        .eventually("every good row counted as applied", async |s: &Serve| {
            let applied = applied_upserts(&s.metrics().await?);
            if applied == (a.len() + b.len()) as f64 {
                Ok(())
            } else {
                Err(format!("applied upserts {applied}"))
            }
        })
        .await;
    // Still one failed file, reported once, and the process is up.
    let m = serve.metrics().await.expect("metrics");
    assert_eq!(files_in(&m, "failed"), Some(1.0), "{m}");
    let failed = serve.events("file failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    serve.still_running();
    assert!(dead_letters(dir.path()).is_empty(), "{:?}", dead_letters(dir.path()));

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

/// A file written in place (not renamed) is taken only once its size and modification time have
/// held for `settle`: a gzip file written in two halves a second apart is read whole, not failed
/// as truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_place_is_taken_once_it_settles() {
    use std::io::Write as _;
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 15).await;
    in_dir(dir.path());
    let cfg = serve_config(&emu, 2000, &[("in/*.csv.gz", "upsert")]).replace("settle = 0.3", "settle = 3.0");
    write_config(dir.path(), &cfg);
    let mut serve = Serve::start(dir.path(), "serve.log").await;

    let rows = upserts(61, "z", 0..200);
    let text = format!("id,title,score,tags,vec\n{}", csv_body(dir.path(), &rows));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).expect("gzip");
    let gz = enc.finish().expect("gzip");
    let path = dir.path().join("in").join("c.csv.gz");
    std::fs::write(&path, &gz[..gz.len() / 2]).expect("first half");
    tokio::time::sleep(Duration::from_secs(1)).await;
    append(&path, &gz[gz.len() / 2..]);

    let (expected, _) = model(&[("c.csv.gz", &rows)]);
    serve
        .eventually("the settled file's rows", async |s: &Serve| {
            let failed = s.events("file failed");
            assert!(failed.is_empty(), "taken before it settled: {failed:?}");
            exactly(&emu, &expected)
        })
        .await;
    let m = serve.metrics().await.expect("metrics");
    assert_eq!(files_in(&m, "failed").unwrap_or(0.0), 0.0, "{m}");
    assert_eq!(rejected(&m), 0.0, "{m}");
    assert_eq!(emu.stats().rows_applied_upsert, rows.len() as u64);

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

/// `vector_encoding = "auto"` (the default) checks once a process: the pass of the first Parquet
/// file upserts one row packed and fetches it back; the pass of a later file sends packed without
/// checking again. Nothing else is sent twice, and every row lands as the file holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packed_vector_check_runs_once_a_process() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 16).await;
    in_dir(dir.path());
    write_config(dir.path(), &serve_config(&emu, 2000, &[("in/*.parquet", "upsert")]));
    let mut serve = Serve::start(dir.path(), "serve.log").await;
    let put = |name: &str, rows: &[Row]| {
        let tmp = dir.path().join("in").join(format!(".{name}.tmp"));
        write(&tmp, Fmt::Parquet, rows, false);
        std::fs::rename(&tmp, dir.path().join("in").join(name)).expect("rename into place");
    };
    let checks = |s: &Serve| {
        s.log_text()
            .lines()
            .filter(|l| l.contains("vector_encoding auto:"))
            .count()
    };

    let a = upserts(71, "a", 0..150);
    put("a.parquet", &a);
    let (expected, _) = model(&[("a.parquet", &a)]);
    serve
        .eventually("the first file's rows", async |_: &Serve| exactly(&emu, &expected))
        .await;
    let b = upserts(72, "b", 0..120);
    put("b.parquet", &b);
    let (expected, _) = model(&[("a.parquet", &a), ("b.parquet", &b)]);
    serve
        .eventually("both files' rows", async |_: &Serve| exactly(&emu, &expected))
        .await;
    serve
        .eventually("every row counted as applied", async |s: &Serve| {
            let applied = applied_upserts(&s.metrics().await?);
            if applied == 270.0 {
                Ok(())
            } else {
                Err(format!("applied upserts {applied}, expected 270"))
            }
        })
        .await;
    // One check (one row upserted once more), then every vector packed.
    assert_eq!(checks(&serve), 1, "{}", serve.log_tail());
    let stats = emu.stats();
    assert_eq!(stats.rows_applied_upsert, 150 + 1 + 120);
    assert_eq!(stats.packed_vectors, 150 + 1 + 120);

    let (status, log) = serve.terminate().await;
    assert_eq!(status.code(), Some(0), "{log}");
    emu.shutdown().await;
}

#[test]
fn the_metrics_parser_reads_labels_and_sums_series() {
    let text = "# HELP vikingsync_rows_total Rows.\n# TYPE vikingsync_rows_total counter\n\
        vikingsync_rows_total{op=\"upsert\",outcome=\"applied\"} 12\n\
        vikingsync_rows_total{outcome=\"rejected\", op=\"unknown\"} 2\n\
        vikingsync_rows_total{op=\"update\",outcome=\"rejected\"} 3.0\n\
        vikingsync_files{state=\"a}\\\"b\"} 1\n\
        vikingsync_in_flight 4\n\
        vikingsync_request_duration_seconds_bucket{le=\"+Inf\"} 9\n";
    assert_eq!(
        metric(
            text,
            "vikingsync_rows_total",
            &[("op", "upsert"), ("outcome", "applied")]
        ),
        Some(12.0)
    );
    assert_eq!(
        metric(text, "vikingsync_rows_total", &[("outcome", "rejected")]),
        Some(5.0)
    );
    assert_eq!(metric(text, "vikingsync_files", &[("state", "a}\"b")]), Some(1.0));
    assert_eq!(metric(text, "vikingsync_in_flight", &[]), Some(4.0));
    assert_eq!(metric(text, "vikingsync_rows_total", &[("op", "delete")]), None);
    assert!(has_series(text, "vikingsync_request_duration_seconds_bucket"));
    assert!(!has_series(text, "vikingsync_rows"));
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_eq!(parse_response(raw), Ok((200, "hello world".to_string())));
}
