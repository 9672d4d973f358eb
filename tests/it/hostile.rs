//! A hostile world: servers and proxies that answer what VikingDB never would (a 200 that is not
//! JSON, a redirect, a huge body, a 413, a Retry-After of a quarter hour), and a state directory
//! that is deleted, replaced or cut while a run uses it. Each case runs the real binary over
//! loopback HTTP and checks that no row is counted applied that VikingDB did not accept.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

/// One request as the hostile server read it.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the hostile server does with a request.
enum Act {
    /// Write these bytes as the whole response, then close.
    Raw(Vec<u8>),
    /// Forward to the upstream (the emulator) and pass its answer back.
    Forward,
    /// Forward, then answer these bytes instead of the upstream's answer (applied, but unknown).
    ForwardThenRaw(Vec<u8>),
    /// Write a status line and headers, then stream `n` bytes of body without a length.
    Stream(usize),
}

type Policy = Arc<dyn Fn(usize, &Req) -> Act + Send + Sync>;

/// A small HTTP/1.1 server on loopback that answers by `policy` (given the request number).
struct Hostile {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

async fn hostile(upstream: Option<String>, policy: Policy) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (policy, count, upstream, client) = (policy.clone(), count.clone(), upstream.clone(), client.clone());
            tokio::spawn(async move {
                let _ = serve(stream, policy, count, upstream, client).await;
            });
        }
    });
    Hostile { endpoint, requests }
}

async fn serve(
    mut stream: TcpStream,
    policy: Policy,
    count: Arc<AtomicUsize>,
    upstream: Option<String>,
    client: reqwest::Client,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        let n = count.fetch_add(1, Ordering::SeqCst);
        match policy(n, &req) {
            Act::Raw(bytes) => {
                stream.write_all(&bytes).await?;
                return Ok(());
            }
            Act::Forward => {
                let (status, body) = forward(&client, upstream.as_deref(), &req).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body).await?;
            }
            Act::ForwardThenRaw(bytes) => {
                let _ = forward(&client, upstream.as_deref(), &req).await;
                stream.write_all(&bytes).await?;
                return Ok(());
            }
            Act::Stream(n) => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
                    .await?;
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < n {
                    stream.write_all(&chunk).await?;
                    sent += chunk.len();
                }
                return Ok(());
            }
        }
    }
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Req>> {
    let mut tmp = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok(Some(Req { path, headers, body }))
}

/// Sends the request on to the emulator with its headers (the Host it was signed for included).
async fn forward(client: &reqwest::Client, upstream: Option<&str>, req: &Req) -> (u16, Vec<u8>) {
    let Some(upstream) = upstream else {
        return (502, b"no upstream".to_vec());
    };
    let mut rb = client.post(format!("{upstream}{}", req.path));
    for (k, v) in &req.headers {
        if k != "content-length" && k != "connection" {
            rb = rb.header(k.as_str(), v.as_str());
        }
    }
    match rb.body(req.body.clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
        }
        Err(_) => (502, b"upstream failed".to_vec()),
    }
}

fn response(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The bodies a gateway, a captive portal or a cut connection put where VikingDB's answer belongs.
fn garbage_200s() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "html",
            response(
                "200 OK",
                "Content-Type: text/html\r\n",
                b"<html><body>Please log in to the hotel wifi</body></html>",
            ),
        ),
        ("empty", response("200 OK", "", b"")),
        (
            "empty object",
            response("200 OK", "Content-Type: application/json\r\n", b"{}"),
        ),
        (
            "cut-off json",
            response("200 OK", "Content-Type: application/json\r\n", br#"{"code":"Succ"#),
        ),
        (
            "connection cut mid-body",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"code\":\"Success\""
                .to_vec(),
        ),
        (
            "json without code",
            response("200 OK", "Content-Type: application/json\r\n", br#"{"message":"ok"}"#),
        ),
    ]
}

/// 40 rows of 3 keys' worth of upserts, written as CSV; returns the expected state.
fn upserts(dir: &Path, name: &str, n: usize, seed: u64) -> State {
    let sc = scenario("upsert", Fmt::Csv, n, seed);
    let rows: Vec<Row> = sc.rows.into_iter().filter(|r| r.bad.is_none()).collect();
    write(&dir.join(name), Fmt::Csv, &rows, false);
    model(&[(name, &rows)]).0
}

fn assert_state(emu: &vikingdb_emulator::Emulator, expected: &State, shown: &str) {
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "record count\n{shown}");
    for (k, v) in expected {
        assert_eq!(actual.get(k), Some(v), "record {k}\n{shown}");
    }
}

fn quick_retries(cfg: &str, attempts: u32) -> String {
    cfg.replace(
        "max_attempts = 30\ninitial_backoff = 0.01\nmax_backoff = 0.2\nmax_elapsed = 60",
        &format!("max_attempts = {attempts}\ninitial_backoff = 0.01\nmax_backoff = 0.05\nmax_elapsed = 10"),
    )
}

fn summary_figure(out: &std::process::Output, label: &str) -> Option<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse().ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_a_vikingdb_answer_is_never_applied() {
    for api in ["v2", "v1"] {
        for (what, bytes) in garbage_200s() {
            let dir = tempdir();
            let expected = upserts(dir.path(), "rows.csv", 30, 3);
            let bytes = Arc::new(bytes);
            let server = hostile(None, Arc::new(move |_, _| Act::Raw(bytes.to_vec()))).await;
            write_config(
                dir.path(),
                &quick_retries(&one_source_at(&server.endpoint, api, "rows.csv", "upsert"), 3),
            );
            let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(1), "{api} {what}: {shown}");
            let why = if what == "connection cut mid-body" {
                "connection dropped mid-response"
            } else {
                "not a VikingDB answer"
            };
            assert!(shown.contains(why), "{api} {what}: {shown}");
            assert!(
                shown.contains(&format!("POST {}/api/", server.endpoint)),
                "{api} {what}: names the endpoint: {shown}"
            );
            assert_eq!(summary_figure(&out, "applied"), Some(0), "{api} {what}: {shown}");
            assert!(!shown.contains("panicked"), "{shown}");

            // Nothing was marked done: the same state directory against the real emulator sends it all.
            let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
            write_config(dir.path(), &one_source(&emu, api, "rows.csv", "upsert"));
            let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(0), "{api} {what}: {shown}");
            assert_state(&emu, &expected, &shown);
            emu.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_answers_for_vikingdb_loses_nothing() {
    // Every third request is answered by the gateway itself, before or after the emulator saw it:
    // garbage 200s, HTML 502s and 400s, a cut connection. Retries must end in the state the input
    // implies, with every row applied once as far as the summary is concerned.
    for api in ["v2", "v1"] {
        let dir = tempdir();
        let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 7).await;
        let sc = scenario("mixed", Fmt::Csv, 400, 11);
        write(&dir.path().join("setup.csv"), Fmt::Csv, &sc.setup, false);
        write(&dir.path().join("rows.csv"), Fmt::Csv, &sc.rows, true);
        let garbage = garbage_200s();
        let policy: Policy = Arc::new(move |n, _| {
            if n % 3 != 2 {
                return Act::Forward;
            }
            let pick = (n / 3) % (garbage.len() + 3);
            let bytes = match pick.checked_sub(garbage.len()) {
                None => garbage[pick].1.clone(),
                Some(0) => response("502 Bad Gateway", "", b"<html>502 Bad Gateway</html>"),
                Some(1) => response("400 Bad Request", "", b"<html>400 Bad Request (nginx)</html>"),
                Some(_) => Vec::new(),
            };
            if (n / 3) % 2 == 0 {
                Act::Raw(bytes)
            } else {
                Act::ForwardThenRaw(bytes)
            }
        });
        let server = hostile(Some(emu.endpoint()), policy).await;
        let cfg = config_text(
            &server.endpoint,
            api,
            "items",
            false,
            0,
            &[("setup.csv".into(), Some("upsert")), ("rows.csv".into(), None)],
        );
        write_config(dir.path(), &cfg);
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(0), "{api}: {shown}");
        let (expected, expected_dead) = model(&[("setup.csv", &sc.setup), ("rows.csv", &sc.rows)]);
        assert_state(&emu, &expected, &shown);
        let dead: std::collections::BTreeSet<(String, u64)> =
            dead_letters(dir.path()).into_iter().map(|(f, r, _)| (f, r)).collect();
        // A retried update whose first attempt was applied behind the gateway's back is still an
        // update of an existing key; deletes then updates are refused by the server alike.
        assert_eq!(dead, expected_dead, "{api}: {shown}");
        assert!(server.requests.load(Ordering::SeqCst) > 10);
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_reported_not_followed() {
    for status in ["302 Found", "301 Moved Permanently", "307 Temporary Redirect"] {
        let dir = tempdir();
        upserts(dir.path(), "rows.csv", 20, 5);
        let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
        let location = format!("{}/api/vikingdb/data/upsert", emu.endpoint());
        let bytes = response(status, &format!("Location: {location}\r\n"), b"");
        let server = hostile(None, Arc::new(move |_, _| Act::Raw(bytes.clone()))).await;
        write_config(dir.path(), &one_source_at(&server.endpoint, "v2", "rows.csv", "upsert"));
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{status}: {shown}");
        assert!(shown.contains(&location), "{status}: names the Location: {shown}");
        assert!(shown.contains("redirect"), "{shown}");
        assert_eq!(summary_figure(&out, "applied"), Some(0), "{status}: {shown}");
        assert!(
            emu.records("items").expect("collection").is_empty(),
            "{status}: the redirect was followed"
        );
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_never_outlasts_max_elapsed() {
    let dir = tempdir();
    upserts(dir.path(), "rows.csv", 20, 5);
    let bytes = response(
        "429 Too Many Requests",
        "Retry-After: 1000\r\nContent-Type: application/json\r\n",
        br#"{"code":"RequestLimitExceeded","message":"slow down"}"#,
    );
    let server = hostile(None, Arc::new(move |_, _| Act::Raw(bytes.clone()))).await;
    let cfg = one_source_at(&server.endpoint, "v2", "rows.csv", "upsert").replace(
        "max_attempts = 30\ninitial_backoff = 0.01\nmax_backoff = 0.2\nmax_elapsed = 60",
        "max_attempts = 100\ninitial_backoff = 0.01\nmax_backoff = 1\nmax_elapsed = 3",
    );
    write_config(dir.path(), &cfg);
    let start = Instant::now();
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let took = start.elapsed();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("throttled"), "{shown}");
    // max_elapsed = 3 s; before the cap, one Retry-After alone was 300 s. Generous for slow CI.
    assert!(took < Duration::from_secs(60), "took {took:?}: {shown}");
    // Retry-After is capped at max_backoff (1 s), so several attempts fit in the 3 s.
    assert!(server.requests.load(Ordering::SeqCst) >= 3, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_request_sized_before_the_cut_goes_again_as_smaller_requests() {
    // At the 1,500 rows/s ceiling a full request carries 73 rows. The server throttles the first
    // such request, which cuts the rate, and a request may then carry fewer rows. Those 73 rows
    // must go again as smaller requests, not as the same 73: at a strict server a request larger
    // than the others' rarely finds room, and its retries backed off to seconds while the process
    // sent nothing.
    let dir = tempdir();
    let expected = upserts(dir.path(), "rows.csv", 2000, 12);
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let requests = Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let seen = requests.clone();
    let throttled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answer = response(
        "429 Too Many Requests",
        "Content-Type: application/json\r\n",
        br#"{"code":"RequestLimitExceeded","message":"the collection's row quota cannot take them now"}"#,
    );
    let policy: Policy = Arc::new(move |_, req: &Req| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let keys: Vec<String> = body["data"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r["id"].to_string()).collect())
            .unwrap_or_default();
        let full = keys.len() >= 73;
        if let Ok(mut s) = seen.lock() {
            s.push(keys);
        }
        if full && !throttled.swap(true, Ordering::SeqCst) {
            Act::Raw(answer.clone())
        } else {
            Act::Forward
        }
    });
    let server = hostile(Some(emu.endpoint()), policy).await;
    let cfg = upserts_at(&server.endpoint, "v2", "rows.csv", 1500).replace("concurrency = 4\n", "concurrency = 1\n");
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_state(&emu, &expected, &shown);
    let requests = requests.lock().map(|s| s.clone()).unwrap_or_default();
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    let at = sizes.iter().position(|n| *n >= 73).expect("a full request");
    assert_eq!(sizes[at], 73, "50 ms of 1,470 rows/s: {sizes:?}\n{shown}");
    // The next requests (one in flight at a time) are those rows again, in order, in pieces of
    // what the cut rate allows.
    let mut again = Vec::new();
    for keys in &requests[at + 1..] {
        if again.len() >= 73 {
            break;
        }
        assert!(keys.len() < 73, "resent whole after the cut: {sizes:?}\n{shown}");
        again.extend_from_slice(keys);
    }
    assert_eq!(again, requests[at], "the same rows, in order: {sizes:?}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_not_read_into_memory() {
    let dir = tempdir();
    upserts(dir.path(), "rows.csv", 10, 5);
    let server = hostile(None, Arc::new(|_, _| Act::Stream(64 * 1024 * 1024))).await;
    write_config(
        dir.path(),
        &quick_retries(&one_source_at(&server.endpoint, "v2", "rows.csv", "upsert"), 2),
    );
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("over 1024 KiB"), "{shown}");
    assert_eq!(summary_figure(&out, "applied"), Some(0), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_from_a_proxy_isolates_the_big_rows_and_records_the_status() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let sc = scenario("upsert", Fmt::Csv, 60, 9);
    let mut rows: Vec<Row> = sc.rows.into_iter().filter(|r| r.bad.is_none()).collect();
    let mut big = std::collections::BTreeSet::new();
    for i in [4usize, 17, 40] {
        rows[i].title = Some("x".repeat(20_000));
        rows[i].bad = Some("too large for the proxy");
        big.insert(("rows.csv".to_string(), i as u64 + 1));
    }
    // Keys repeat in the scenario: a big row must not be followed by a normal row of its key, or
    // the expected state would depend on it. Give the big rows keys of their own.
    for (n, i) in [4usize, 17, 40].into_iter().enumerate() {
        rows[i].id = format!("big{n}");
    }
    write(&dir.path().join("rows.csv"), Fmt::Csv, &rows, false);
    let policy: Policy = Arc::new(|_, req: &Req| {
        if req.body.len() > 16 * 1024 {
            Act::Raw(response(
                "413 Request Entity Too Large",
                "Content-Type: text/html\r\n",
                b"<html><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></html>",
            ))
        } else {
            Act::Forward
        }
    });
    let server = hostile(Some(emu.endpoint()), policy).await;
    write_config(dir.path(), &one_source_at(&server.endpoint, "v2", "rows.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let (expected, dead_expected) = model(&[("rows.csv", &rows)]);
    assert_eq!(dead_expected, big);
    assert_state(&emu, &expected, &shown);
    let dead = dead_letters(dir.path());
    assert_eq!(
        dead.iter()
            .map(|(f, r, _)| (f.clone(), *r))
            .collect::<std::collections::BTreeSet<_>>(),
        big,
        "{shown}"
    );
    for (_, _, entry) in &dead {
        assert_eq!(entry["http_status"], 413, "{entry}");
        assert!(entry["error"].as_str().is_some_and(|e| e.contains("413")), "{entry}");
    }
    emu.shutdown().await;
}

/// Waits until `path` exists, or panics after 30 s.
async fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_state_directory_is_replaced_stops_and_the_next_run_is_not_stuck() {
    let dir = tempdir();
    // 1,500 rows at 500 rows/s: about three seconds of sending.
    let expected = upserts(dir.path(), "rows.csv", 1500, 21);
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    write_config(dir.path(), &upserts_at(&emu.endpoint(), "v2", "rows.csv", 500));
    let state = dir.path().join("state");
    let mut first = binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(&state.join("checkpoint-a.json")).await;
    std::fs::remove_dir_all(&state).expect("remove state");
    std::fs::create_dir(&state).expect("new state");
    let second = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]);
    let first_out = tokio::time::timeout(Duration::from_secs(60), async {
        let mut stderr = Vec::new();
        if let Some(mut e) = first.stderr.take() {
            let _ = e.read_to_end(&mut stderr).await;
        }
        (first.wait().await.expect("wait"), stderr)
    });
    let (second_out, first_out) = tokio::join!(second, first_out);
    let (first_status, first_err) = first_out.expect("the first run ends within 60 s");
    let first_err = String::from_utf8_lossy(&first_err).into_owned();
    let shown = text(&second_out);
    assert_eq!(first_status.code(), Some(1), "the first run must stop: {first_err}");
    assert!(
        first_err.contains("deleted") || first_err.contains("replaced"),
        "says why: {first_err}"
    );
    assert_eq!(second_out.status.code(), Some(0), "{shown}");
    assert_state(&emu, &expected, &shown);
    // The state the second run left resumes cleanly.
    let third = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_dead_letter_file_has_a_way_out_that_loses_nothing() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let sc = scenario("upsert", Fmt::Csv, 200, 4);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &sc.rows, false);
    let (expected, expected_dead) = model(&[("rows.csv", &sc.rows)]);
    assert!(!expected_dead.is_empty(), "the scenario has bad rows");
    write_config(dir.path(), &one_source(&emu, "v2", "rows.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dl = dir.path().join("state").join("dead-letter.jsonl");
    std::fs::write(&dl, b"").expect("cut");

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("--start-over"), "{shown}");

    let out = run_binary(
        dir.path(),
        &["run", "--config", "sync.toml", "--no-progress", "--start-over"],
    )
    .await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_state(&emu, &expected, &shown);
    let dead: std::collections::BTreeSet<(String, u64)> =
        dead_letters(dir.path()).into_iter().map(|(f, r, _)| (f, r)).collect();
    assert_eq!(dead, expected_dead, "every rejected row dead-lettered again");
    let set_aside = std::fs::read_dir(dir.path().join("state"))
        .expect("state")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".set-aside-"))
        .count();
    assert!(set_aside >= 2, "the old checkpoint and dead-letter file are kept");
    // And the state it leaves resumes: nothing left to send.
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary_figure(&out, "applied"), Some(0), "{}", text(&out));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_through_a_symlink_loop_reads_each_file_once() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data");
    let expected = upserts(&data, "rows.csv", 30, 8);
    std::os::unix::fs::symlink(&data, data.join("loop")).expect("symlink");
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    write_config(dir.path(), &one_source(&emu, "v2", "data/**/*.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains("#1 and #1"), "{shown}");
    assert_state(&emu, &expected, &shown);
    let rows = scenario("upsert", Fmt::Csv, 30, 8)
        .rows
        .iter()
        .filter(|r| r.bad.is_none())
        .count() as u64;
    assert_eq!(summary_figure(&out, "rows read"), Some(rows), "{shown}");
    emu.shutdown().await;
}

/// The newest committed checkpoint's byte position for the only source file, if any.
fn committed_byte(state: &Path) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for slot in ["checkpoint-a.json", "checkpoint-b.json"] {
        let Ok(text) = std::fs::read_to_string(state.join(slot)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let (Some(seq), Some(byte)) = (v["seq"].as_u64(), v["files"][0]["position"]["byte"].as_u64()) else {
            continue;
        };
        if best.is_none_or(|(s, _)| seq > s) {
            best = Some((seq, byte));
        }
    }
    best.map(|(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_into_a_file_edited_in_place_is_refused() {
    // A killed run, then a same-size edit in the middle of the file that moves line boundaries:
    // the fingerprint (size, first 64 KiB, last 4 KiB) cannot see it, the resume offset check must.
    let dir = tempdir();
    upserts(dir.path(), "rows.csv", 4000, 31);
    let path = dir.path().join("rows.csv");
    let size = std::fs::metadata(&path).expect("size").len();
    assert!(
        size > 200_000,
        "the file must be larger than the fingerprinted blocks: {size}"
    );
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    write_config(dir.path(), &upserts_at(&emu.endpoint(), "v2", "rows.csv", 800));
    let state = dir.path().join("state");
    let mut child = spawn_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]);
    let start = Instant::now();
    let byte = loop {
        if let Some(b) = committed_byte(&state)
            && b > 80_000
        {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint past 80 KB");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let byte = committed_byte(&state).unwrap_or(byte);
    assert!(byte + 10_000 < size, "killed too late: {byte} of {size}");
    let mut data = std::fs::read(&path).expect("read");
    // Delete one byte of a line between the first block and the offset, and insert one after it.
    let cut = (70_000..byte as usize - 10)
        .find(|&i| data[i].is_ascii_alphanumeric())
        .expect("a byte to cut");
    data.remove(cut);
    data.insert(byte as usize + 100, b'x');
    assert_eq!(data.len() as u64, size);
    std::fs::write(&path, &data).expect("edit in place");

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("rows.csv") && shown.contains("changed in place"),
        "{shown}"
    );
    assert!(shown.contains("--start-over"), "{shown}");
    let out = run_binary(
        dir.path(),
        &["run", "--config", "sync.toml", "--no-progress", "--start-over"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_refused_by_name_and_nothing_hangs() {
    let dir = tempdir();
    let d = dir.path();
    let base = "[target]\nemulator = true\n[collection]\nname = \"c\"\nprimary_key = \"id\"\n\
                [collection.fields]\nid = \"string\"\ntitle = \"string\"\n[state]\ndir = \"st\"\n";
    std::fs::create_dir(d.join("adir.csv")).expect("dir");
    let fifo = std::process::Command::new("mkfifo")
        .arg(d.join("fifo.csv"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success());
    // A source that is a directory, a FIFO (reading it would block forever), a device.
    for (src, needle) in [
        ("adir.csv", "not a regular file"),
        ("fifo.csv", "not a regular file"),
        ("/dev/zero", "not a regular file"),
        ("none-*.csv", "matches no files"),
    ] {
        std::fs::write(
            d.join("sync.toml"),
            format!("{base}[[sources]]\npath = \"{src}\"\nop = \"upsert\"\n"),
        )
        .expect("config");
        for cmd in ["run", "validate"] {
            let out = run_binary(
                d,
                &[cmd, "--config", "sync.toml", "--no-progress"][..if cmd == "run" { 4 } else { 3 }],
            )
            .await;
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(1), "{cmd} {src}: {shown}");
            assert!(shown.contains(src) && shown.contains(needle), "{cmd} {src}: {shown}");
        }
    }
    // A config that is not UTF-8, a directory, empty.
    std::fs::write(d.join("bin.toml"), b"\xff\xfe[target]").expect("write");
    std::fs::create_dir(d.join("dir.toml")).expect("dir");
    std::fs::write(d.join("empty.toml"), b"").expect("write");
    for (cfg, needle) in [
        ("bin.toml", "UTF-8"),
        ("dir.toml", "directory"),
        ("empty.toml", "target"),
    ] {
        let out = run_binary(d, &["validate", "--config", cfg]).await;
        let shown = text(&out);
        // An unusable config file is EX_CONFIG.
        assert_eq!(out.status.code(), Some(78), "{cfg}: {shown}");
        assert!(shown.contains(cfg) && shown.contains(needle), "{cfg}: {shown}");
        assert!(!shown.contains("panicked"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unreadable_checkpoint_slots_are_refused_then_set_aside_by_start_over() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let expected = upserts(dir.path(), "rows.csv", 100, 6);
    write_config(dir.path(), &one_source(&emu, "v2", "rows.csv", "upsert"));
    let args = ["run", "--config", "sync.toml", "--no-progress"];
    let out = run_binary(dir.path(), &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = dir.path().join("state");
    for slot in ["checkpoint-a.json", "checkpoint-b.json"] {
        if state.join(slot).exists() {
            std::fs::write(state.join(slot), b"{torn").expect("tear");
        }
    }
    let out = run_binary(dir.path(), &args).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("--start-over") && !shown.contains("panicked"), "{shown}");
    let out = run_binary(
        dir.path(),
        &["run", "--config", "sync.toml", "--no-progress", "--start-over"],
    )
    .await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_state(&emu, &expected, &shown);
    let kept = std::fs::read_dir(&state)
        .expect("state")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("checkpoint-")
                && e.file_name().to_string_lossy().contains(".set-aside-")
        })
        .count();
    assert!(kept >= 1, "the torn slots are kept aside, not deleted");
    emu.shutdown().await;
}
