//! A sharded backfill: three processes run one config with `--shard I/3` against one strict
//! server. Together they must end in exactly the state the input implies (mixed ops on repeated
//! keys across two sources: per-key order holds only if every op of a key stays in one shard),
//! with each bad row dead-lettered once by exactly one shard, no row sent twice, few throttles,
//! and `status` showing every shard and the total. A resumed shard owns the same rows.

use std::collections::BTreeSet;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

fn shard_dead_letters(dir: &std::path::Path, n: u32) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    for i in 0..n {
        let sub = dir.join("state").join(format!("shard-{i}-of-{n}"));
        // dead_letters() reads `dir/state/dead-letter.jsonl`: point it at the shard's.
        let fake_root = sub
            .parent()
            .expect("parent")
            .parent()
            .expect("root")
            .join(format!("view-{i}"));
        let _ = std::fs::create_dir_all(fake_root.join("state"));
        let src = sub.join("dead-letter.jsonl");
        if src.exists() {
            std::fs::copy(&src, fake_root.join("state").join("dead-letter.jsonl")).expect("copy");
        }
        all.extend(dead_letters(&fake_root).into_iter().map(|(f, r, _)| (f, r)));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_end_in_the_exact_state_and_send_each_row_once() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 1200, false)], FaultConfig::default(), 21).await;
    let sc = scenario("mixed", Fmt::Csv, 1500, 17);
    write(&dir.path().join("setup.csv"), Fmt::Csv, &sc.setup, false);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &sc.rows, true);
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[("setup.csv".into(), Some("upsert")), ("rows.csv".into(), None)],
    )
    .replace("concurrency = 4\n", "");
    write_config(dir.path(), &cfg);
    let mut children = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        children.push(
            binary(
                dir.path(),
                &["run", "--config", "sync.toml", "--no-progress", "--shard", &shard],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn"),
        );
    }
    let mut shown = String::new();
    let mut applied_total = 0u64;
    let mut requests = 0u64;
    for child in children {
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("a shard finishes")
            .expect("output");
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let num = |prefix: &str| -> u64 {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{prefix} in {t}"))
        };
        applied_total += num("applied");
        requests += num("requests");
        shown.push_str(&t);
    }
    let (expected, expected_dead) = model(&[("setup.csv", &sc.setup), ("rows.csv", &sc.rows)]);
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "record count\n{shown}");
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}\n{shown}");
    }
    // Each bad row dead-lettered exactly once, by one shard.
    let dead = shard_dead_letters(dir.path(), 3);
    let unique: BTreeSet<(String, u64)> = dead.iter().cloned().collect();
    assert_eq!(dead.len(), unique.len(), "a row dead-lettered twice\n{shown}");
    assert_eq!(unique, expected_dead, "{shown}");
    // No row sent by two shards: what the server applied is exactly what the input implies.
    let rows_in = (sc.setup.len() + sc.rows.len()) as u64;
    let applied_expected = rows_in - expected_dead.len() as u64;
    let s = emu.stats();
    assert_eq!(applied_total, applied_expected, "{shown}");
    assert_eq!(
        s.rows_applied_upsert + s.rows_applied_update + s.rows_applied_delete,
        applied_expected,
        "the server applied each row once\n{shown}"
    );
    // Three writers shared a strict quota without hammering it. (The issue's < 5% is measured on
    // a 30k-row run in bench/flow.py q7. These shards last a second or two, where the first
    // throttles of three starts weigh more, and CI runs other tests beside them. Since later cuts
    // are β of the fill rate (a81c259), runs alone here see 10-14% and one CI run saw 16%; before,
    // 6%. With the start-up double cut (4a39dfb), five runs alone: 5-14%, mean 8%; without it,
    // 6-14%, mean 11%: too close to guard the rule here, which its unit test does. A guard
    // against hammering, not the benchmark.)
    assert!(
        s.throttled * 100 < requests * 25,
        "throttled {} of {requests} requests\n{shown}",
        s.throttled
    );
    // `status` shows every shard and the total.
    let st = run_binary(dir.path(), &["status", "--config", "sync.toml"]).await;
    let st_text = text(&st);
    assert_eq!(st.status.code(), Some(0), "{st_text}");
    for i in 0..3 {
        assert!(st_text.contains(&format!("shard-{i}-of-3")), "{st_text}");
    }
    assert!(
        st_text.contains(&format!(" {applied_expected} ")),
        "total applied in {st_text}"
    );
    // A shard run again owns the same rows: nothing left to send.
    let again = run_binary(
        dir.path(),
        &["run", "--config", "sync.toml", "--no-progress", "--shard", "1/3"],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("applied        0"),
        "{}",
        text(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_argument_out_of_range_is_a_usage_error() {
    let dir = tempdir();
    for bad in ["3/3", "0/0", "x/3", "1", "-1/3"] {
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--shard", bad]).await;
        assert_eq!(out.status.code(), Some(64), "--shard {bad}: {}", text(&out));
    }
}
