//! Flow control against a strict server: the emulator's quota is a token bucket whose burst is a
//! tenth of a second of quota. The rate controller must find the quota (unknown, or below the
//! ceiling), the concurrency controller must cover latency, two processes must share, async
//! upserts must reach the collection — and every run must end in exactly the state its input
//! implies. Assertions are on counts and states, never on elapsed time.

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

/// `flow  rate R rows/s at the end (C cuts), concurrency N (peak P)` → (R or None, C, N, P).
fn flow_line(out: &std::process::Output) -> (Option<u64>, u64, u64, u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("flow"))
        .unwrap_or_else(|| panic!("a flow line: {stdout}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    if line.contains("unpaced") {
        (None, nums[0], nums[1], nums[2])
    } else {
        (Some(nums[0]), nums[1], nums[2], nums[3])
    }
}

fn throttles(out: &std::process::Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix("requests")?;
            let inside = l.split('(').nth(1)?;
            inside.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("a throttled figure: {stdout}"))
}

/// Upserts of distinct keys, `n` rows, keys from `first`.
fn rows(n: usize, first: usize, seed: u64) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    (first..first + n)
        .map(|i| full_row(&mut rng, "upsert", format!("k{i:06}")))
        .collect()
}

fn auto(cfg: String) -> String {
    cfg.replace("concurrency = 4\n", "")
}

async fn check_state(emu: &vikingdb_emulator::Emulator, all: &[Row], shown: &str) {
    emu.settle().await;
    let (expected, _) = model(&[("x", all)]);
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "record count\n{shown}");
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_quota_is_found_and_nothing_is_lost() {
    for (ceiling, quota) in [(0u32, 600u32), (3000, 400)] {
        let dir = tempdir();
        let emu = start_emulator(vec![spec("items", quota, false)], FaultConfig::default(), 3).await;
        let data = rows(2400, 0, 5);
        write(&dir.path().join("rows.csv"), Fmt::Csv, &data, false);
        let cfg = upserts_at(&emu.endpoint(), "v2", "rows.csv", ceiling);
        write_config(dir.path(), &auto(cfg));
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shown}");
        check_state(&emu, &data, &shown).await;
        let (rate, cuts, _, _) = flow_line(&out);
        // The strict server throttled, the controller cut, and it settled near the quota.
        assert!(throttles(&out) > 0 && cuts >= 1, "{shown}");
        let rate = rate.unwrap_or_else(|| panic!("paced after a throttle: {shown}"));
        assert!(
            rate <= u64::from(quota) * 3 / 2,
            "rate {rate} vs quota {quota}: {shown}"
        );
        // Every throttle was counted by the server too, and nothing was applied twice or lost.
        assert_eq!(emu.stats().throttled, throttles(&out), "{shown}");
        emu.shutdown().await;
    }
}

/// `run` of `rows` upserts (`d{i}`, `text {i}`) into a vectorize collection "docs" with the
/// server's `quota` (0 = none), `latency_ms` a request, under a `ceiling` (0 = none), concurrency
/// "auto".
async fn vectorize_run(
    latency_ms: u64,
    quota: u32,
    ceiling: u32,
    rows: usize,
    seed: u64,
) -> (vikingdb_emulator::Emulator, std::process::Output) {
    let dir = tempdir();
    let faults = FaultConfig {
        latency_ms,
        ..FaultConfig::default()
    };
    let emu = start_emulator(vec![spec("docs", quota, true)], faults, seed).await;
    let mut body = String::from("id,text,img\n");
    for i in 0..rows {
        body.push_str(&format!("d{i},text {i},tos://bucket/img{i}.jpg\n"));
    }
    std::fs::write(dir.path().join("docs.csv"), body).expect("write");
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "docs",
        true,
        ceiling,
        &[("docs.csv".into(), Some("upsert"))],
    );
    write_config(dir.path(), &auto(cfg));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    (emu, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_bound_writes_grow_the_concurrency() {
    // A vectorize collection: one row a request, 40 ms a request, no quota. Four requests in
    // flight would give 100 rows/s; the controller must add slots.
    let (emu, out) = vectorize_run(40, 0, 0, 400, 3).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(emu.records("docs").expect("collection").len(), 400, "{shown}");
    let (_, _, _, peak) = flow_line(&out);
    assert!(peak >= 8, "the in-flight limit grew from 4: peak {peak}\n{shown}");
    assert_eq!(emu.stats().largest_write_request_rows, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_far_below_the_ceiling_is_found_from_the_first_throttle() {
    // A vectorize collection (one row a request) at 40 ms under the default-sized ceiling, with
    // a strict 100 rows/s quota: slow start doubles the requests in flight, and the server
    // first refuses at ~0.13 s, before the controller's first measurement. What the server took
    // until then is the floor to hold: cut from the ceiling instead, the rate came down a cut a
    // tick, and 510 of 1,010 requests were refused. Every row must land exactly once.
    let quota = 100u64;
    let (emu, out) = vectorize_run(40, quota as u32, 1500, 500, 7).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let records = emu.records("docs").expect("collection");
    assert_eq!(records.len(), 500, "{shown}");
    for i in 0..500 {
        let text = records.get(&format!("d{i}")).and_then(|r| r.get("text"));
        assert_eq!(
            text.and_then(|t| t.as_str()),
            Some(format!("text {i}").as_str()),
            "d{i}\n{shown}"
        );
    }
    let (rate, cuts, _, peak) = flow_line(&out);
    let throttled = throttles(&out);
    assert!(throttled > 0 && cuts >= 1, "{shown}");
    assert!(peak >= 8, "the in-flight limit grew from 4: peak {peak}\n{shown}");
    let rate = rate.unwrap_or_else(|| panic!("paced under a ceiling: {shown}"));
    assert!(
        (quota / 2..=quota * 3 / 2).contains(&rate),
        "rate {rate} vs quota {quota}: {shown}"
    );
    // 500 rows and what was refused: a storm of refusals from the ceiling would be half.
    let requests = 500 + throttled;
    assert!(
        throttled * 10 < requests,
        "{throttled} of {requests} requests refused\n{shown}"
    );
    assert_eq!(emu.stats().throttled, throttled, "{shown}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_collection_and_lose_nothing() {
    let a = tempdir();
    let b = tempdir();
    let emu = start_emulator(vec![spec("items", 500, false)], FaultConfig::default(), 3).await;
    let rows_a = rows(1200, 0, 7);
    let rows_b = rows(1200, 100_000, 8);
    for (dir, data) in [(&a, &rows_a), (&b, &rows_b)] {
        write(&dir.path().join("rows.csv"), Fmt::Csv, data, false);
        let cfg = upserts_at(&emu.endpoint(), "v2", "rows.csv", 1500);
        write_config(dir.path(), &auto(cfg));
    }
    let args = ["run", "--config", "sync.toml", "--no-progress"];
    let (out_a, out_b) = tokio::join!(run_binary(a.path(), &args), run_binary(b.path(), &args));
    let shown = format!("{}\n{}", text(&out_a), text(&out_b));
    assert_eq!(out_a.status.code(), Some(0), "{shown}");
    assert_eq!(out_b.status.code(), Some(0), "{shown}");
    let all: Vec<Row> = rows_a.iter().chain(&rows_b).cloned().collect();
    check_state(&emu, &all, &shown).await;
    assert_eq!(emu.stats().throttled, throttles(&out_a) + throttles(&out_b), "{shown}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_upserts_use_their_own_quota_and_reach_the_collection() {
    let dir = tempdir();
    let mut config = emulator_config(vec![spec("items", 200, false)], FaultConfig::default(), 3);
    config.async_quota_rows_per_second = Some(5000);
    let emu = start_emulator_with(config).await;
    let data = rows(3000, 0, 9);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &data, false);
    let cfg = upserts_at(&emu.endpoint(), "v2", "rows.csv", 0)
        .replace("vectorize = false\n", "vectorize = false\nasync_upsert = true\n");
    write_config(dir.path(), &auto(cfg));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let stats = emu.stats();
    // Every row went through the async bucket, none through the (much smaller) sync one.
    assert_eq!(stats.rows_accepted_async, 3000, "{shown}");
    assert_eq!(stats.rows_accepted_sync, 0, "{shown}");
    check_state(&emu, &data, &shown).await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_upserts_are_refused_where_they_could_lose_or_reorder_writes() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 3).await;
    write(&dir.path().join("rows.csv"), Fmt::Csv, &rows(10, 0, 1), false);
    write(&dir.path().join("mixed.csv"), Fmt::Csv, &rows(10, 0, 1), true);
    let upsert = [("rows.csv".to_string(), Some("upsert"))];
    let mixed = [
        ("rows.csv".to_string(), Some("upsert")),
        ("mixed.csv".to_string(), None),
    ];
    for (api, vectorize, sources, needle) in [
        ("v1", false, &upsert[..], "api = \"v2\""),
        ("v2", true, &upsert[..], "vectorize"),
        ("v2", false, &mixed[..], "mixed.csv"),
    ] {
        let cfg = config_text(&emu.endpoint(), api, "items", vectorize, 0, sources).replace(
            &format!("vectorize = {vectorize}\n"),
            &format!("vectorize = {vectorize}\nasync_upsert = true\n"),
        );
        write_config(dir.path(), &cfg);
        for cmd in ["run", "validate"] {
            let out = run_binary(dir.path(), &[cmd, "--config", "sync.toml"]).await;
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(78), "{api} {vectorize}: {shown}");
            assert!(shown.contains("async_upsert") && shown.contains(needle), "{shown}");
        }
    }
    assert!(emu.records("items").expect("collection").is_empty());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_at_most_fifty_milliseconds_of_the_rate() {
    // At a 400 rows/s ceiling a request carries at most 20 rows (the batch size is 100), so a
    // server whose burst is a tenth of a second of quota always has room for it.
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 3).await;
    let data = rows(300, 0, 4);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &data, false);
    write_config(dir.path(), &auto(upserts_at(&emu.endpoint(), "v2", "rows.csv", 400)));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let largest = emu.stats().largest_write_request_rows;
    assert!((10..=20).contains(&largest), "largest request {largest}\n{shown}");
    check_state(&emu, &data, &shown).await;
    emu.shutdown().await;
}
