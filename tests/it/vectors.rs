//! `[collection] vector_encoding = "auto"`, the default, against servers that store a packed
//! vector exactly, read its bytes in the other order, or leave vectors out of fetch answers: the
//! run checks with one row, goes packed only on an exact match, and in every case ends with the
//! state the input implies (the row checked with is sent again in its place).

use vikingdb_emulator::FaultConfig;

use crate::harness::*;

/// A Parquet backfill of upserts at the default `vector_encoding` against a server with
/// `faults`: the final state, how many vectors went packed, and the summary's `vectors` line.
async fn auto_case(faults: FaultConfig, seed: u64, packed: bool, summary_says: &str) {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], faults, seed).await;
    let sc = scenario("upsert", Fmt::Parquet, 300, seed);
    let name = "10-rows.parquet".to_string();
    write(&dir.path().join(&name), Fmt::Parquet, &sc.rows, false);
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[(name.clone(), Some("upsert"))],
    );
    assert!(!cfg.contains("vector_encoding"), "the default is what is tested");
    write_config(dir.path(), &cfg);

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let (expected, expected_dead) = model(&[(&name, &sc.rows)]);
    let actual = emu.records("items").expect("collection exists");
    assert_eq!(actual.len(), expected.len(), "record count\n{shown}");
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}\n{shown}");
    }
    let dead: std::collections::BTreeSet<(String, u64)> =
        dead_letters(dir.path()).into_iter().map(|(f, r, _)| (f, r)).collect();
    assert_eq!(dead, expected_dead, "dead letters\n{shown}");
    let stats = emu.stats();
    if packed {
        assert!(stats.packed_vectors > 100, "{} packed\n{shown}", stats.packed_vectors);
    } else {
        // The one row the check sent packed (or none, when packed vectors are refused); every
        // other vector, and that row again, as arrays.
        assert!(stats.packed_vectors <= 1, "{shown}");
    }
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(summary_says), "{summary}");
    assert!(summary.contains("read = applied + rejected: ok"), "{summary}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stores_packed_vectors_exactly_gets_them_packed() {
    auto_case(
        faults_on(),
        41,
        true,
        "vectors        packed (base64): the server stored a packed vector exactly",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_reads_packed_bytes_in_the_other_order_gets_arrays() {
    let faults = FaultConfig {
        packed_big_endian: true,
        ..faults_on()
    };
    auto_case(
        faults,
        42,
        false,
        "vectors        arrays: the server stored a packed vector as other values: element 0",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_fetch_leaves_vectors_out_gets_arrays() {
    let faults = FaultConfig {
        fetch_hides_vectors: true,
        ..faults_on()
    };
    auto_case(
        faults,
        43,
        false,
        "vectors        arrays: the server's answers cannot tell: the fetched row has no `vec`",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_packed_vectors_gets_arrays() {
    let faults = FaultConfig {
        packed_refused: true,
        ..faults_on()
    };
    auto_case(
        faults,
        44,
        false,
        "vectors        arrays: the server refused a packed vector: HTTP 400",
    )
    .await;
}

/// The first row the check could use is refused by the server whatever its vector's form (five
/// elements for a dim-4 collection; the client's config sets no dim): the check learns nothing,
/// writes nothing, and the pass goes as arrays. That row ends in the dead-letter file with the
/// server's reason, every other row lands, and nothing was stored packed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_whatever_its_form_tells_nothing_and_is_dead_lettered() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], faults_on(), 45).await;
    let mut jsonl = String::from("{\"id\":\"k0\",\"vec\":[0.5,1,2,3,4]}\n");
    for i in 1..=20 {
        jsonl.push_str(&format!("{{\"id\":\"k{i}\",\"vec\":[{i},0.5,-0.25,1]}}\n"));
    }
    std::fs::write(dir.path().join("rows.jsonl"), jsonl).expect("write");
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[("rows.jsonl".into(), Some("upsert"))],
    )
    .replace(&format!("dim = {DIM}\n"), "");
    assert!(!cfg.contains("dim =") && !cfg.contains("vector_encoding"));
    write_config(dir.path(), &cfg);

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("vectors        arrays: the check could not finish: the row was refused both packed"),
        "{shown}"
    );
    let records = emu.records("items").expect("collection");
    assert_eq!(records.len(), 20, "{shown}");
    for i in 1..=20 {
        let vec: Vec<f64> = records[&format!("k{i}")]["vec"]
            .as_array()
            .expect("a stored vector")
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        assert_eq!(vec, [f64::from(i), 0.5, -0.25, 1.0], "k{i}");
    }
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!((dead[0].0.as_str(), dead[0].1), ("rows.jsonl", 1));
    assert_eq!(emu.stats().packed_vectors, 0, "nothing was stored packed");
    emu.shutdown().await;
}
