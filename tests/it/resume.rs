//! Resume behaviour across runs: a file that grew continues where it stopped (the CronJob case),
//! a rewritten file stops or is reprocessed per `on_change`, a renamed file is recognised,
//! `status` reports progress, fixed dead letters can be replayed, and two processes never share
//! a state directory.

use std::io::Write;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

fn rows(seed: u64, n: usize, prefix: &str) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|i| full_row(&mut rng, "upsert", format!("{prefix}{i:04}")))
        .collect()
}

fn summary_value(out: &std::process::Output, label: &str) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
}

/// Appends `lines` and then the CSV records of `rows` (without their header) to the CSV at
/// `path`, as a producer would between CronJob runs.
fn append_csv(path: &std::path::Path, lines: &[u8], rows: &[Row]) {
    let tmp = path.with_extension("more");
    write(&tmp, Fmt::Csv, rows, false);
    let written = std::fs::read(&tmp).expect("read");
    std::fs::remove_file(&tmp).expect("rm");
    let header_end = written.iter().position(|&b| b == b'\n').expect("a header") + 1;
    let mut appended = lines.to_vec();
    appended.extend_from_slice(&written[header_end..]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open")
        .write_all(&appended)
        .expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grown_file_continues_and_status_tells_the_progress() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let first = rows(1, 300, "a");
    write(&dir.path().join("a.csv"), Fmt::Csv, &first, false);
    write_config(dir.path(), &one_source(&emu, "v2", "a.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let st = run_binary(dir.path(), &["status", "--config", "sync.toml"]).await;
    let shown = text(&st);
    assert_eq!(st.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("done") && shown.contains("300") && shown.contains("unchanged"),
        "{shown}"
    );
    assert!(shown.contains("running        no"), "{shown}");

    // Nothing new: a second run reads nothing and sends nothing.
    let before = emu.stats().requests;
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(summary_value(&out, "rows read"), 0, "{}", text(&out));
    assert_eq!(emu.stats().requests, before, "a finished file is not sent again");

    // Append 100 rows, as a producer would between CronJob runs.
    let more = rows(2, 100, "b");
    append_csv(&dir.path().join("a.csv"), b"", &more);
    let st = run_binary(dir.path(), &["status", "--config", "sync.toml"]).await;
    assert!(text(&st).contains("grew since"), "{}", text(&st));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        summary_value(&out, "rows read"),
        100,
        "only the new rows: {}",
        text(&out)
    );
    assert_eq!(summary_value(&out, "resumed"), 300, "{}", text(&out));
    let all: Vec<Row> = first.iter().chain(more.iter()).cloned().collect();
    let (expected, _) = model(&[("a.csv", &all)]);
    assert_eq!(emu.records("items").expect("collection"), expected);

    // Renamed: recognised by its fingerprint, nothing re-sent.
    std::fs::rename(dir.path().join("a.csv"), dir.path().join("renamed.csv")).expect("rename");
    write_config(dir.path(), &one_source(&emu, "v2", "*.csv", "upsert"));
    let before = emu.stats().requests;
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary_value(&out, "rows read"), 0, "{}", text(&out));
    assert_eq!(emu.stats().requests, before);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_names_the_line_of_a_bad_row() {
    // A CronJob's second run starts at the checkpoint's byte offset, not at the top of the file:
    // the dead letter of a bad row it meets still names its line, as the first run would.
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let path = dir.path().join("a.csv");
    let first = rows(3, 40, "a");
    write(&path, Fmt::Csv, &first, false);
    write_config(dir.path(), &one_source(&emu, "v2", "a.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Append a row of one field (the header has more), and good rows, some with quoted line
    // breaks.
    let before = std::fs::read(&path).expect("read");
    let more = rows(4, 20, "b");
    append_csv(&path, b"not-a-row\n", &more);
    // Its physical line: after every line feed of the first run's file (whose rows hold quoted
    // line breaks too, so the line is not the row).
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(line > 42, "the rows span more lines than rows: {line}");

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a dead-lettered row does not fail the run: {shown}"
    );
    assert_eq!(summary_value(&out, "resumed"), 40, "{shown}");
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (file, row, entry) = &dead[0];
    assert_eq!((file.as_str(), *row), ("a.csv", 41), "{entry}");
    let reason = entry["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("line {line}: expected")),
        "line {line} named in: {entry}"
    );
    let all: Vec<Row> = first.iter().chain(more.iter()).cloned().collect();
    let (expected, _) = model(&[("a.csv", &all)]);
    assert_eq!(emu.records("items").expect("collection"), expected);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_file_stops_the_run_unless_reprocess_is_chosen() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    write(&dir.path().join("a.csv"), Fmt::Csv, &rows(1, 50, "a"), false);
    let cfg = one_source(&emu, "v2", "a.csv", "upsert");
    write_config(dir.path(), &cfg);
    assert_eq!(
        run_binary(dir.path(), &["run", "--config", "sync.toml"])
            .await
            .status
            .code(),
        Some(0)
    );

    let rewritten = rows(9, 50, "a");
    write(&dir.path().join("a.csv"), Fmt::Csv, &rewritten, false);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("changed since its checkpoint") && shown.contains("reprocess"),
        "{shown}"
    );

    write_config(
        dir.path(),
        &cfg.replace("[state]\n", "[state]\non_change = \"reprocess\"\n"),
    );
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary_value(&out, "rows read"), 50);
    let (expected, _) = model(&[("a.csv", &rewritten)]);
    assert_eq!(emu.records("items").expect("collection"), expected);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_dead_letters_can_be_replayed() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let mut data = rows(3, 40, "d");
    for r in data.iter_mut().step_by(10) {
        r.score_raw = Some("n/a".into());
        r.bad = Some("wrong type");
    }
    write(&dir.path().join("a.csv"), Fmt::Csv, &data, false);
    write_config(dir.path(), &one_source(&emu, "v1", "a.csv", "upsert"));
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(emu.records("items").expect("collection").len(), 36);

    // Fix the bad cells in a copy of the dead-letter file, then replay it as a source.
    let dl = std::fs::read_to_string(dir.path().join("state/dead-letter.jsonl")).expect("dead letters");
    assert_eq!(dl.lines().count(), 4);
    let fixed: String = dl
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["record"]["score"] = serde_json::json!("2.5");
            format!("{v}\n")
        })
        .collect();
    std::fs::write(dir.path().join("fixed.jsonl"), fixed).expect("write");
    let replay = config_text(&emu.endpoint(), "v1", "items", false, 0, &[])
        .replace("dir = \"state\"", "dir = \"state-replay\"")
        + "\n[[sources]]\npath = \"fixed.jsonl\"\nformat = \"dead-letter\"\n";
    std::fs::write(dir.path().join("replay.toml"), replay).expect("config");
    let out = run_binary(dir.path(), &["run", "--config", "replay.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary_value(&out, "rejected"), 0, "{}", text(&out));
    let records = emu.records("items").expect("collection");
    assert_eq!(records.len(), 40);
    assert_eq!(records["d0000"]["score"], serde_json::json!(2.5));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_vectors_refused_by_the_server_replay_bit_for_bit() {
    // vector_encoding = "base64", no dim in the client's config, and a server whose collection
    // has dim 4: two 5-element vectors are refused by the server and dead-lettered as sent, as
    // base64 strings. Replayed into a collection of dim 5 with the same setting, they are stored
    // as the very float32s of the Parquet file.
    let dir = tempdir();
    let first = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 3).await;
    let mut data = rows(4, 20, "p");
    let odd = [0.1f32, 1e-45, -0.0, f32::MAX / 3.0, std::f32::consts::PI];
    for r in data.iter_mut().skip(7).step_by(9) {
        r.vec = Some(odd.to_vec());
    }
    write(&dir.path().join("a.parquet"), Fmt::Parquet, &data, false);
    let packed = |endpoint: &str| {
        config_text(endpoint, "v2", "items", false, 0, &[]).replace("dim = 4\n", "vector_encoding = \"base64\"\n")
    };
    write_config(
        dir.path(),
        &(packed(&first.endpoint()) + "\n[[sources]]\npath = \"a.parquet\"\nop = \"upsert\"\n"),
    );
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(first.records("items").expect("collection").len(), 18, "{shown}");
    assert!(first.stats().packed_vectors >= 18, "{shown}");
    let dl = std::fs::read_to_string(dir.path().join("state/dead-letter.jsonl")).expect("dead letters");
    assert_eq!(dl.lines().count(), 2, "{dl}");
    for line in dl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert!(v["record"]["vec"].is_string(), "sent packed: {line}");
    }
    std::fs::write(dir.path().join("replay.jsonl"), &dl).expect("write");

    let mut wide = spec("items", 0, false);
    wide.dim = Some(5);
    let second = start_emulator(vec![wide], FaultConfig::default(), 4).await;
    let replay = packed(&second.endpoint()).replace("dir = \"state\"", "dir = \"state-replay\"")
        + "\n[[sources]]\npath = \"replay.jsonl\"\nformat = \"dead-letter\"\n";
    std::fs::write(dir.path().join("replay.toml"), replay).expect("config");
    let out = run_binary(dir.path(), &["run", "--config", "replay.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let records = second.records("items").expect("collection");
    assert_eq!(records.len(), 2, "{shown}");
    for (key, record) in &records {
        let bits: Vec<u32> = record["vec"]
            .as_array()
            .expect("stored as numbers")
            .iter()
            .map(|x| (x.as_f64().expect("number") as f32).to_bits())
            .collect();
        assert_eq!(bits, odd.map(f32::to_bits), "{key}");
    }
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_share_a_state_dir() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    write(&dir.path().join("a.csv"), Fmt::Csv, &rows(5, 2000, "s"), false);
    // 100 rows/s: the first run is still going when the second starts.
    write_config(
        dir.path(),
        &config_text(
            &emu.endpoint(),
            "v2",
            "items",
            false,
            100,
            &[("a.csv".into(), Some("upsert"))],
        ),
    );
    let mut first = spawn_binary(dir.path(), &["run", "--config", "sync.toml"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&second);
    assert_eq!(second.status.code(), Some(1), "{shown}");
    assert!(shown.contains("in use by another vikingsync process"), "{shown}");
    let st = run_binary(dir.path(), &["status", "--config", "sync.toml"]).await;
    assert!(text(&st).contains("running        yes"), "{}", text(&st));
    // SIGTERM: the first run stops gracefully, checkpointing what it finished.
    let pid = first.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let status = first.wait().await.expect("wait");
    assert_eq!(
        status.code(),
        Some(75),
        "a stopped run is not a completed one: EX_TEMPFAIL"
    );
    let st = run_binary(dir.path(), &["status", "--json", "--config", "sync.toml"]).await;
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    let done = v["files"][0]["rows_done"].as_u64().expect("rows_done");
    assert!(done > 0 && done < 2000, "checkpointed partial progress: {v}");
    assert!(v["running_pid"].is_null(), "{v}");
    emu.shutdown().await;
}

/// A resumed run that commits before reaching the rows its checkpoint already acknowledged must
/// keep those acknowledgements: otherwise their dead letters, already in the committed file, are
/// written again after the next restart. (Found by the crash test under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_acknowledgements_survive_a_commit_before_they_are_reached() {
    use vikingsync::checkpoint::{Checkpoint, FileCheckpoint, Fingerprint, Store, VERSION};
    use vikingsync::source::Position;

    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 1).await;
    let mut data = rows(7, 200, "h");
    data[149].score_raw = Some("bad".into());
    data[149].bad = Some("wrong type");
    let path = dir.path().join("a.csv");
    write(&path, Fmt::Csv, &data, false);
    // The byte offset after row 10, from the reader itself.
    let mut reader = vikingsync::source::open(&path, &Default::default(), None).expect("open");
    let mut after10 = None;
    for _ in 0..10 {
        after10 = Some(reader.next_row().expect("row").expect("ok").end);
    }
    // A previous run: rows 1-10 done, rows 100-200 done (row 150 dead-lettered), 11-99 not.
    let state = dir.path().join("state");
    let entry = serde_json::json!({"file": path.display().to_string(), "row": 150, "key": "h0149", "op": "upsert",
        "error": "field `score` (float32): `bad` is not a finite number", "record": {}});
    let line = format!("{entry}\n");
    std::fs::create_dir_all(&state).expect("state");
    std::fs::write(state.join("dead-letter.jsonl"), &line).expect("dl");
    {
        let (mut store, _) = Store::open(&state).expect("store");
        let canonical = std::fs::canonicalize(&path).expect("canonical");
        let mut cp = Checkpoint {
            version: VERSION,
            seq: 0,
            committed_at: String::new(),
            dead_letter_len: line.len() as u64,
            files: vec![FileCheckpoint {
                path: canonical.clone(),
                fingerprint: Fingerprint::of(&canonical).expect("fp"),
                position: after10,
                done: false,
                applied: 100,
                rejected: 1,
                acknowledged_above: vec![[100, 200]],
            }],
            checksum: String::new(),
        };
        store.commit(&mut cp).expect("commit");
    }
    assert!(matches!(after10, Some(Position::Offset { rows: 10, .. })));
    // Resume slowly and stop it (SIGTERM commits) long before row 100.
    write_config(
        dir.path(),
        &config_text(
            &emu.endpoint(),
            "v2",
            "items",
            false,
            20,
            &[("a.csv".into(), Some("upsert"))],
        )
        .replace("[rate]\n", "[rate]\nbatch_rows = 10\n")
        // A window of 4 x 1 x 10 rows: the run reads nowhere near row 100 before it stops.
        .replace("concurrency = 4", "concurrency = 1"),
    );
    let child = spawn_binary(dir.path(), &["run", "--config", "sync.toml"]);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let pid = child.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    let _ = child.wait_with_output().await;
    let cp = vikingsync::checkpoint::load(&state).expect("load").expect("checkpoint");
    let f = &cp.files[0];
    let reached = f.position.map_or(0, |p| p.rows());
    assert!(
        reached < 100,
        "the stopped run should not have reached row 100 (at {reached})"
    );
    assert!(
        vikingsync::ack::in_ranges(&f.acknowledged_above, 150),
        "inherited acknowledgements were dropped: {:?}",
        f.acknowledged_above
    );
    // Finish: row 150 is in the dead-letter file exactly once, rows 100-200 are not sent again.
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dead = dead_letters(dir.path());
    assert_eq!(dead.iter().filter(|(_, r, _)| *r == 150).count(), 1, "{dead:#?}");
    let records = emu.records("items").expect("collection");
    assert!(
        records.contains_key("h0098") && !records.contains_key("h0120"),
        "rows 100-200 were skipped as done"
    );
    emu.shutdown().await;
}
