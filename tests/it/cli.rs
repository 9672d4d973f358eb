//! The binary's behaviour beyond the matrix: vectorize collections, stop conditions, exit codes,
//! `validate`, bad input, compressed input, timeouts, and secrets kept out of output.

use std::io::Write;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectorize_collection_gets_one_row_per_write_and_batched_deletes() {
    for api in ["v2", "v1"] {
        let dir = tempdir();
        let emu = start_emulator(vec![spec("docs", 0, true)], faults_on(), 42).await;
        let mut up = String::from("id,text,img\n");
        for i in 0..40 {
            up.push_str(&format!(
                "d{i},\"text number {i}, with a comma\",tos://bucket/img{i}.jpg\n"
            ));
        }
        up.push_str("d99,hello,ftp://not-an-image\n"); // bad image location
        std::fs::write(dir.path().join("up.csv"), up).expect("write");
        let del: String = std::iter::once("id\n".to_string())
            .chain((0..20).map(|i| format!("d{i}\n")))
            .collect();
        std::fs::write(dir.path().join("del.csv"), del).expect("write");
        let cfg = config_text(
            &emu.endpoint(),
            api,
            "docs",
            true,
            0,
            &[("up.csv".into(), Some("upsert")), ("del.csv".into(), Some("delete"))],
        );
        write_config(dir.path(), &cfg);
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let records = emu.records("docs").expect("collection");
        let keys: Vec<&String> = records.keys().collect();
        let expected: Vec<String> = (20..40).map(|i| format!("d{i}")).collect();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(keys, expected_sorted.iter().collect::<Vec<_>>());
        assert_eq!(records["d25"]["text"], "text number 25, with a comma");
        let stats = emu.stats();
        assert_eq!(
            stats.largest_write_request_rows, 1,
            "vectorize writes go one per request"
        );
        assert!(stats.largest_delete_request_rows > 1, "deletes are still batched");
        let dead = dead_letters(dir.path());
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1, 41);
        assert!(dead[0].2["error"].as_str().expect("error").contains("img"));
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_stops_at_once_and_never_shows_the_secret() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let rows: Vec<Row> = {
        let mut rng = Lcg::new(3);
        (0..50).map(|i| full_row(&mut rng, "upsert", format!("k{i}"))).collect()
    };
    write(&dir.path().join("a.csv"), Fmt::Csv, &rows, false);
    write_config(dir.path(), &one_source(&emu, "v2", "a.csv", "upsert"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vikingsync"));
    let out = cmd
        .args(["run", "--config", "sync.toml", "--log-level", "debug"])
        .current_dir(dir.path())
        .env("VIKINGDB_AK", AK)
        .env("VIKINGDB_SK", "THE-WRONG-SECRET-VALUE")
        .output()
        .await
        .expect("runs");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("authentication failed") && shown.contains("clock"),
        "{shown}"
    );
    assert!(!shown.contains("THE-WRONG-SECRET-VALUE"), "the secret leaked: {shown}");
    assert_eq!(emu.records("items").expect("collection").len(), 0);
    assert!(emu.stats().requests <= 4, "stops at once, not after retries");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_collection_stops_with_a_hint() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    std::fs::write(dir.path().join("a.csv"), "id,title\nk1,x\n").expect("write");
    for api in ["v1", "v2"] {
        write_config(
            dir.path(),
            &config_text(
                &emu.endpoint(),
                api,
                "nope",
                false,
                0,
                &[("a.csv".into(), Some("upsert"))],
            ),
        );
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(shown.contains("collection not found"), "{shown}");
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rejected_rows_exit_2() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let mut csv = String::from("id,score\n");
    for i in 0..30 {
        csv.push_str(&format!("k{i},{}\n", if i % 2 == 0 { "oops" } else { "1.5" }));
    }
    std::fs::write(dir.path().join("a.csv"), csv).expect("write");
    let cfg = one_source(&emu, "v2", "a.csv", "update").replace("[state]\n", "[state]\nmax_rejected_rows = 3\n");
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("max_rejected_rows"), "{shown}");
    // The limit counts the whole backfill: running again does not start the count from zero.
    let again = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_run_rejection_limit_counts_this_run_only() {
    // A CronJob on one state directory: each run brings a new file with a few bad rows.
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let batch = |name: &str, first: usize, bad: usize| {
        let mut rng = Lcg::new(first as u64);
        let good: Vec<Row> = (first..first + 10)
            .map(|i| full_row(&mut rng, "upsert", format!("k{i}")))
            .collect();
        let path = dir.path().join(name);
        write(&path, Fmt::Csv, &good, false);
        // Rows with one field where the header has several: each is rejected, op unknown.
        let mut text = std::fs::read_to_string(&path).expect("read");
        for i in 0..bad {
            text.push_str(&format!("bad{first}-{i}\n"));
        }
        std::fs::write(&path, text).expect("write");
    };
    let cfg =
        one_source(&emu, "v2", "in-*.csv", "upsert").replace("[state]\n", "[state]\nmax_rejected_rows_per_run = 3\n");
    write_config(dir.path(), &cfg);
    for (run, name) in ["in-1.csv", "in-2.csv", "in-3.csv"].into_iter().enumerate() {
        batch(name, run * 100, 3);
        let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
        // 9 rejected in the backfill by the third run, 3 in each: never over the per-run limit.
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", text(&out));
    }
    assert_eq!(dead_letters(dir.path()).len(), 9);
    // A run whose own input is unusually bad stops with exit 2, naming the per-run key.
    batch("in-4.csv", 400, 5);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("max_rejected_rows_per_run") && shown.contains("by this run"),
        "{shown}"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_bad_rows_and_sends_nothing() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    std::fs::write(
        dir.path().join("a.csv"),
        "id,score,vec\nk1,1.5,\"[1,2,3,4]\"\n,2,\nk3,abc,\nk4,1,\"[1,2]\"\n",
    )
    .expect("write");
    write_config(dir.path(), &one_source(&emu, "v2", "a.csv", "upsert"));
    let out = run_binary(dir.path(), &["validate", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("row 3") && shown.contains("row 4") && shown.contains("4 rows read, 3 would be rejected"),
        "{shown}"
    );
    assert!(
        shown.contains("a.csv: row 2: primary key `id` (string)") || shown.contains("a.csv: row 2"),
        "{shown}"
    );
    assert_eq!(emu.stats().requests, 0, "validate sends nothing");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_version_and_config_errors() {
    let dir = tempdir();
    let out = run_binary(dir.path(), &["--version"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["serve", "--help"],
        &["emulator", "--help"],
    ] {
        let out = run_binary(dir.path(), sub).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    // One file matched by two sources is refused, naming both.
    std::fs::write(dir.path().join("a.csv"), "id\nk1\n").expect("write");
    let cfg = config_text(
        "http://127.0.0.1:9",
        "v2",
        "items",
        false,
        0,
        &[("a.csv".into(), Some("upsert")), ("*.csv".into(), Some("delete"))],
    );
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["validate", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("matched by [[sources]] #1 and #2"),
        "{}",
        text(&out)
    );
    let cfg = config_text(
        "http://127.0.0.1:9",
        "v2",
        "items",
        false,
        0,
        &[("a.csv".into(), Some("upsert"))],
    )
    .replace("[rate]\n", "[rate]\nrows_per_sec = 5\n");
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    // An unusable config is EX_CONFIG (78): a Job fails at once instead of retrying.
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("rows_per_sec"), "{}", text(&out));
    // A command line that does not parse is EX_USAGE (64), not 2 (which means rejected rows).
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-such-flag"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let out = run_binary(dir.path(), &["run"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_parquet_stops_naming_the_file() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let mut rng = Lcg::new(9);
    let rows: Vec<Row> = (0..100)
        .map(|i| full_row(&mut rng, "upsert", format!("k{i}")))
        .collect();
    let path = dir.path().join("t.parquet");
    write(&path, Fmt::Parquet, &rows, false);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).expect("truncate");
    write_config(dir.path(), &one_source(&emu, "v2", "t.parquet", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("t.parquet"), "{shown}");
    assert!(!shown.contains("panicked"), "{shown}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_sources_and_slow_responses_past_the_timeout() {
    let dir = tempdir();
    let faults = FaultConfig {
        slow: 0.15,
        slow_ms: 3000,
        ..FaultConfig::default()
    };
    let emu = start_emulator(vec![spec("items", 0, false)], faults, 5).await;
    let mut rng = Lcg::new(11);
    let rows: Vec<Row> = (0..150)
        .map(|i| full_row(&mut rng, "upsert", format!("g{i}")))
        .collect();
    let rows2: Vec<Row> = (0..150)
        .map(|i| full_row(&mut rng, "upsert", format!("z{i}")))
        .collect();
    let plain = dir.path().join("plain.jsonl");
    write(&plain, Fmt::Jsonl, &rows, false);
    let data = std::fs::read(&plain).expect("read");
    // Two concatenated gzip members: a reader that stops after the first would lose rows.
    let (a, b) = data.split_at(data.len() / 2);
    let mut gz = Vec::new();
    for part in [a, b] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(part).expect("gz");
        gz.extend(enc.finish().expect("gz"));
    }
    std::fs::write(dir.path().join("a.jsonl.gz"), gz).expect("write");
    std::fs::remove_file(&plain).expect("rm");
    let csv_path = dir.path().join("b.csv");
    write(&csv_path, Fmt::Csv, &rows2, false);
    let zst = zstd::encode_all(std::fs::read(&csv_path).expect("read").as_slice(), 3).expect("zstd");
    std::fs::write(dir.path().join("b.csv.zst"), zst).expect("write");
    std::fs::remove_file(&csv_path).expect("rm");
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[
            ("a.jsonl.gz".into(), Some("upsert")),
            ("b.csv.zst".into(), Some("upsert")),
        ],
    )
    .replace("request_timeout = 2", "request_timeout = 0.5");
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let records = emu.records("items").expect("collection");
    assert_eq!(records.len(), 300);
    let (expected, _) = model(&[("a", &rows), ("b", &rows2)]);
    assert_eq!(records, expected);
    // Each slowed response ran past the 0.5 s timeout, so each cost a retry the summary counts.
    let slowed = emu.stats().slowed;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let retries: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("requests")?
                .split('(')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("a retries figure in the summary: {stdout}"));
    assert!(retries >= slowed, "{slowed} timeouts, {retries} retries: {stdout}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_ttl_column_reach_the_server_and_renames_apply() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    // `key` is renamed to `id`; rows with ttl 1 expire, rows with ttl 0 stay.
    std::fs::write(
        dir.path().join("a.csv"),
        "key,title,ttl,vec\nt1,short,1,\"[1,2,3,4]\"\nt2,forever,0,\"[1,2,3,4]\"\nt3,short,1,\"[1,2,3,4]\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b.jsonl"),
        "{\"key\": \"t4\", \"title\": \"source ttl\", \"vec\": [1, 2, 3, 4]}\n",
    )
    .expect("write");
    let cfg = config_text(&emu.endpoint(), "v2", "items", false, 0, &[])
        + "\n[[sources]]\npath = \"a.csv\"\nop = \"upsert\"\nttl_column = \"ttl\"\ncolumns = { key = \"id\" }\n"
        + "\n[[sources]]\npath = \"b.jsonl\"\nop = \"upsert\"\nttl = 1\ncolumns = { key = \"id\" }\n";
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(emu.records("items").expect("collection").len(), 4, "{}", text(&out));
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let left: Vec<String> = emu.records("items").expect("collection").into_keys().collect();
    assert_eq!(left, vec!["t2".to_string()], "rows with a 1 s TTL expired");
    emu.shutdown().await;
}
