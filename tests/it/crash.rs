//! Kill it anywhere, lose nothing: SIGKILL the binary at 25 random moments of one backfill
//! against the emulator with faults on (5xx before and after applying, dropped connections,
//! throttling), tear the newest checkpoint once on the way, then let it finish. The collection must
//! end exactly as the input implies, every rejected row must be in the dead-letter file exactly
//! once, and what restarts sent again must stay within the in-flight window.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

const CONCURRENCY: usize = 4;
const BATCH: usize = 100;
const RATE: u32 = 2500;
const COMMIT_INTERVAL: f64 = 0.05;

/// The invariant that makes dead letters exactly-once: every entry inside the committed length
/// belongs to a row the committed checkpoint counts as done (before its position, or listed as
/// acknowledged above it). Returns the entries that break it.
fn committed_dead_letters_not_done(dir: &std::path::Path) -> Vec<String> {
    let state = dir.join("state");
    let Ok(Some(cp)) = vikingsync::checkpoint::load(&state) else {
        return Vec::new();
    };
    let bytes = std::fs::read(state.join("dead-letter.jsonl")).unwrap_or_default();
    let committed = &bytes[..bytes.len().min(cp.dead_letter_len as usize)];
    let mut bad = Vec::new();
    for line in String::from_utf8_lossy(committed).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("committed dead-letter lines are whole JSON");
        let name = std::path::Path::new(v["file"].as_str().unwrap_or_default())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let row = v["row"].as_u64().unwrap_or(0);
        let done = cp.files.iter().any(|f| {
            f.path.file_name().is_some_and(|n| n.to_string_lossy() == name)
                && (f.position.is_some_and(|p| row <= p.rows())
                    || vikingsync::ack::in_ranges(&f.acknowledged_above, row))
        });
        if !done {
            bad.push(format!("{name} row {row} (checkpoint seq {})", cp.seq));
        }
    }
    bad
}

fn tear_newest_checkpoint(state: &std::path::Path) -> bool {
    let mut newest: Option<(u64, std::path::PathBuf)> = None;
    for slot in ["checkpoint-a.json", "checkpoint-b.json"] {
        let p = state.join(slot);
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let seq = v["seq"].as_u64().unwrap_or(0);
        if newest.as_ref().is_none_or(|(s, _)| seq > *s) {
            newest = Some((seq, p));
        }
    }
    match newest {
        Some((_, p)) => {
            let bytes = std::fs::read(&p).expect("read");
            std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("tear");
            true
        }
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let dir = tempdir();
    let faults = FaultConfig {
        error_before: 0.03,
        error_after: 0.03,
        drop_connection: 0.02,
        latency_ms: 1,
        jitter_ms: 2,
        ..FaultConfig::default()
    };
    let emu = start_emulator(vec![spec("items", 2000, false)], faults, 99).await;
    let mut rng = Lcg::new(4242);

    // 01: 9,000 upserts of distinct keys (CSV), every 300th row of a wrong type.
    let mut base: Vec<Row> = (0..9000)
        .map(|i| full_row(&mut rng, "upsert", format!("u{i:05}")))
        .collect();
    for (i, r) in base.iter_mut().enumerate() {
        if i % 300 == 150 {
            r.score_raw = Some("not-a-number".into());
            r.bad = Some("wrong type");
        }
    }
    write(&dir.path().join("01-base.csv"), Fmt::Csv, &base, false);
    // 02: 3,000 changes (gzipped JSONL, op column): updates and deletes of distinct base keys,
    // updates of keys that never existed (the server refuses them), and broken lines.
    let mut changes: Vec<Row> = Vec::new();
    let mut lines = String::new();
    let mut broken_rows = BTreeSet::new();
    for i in 0..3000 {
        let row = match i % 10 {
            0..=5 => partial_row(&mut rng, format!("u{:05}", i * 3)),
            6..=8 => delete_row(format!("u{:05}", i * 3)),
            _ => partial_row(&mut rng, format!("never{i}")),
        };
        let mut m = fields_json(&row);
        m.insert("op".into(), json!(row.op));
        changes.push(row);
        lines.push_str(&serde_json::Value::Object(m).to_string());
        lines.push('\n');
        if i % 500 == 250 {
            lines.push_str("{\"op\": \"update\", \"id\": \n");
            let mut broken = delete_row(String::new());
            broken.bad = Some("broken line");
            changes.push(broken);
            broken_rows.insert(changes.len() as u64);
        }
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(lines.as_bytes()).expect("gz");
    std::fs::write(dir.path().join("02-changes.jsonl.gz"), enc.finish().expect("gz")).expect("write");
    // 03: 3,000 more upserts (Parquet, row groups of 64), every 250th without a key.
    let mut more: Vec<Row> = (0..3000)
        .map(|i| full_row(&mut rng, "upsert", format!("p{i:05}")))
        .collect();
    for (i, r) in more.iter_mut().enumerate() {
        if i % 250 == 100 {
            r.id = String::new();
            r.bad = Some("missing key");
        }
    }
    write(&dir.path().join("03-more.parquet"), Fmt::Parquet, &more, false);

    let mut cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        RATE,
        &[
            ("01-base.csv".into(), Some("upsert")),
            ("02-changes.jsonl.gz".into(), None),
            ("03-more.parquet".into(), Some("upsert")),
        ],
    );
    cfg = cfg
        .replace("concurrency = 4", &format!("concurrency = {CONCURRENCY}"))
        .replace("[state]\n", &format!("[state]\ncommit_interval = {COMMIT_INTERVAL}\n"));
    std::fs::write(dir.path().join("sync.toml"), cfg).expect("config");

    // Kill it at random moments.
    let mut kills = 0;
    let mut kills_while_running = 0;
    let mut torn = false;
    let started = Instant::now();
    // Defaults for CI; a stress run can ask for more and shorter-lived runs.
    let env_num = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let total_kills = env_num("VIKINGSYNC_CRASH_KILLS", 25);
    let (min_ms, span_ms) = (
        env_num("VIKINGSYNC_CRASH_MIN_MS", 100),
        env_num("VIKINGSYNC_CRASH_SPAN_MS", 200),
    );
    while kills < total_kills {
        let mut child = spawn_binary(dir.path(), &["run", "--config", "sync.toml"]);
        tokio::time::sleep(Duration::from_millis(min_ms + rng.below(span_ms))).await;
        if child.try_wait().expect("try_wait").is_none() {
            kills_while_running += 1;
        }
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        kills += 1;
        let broken = committed_dead_letters_not_done(dir.path());
        assert!(
            broken.is_empty(),
            "after kill {kills}: committed dead letters for rows not done: {broken:?}"
        );
        if kills == 12 {
            torn = tear_newest_checkpoint(&dir.path().join("state"));
        }
    }
    assert!(torn, "a checkpoint existed to tear");
    assert!(
        kills_while_running >= 20.min(total_kills),
        "only {kills_while_running} kills hit a running process"
    );

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("resumed"), "the final run resumed: {shown}");

    // The collection is exactly what the input implies.
    let (expected, mut expected_dead) = model(&[
        ("01-base.csv", &base),
        ("02-changes.jsonl.gz", &changes),
        ("03-more.parquet", &more),
    ]);
    for r in &broken_rows {
        expected_dead.insert(("02-changes.jsonl.gz".to_string(), *r));
    }
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "record count");
    let wrong: Vec<&String> = expected.keys().filter(|k| actual.get(*k) != expected.get(*k)).collect();
    assert!(
        wrong.is_empty(),
        "{} records differ, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );

    // Every rejected row is in the dead-letter file, once.
    let dead = dead_letters(dir.path());
    let dead_set: BTreeSet<(String, u64)> = dead.iter().map(|(f, r, _)| (f.clone(), *r)).collect();
    if dead.len() != dead_set.len() {
        let mut seen = BTreeSet::new();
        let twice: Vec<&serde_json::Value> = dead
            .iter()
            .filter(|(f, r, _)| !seen.insert((f.clone(), *r)))
            .map(|(_, _, e)| e)
            .collect();
        panic!(
            "{} rejected rows appear twice, e.g. {:#?}",
            twice.len(),
            &twice[..twice.len().min(3)]
        );
    }
    assert_eq!(dead_set, expected_dead);

    // What restarts sent again: rows the emulator applied, minus the rows the input needs applied
    // once, minus rows it applied and then failed on purpose (the client re-sends those itself).
    let stats = emu.stats();
    let applied_total = stats.rows_applied_upsert + stats.rows_applied_update + stats.rows_applied_delete;
    let needed = (base.iter().chain(changes.iter()).chain(more.iter()))
        .filter(|r| r.bad.is_none() && !r.id.starts_with("never"))
        .count() as u64;
    let resent = applied_total.saturating_sub(needed + stats.rows_applied_unacknowledged);
    let window = (CONCURRENCY * BATCH) as u64;
    let per_commit = (f64::from(RATE) * COMMIT_INTERVAL).ceil() as u64;
    let bound = kills * (window + per_commit);
    println!(
        "crash test: {kills} kills ({kills_while_running} mid-run) in {:.1}s; rows applied {applied_total}, needed {needed}, \
         fault re-sends {}, restart re-sends {resent} ({:.1} per restart; bound {} per restart)",
        started.elapsed().as_secs_f64(),
        stats.rows_applied_unacknowledged,
        resent as f64 / kills as f64,
        window + per_commit
    );
    assert!(resent <= bound, "restarts re-sent {resent} rows, more than {bound}");
    emu.shutdown().await;
}
