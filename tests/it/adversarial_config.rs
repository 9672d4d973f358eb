//! Hostile configs, credentials and numbers against the real binary: every one is a clear error
//! (exit 1, naming the key / variable / value) or a dead-lettered row, never a panic.

use std::process::Output;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

/// Sets `key = value` in `[table]` of a config: replaces the key's line, or adds it to the table
/// (the table is created when missing).
fn set(config: &str, table: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let header = format!("[{table}]\n");
    let start = config.find(&header);
    if let Some(start) = start {
        let body = start + header.len();
        let end = config[body..].find("\n[").map_or(config.len(), |i| body + i + 1);
        let mut out = String::new();
        out.push_str(&config[..body]);
        let mut replaced = false;
        for line in config[body..end].lines() {
            if line.starts_with(&prefix) {
                out.push_str(&format!("{key} = {value}\n"));
                replaced = true;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !replaced {
            out.insert_str(body, &format!("{key} = {value}\n"));
        }
        out.push_str(&config[end..]);
        out
    } else {
        format!("{config}\n[{table}]\n{key} = {value}\n")
    }
}

/// Exit 78 (EX_CONFIG), the message names `needle`, and nothing panicked.
fn assert_refused(out: &Output, what: &str, needle: &str) {
    let shown = text(out);
    assert_ne!(out.status.code(), Some(101), "{what}: panicked\n{shown}");
    assert!(!shown.contains("panicked"), "{what}: panicked\n{shown}");
    assert_eq!(out.status.code(), Some(78), "{what}\n{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(needle),
        "{what}: stderr does not name `{needle}`\n{shown}"
    );
}

/// A directory with a valid config (against `endpoint`) and its one CSV source.
fn project(endpoint: &str) -> (tempfile::TempDir, String) {
    let dir = tempdir();
    let rows: Vec<Row> = {
        let mut rng = Lcg::new(5);
        (0..20).map(|i| full_row(&mut rng, "upsert", format!("k{i}"))).collect()
    };
    write(&dir.path().join("a.csv"), Fmt::Csv, &rows, false);
    let cfg = config_text(
        endpoint,
        "v2",
        "items",
        false,
        0,
        &[("a.csv".to_string(), Some("upsert"))],
    );
    (dir, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_duration_key_is_range_checked_by_run_and_validate() {
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let (dir, base) = project(&emu.endpoint());
    // The config is good as it is.
    write_config(dir.path(), &base);
    let out = run_binary(dir.path(), &["validate", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (table, key) in [
        ("target", "request_timeout"),
        ("target", "connect_timeout"),
        ("retry", "initial_backoff"),
        ("retry", "max_backoff"),
        ("retry", "max_elapsed"),
        ("state", "commit_interval"),
    ] {
        for bad in ["1e300", "nan", "inf", "-inf", "-1", "0"] {
            write_config(dir.path(), &set(&base, table, key, bad));
            for cmd in ["run", "validate"] {
                let out = run_binary(dir.path(), &[cmd, "--config", "sync.toml"]).await;
                assert_refused(&out, &format!("{cmd} with {key} = {bad}"), &format!("{key} = "));
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.contains("out of range"), "{cmd} {key} = {bad}: {stderr}");
            }
        }
    }
    assert_eq!(emu.stats().requests, 0, "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_are_refused_before_anything_starts() {
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let (dir, base) = project(&emu.endpoint());
    let emulated = base.replace(&format!("endpoint = \"{}\"", emu.endpoint()), "emulator = true");
    let cases: Vec<(String, &str)> = vec![
        (
            set(&base, "rate", "concurrency", "1000000000000"),
            "concurrency = 1000000000000",
        ),
        (set(&base, "rate", "concurrency", "0"), "concurrency = 0"),
        (
            set(&base, "rate", "rows_per_second", "4294967295"),
            "rows_per_second = 4294967295",
        ),
        (set(&base, "rate", "batch_rows", "1000000"), "batch_rows = 1000000"),
        (
            set(&base, "retry", "max_attempts", "1000000000000000000"),
            "max_attempts = 1000000000000000000",
        ),
        (set(&base, "retry", "max_attempts", "-1"), "max_attempts"),
        (set(&base, "collection", "dim", "0"), "dim = 0"),
        (
            set(&base, "collection", "dim", "4611686018427387904"),
            "dim = 4611686018427387904",
        ),
        (set(&base, "state", "commit_rows", "0"), "commit_rows = 0"),
        (
            set(
                &set(&base, "collection", "vector_encoding", "\"base64\""),
                "target",
                "api",
                "\"v1\"",
            ),
            "vector_encoding = \"base64\" needs [target] api = \"v2\"",
        ),
        (
            set(&base, "collection", "vector_encoding", "\"packed\""),
            "vector_encoding",
        ),
        (set(&base, "state", "max_rejected_rows", "-5"), "max_rejected_rows"),
        (
            set(&base, "target", "endpoint", "\"http://127.0.0.1:99999\""),
            "endpoint `http://127.0.0.1:99999`",
        ),
        (
            set(&emulated, "emulator_faults", "latency_ms", "18446744073709551615"),
            "latency_ms",
        ),
        (
            set(&emulated, "emulator_faults", "jitter_ms", "9223372036854775807"),
            "jitter_ms = 9223372036854775807",
        ),
    ];
    for (cfg, needle) in &cases {
        write_config(dir.path(), cfg);
        for cmd in ["validate", "run"] {
            let out = run_binary(dir.path(), &[cmd, "--config", "sync.toml"]).await;
            assert_refused(&out, &format!("{cmd} with {needle}"), needle);
        }
    }
    assert_eq!(emu.stats().requests, 0, "nothing was sent");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_with_a_control_character_is_named_and_never_shown() {
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let (dir, cfg) = project(&emu.endpoint());
    write_config(dir.path(), &cfg);
    for (var, value, other, other_value) in [
        ("VIKINGDB_SK", "SKHIDDEN\u{1}VALUE", "VIKINGDB_AK", AK),
        ("VIKINGDB_SK", "SKHIDDEN\nVALUE", "VIKINGDB_AK", AK),
        ("VIKINGDB_AK", "AKHIDDEN\u{7f}VALUE", "VIKINGDB_SK", SK),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vikingsync"))
            .args(["run", "--config", "sync.toml", "--log-level", "debug"])
            .current_dir(dir.path())
            .env_remove("VIKINGDB_API_KEY")
            .env(var, value)
            .env(other, other_value)
            .output()
            .await
            .expect("runs");
        assert_refused(&out, var, var);
        let shown = text(&out);
        assert!(shown.contains("control character"), "{shown}");
        assert!(
            !shown.contains("HIDDEN") && !shown.contains("VALUE"),
            "the secret leaked\n{shown}"
        );
    }
    assert_eq!(emu.stats().requests, 0, "nothing was sent");
    emu.shutdown().await;
}

/// A config for the in-process emulator with an int64 field `n`, and one source.
fn int_config(source: &str) -> String {
    format!(
        "[target]\nemulator = true\n\n[collection]\nname = \"nums\"\nprimary_key = \"id\"\n\
         [collection.fields]\nid = \"string\"\nn = \"int64\"\nns = \"list<int64>\"\n\n\
         [rate]\nrows_per_second = 0\n\n[state]\ndir = \"state\"\n\n\
         [[sources]]\npath = \"{source}\"\nop = \"upsert\"\n"
    )
}

fn dead_letter_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("state").join("dead-letter.jsonl")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_integers_keep_their_digits_in_the_error_and_the_dead_letter() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("a.csv"),
        "id,n,ns\na,1,\nb,99999999999999999999,\nc,-9223372036854775809,\nd,,\"[1, 99999999999999999999]\"\n",
    )
    .expect("csv");
    write_config(dir.path(), &int_config("a.csv"));
    let out = run_binary(dir.path(), &["validate", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("value 99999999999999999999 is out of range for int64"),
        "{}",
        text(&out)
    );
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 3, "{}", dead_letter_text(dir.path()));
    let by_row = |row: u64| &dead.iter().find(|d| d.1 == row).expect("dead-lettered").2;
    for (row, field, digits) in [
        (2, "n", "99999999999999999999"),
        (3, "n", "-9223372036854775809"),
        (4, "ns", "99999999999999999999"),
    ] {
        let entry = by_row(row);
        let error = entry["error"].as_str().expect("error");
        assert!(
            error.contains(&format!("value {digits} is out of range for int64")),
            "row {row}: {error}"
        );
        assert!(
            entry["record"][field]
                .as_str()
                .expect("CSV cells are text")
                .contains(digits),
            "row {row}: {entry}"
        );
    }

    // JSONL: integers up to u64::MAX are kept exactly by the reader.
    let dir = tempdir();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"id\":\"a\",\"n\":5}\n{\"id\":\"b\",\"n\":18446744073709551615}\n{\"id\":\"c\",\"ns\":[1,9223372036854775808]}\n",
    )
    .expect("jsonl");
    write_config(dir.path(), &int_config("a.jsonl"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 2, "{}", dead_letter_text(dir.path()));
    let raw = dead_letter_text(dir.path());
    for digits in ["18446744073709551615", "9223372036854775808"] {
        assert!(
            raw.contains(&format!("value {digits} is out of range for int64")),
            "{raw}"
        );
        assert!(
            raw.contains(&format!("{digits}]")) || raw.contains(&format!(":{digits}}}")),
            "{raw}"
        );
    }
}

/// Beyond u64::MAX, serde_json reads a JSON integer as an f64 (the digits would be gone before the
/// row reaches the schema); the JSONL reader recovers the literal's text for such members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_integers_beyond_u64_keep_their_digits() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"id\":\"a\",\"n\":18446744073709551616}\n",
    )
    .expect("jsonl");
    write_config(dir.path(), &int_config("a.jsonl"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let raw = dead_letter_text(dir.path());
    assert!(
        // The record keeps the digits as written (as a JSON string: a JSON number of this size
        // would be read back as a float).
        raw.contains("value 18446744073709551616 is out of range for int64")
            && raw.contains(r#""n":"18446744073709551616""#),
        "{raw}"
    );
}
