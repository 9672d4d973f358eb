//! The format × op × API matrix: every combination runs the real binary against the emulator with
//! faults (5xx before and after applying, dropped connections, latency) and a quota below the
//! client's rate (so throttling happens), and checks the final state, the dead-letter file and
//! the request sizes.

use std::collections::BTreeSet;

use crate::harness::*;

/// `vectors` is `[collection] vector_encoding`: Parquet's f32 vectors go as arrays or packed.
async fn matrix_case(fmt: Fmt, op: &str, api: &str, seed: u64, vectors: &str) {
    let dir = tempdir();
    // A quota (and so a burst) below the rows each case sends: the emulator must throttle.
    let emu = start_emulator(vec![spec("items", 200, false)], faults_on(), seed).await;
    let sc = scenario(op, fmt, 260, seed);
    let ext = fmt.ext();
    let setup_name = format!("00-setup.{ext}");
    let rows_name = format!("10-rows.{ext}");
    let mut sources = Vec::new();
    if !sc.setup.is_empty() {
        write(&dir.path().join(&setup_name), fmt, &sc.setup, false);
        sources.push((setup_name.clone(), Some("upsert")));
    }
    let mixed = op == "mixed";
    write(&dir.path().join(&rows_name), fmt, &sc.rows, mixed);
    sources.push((rows_name.clone(), if mixed { None } else { Some(op) }));
    // The client is allowed more than the server's quota: the emulator throttles the excess.
    let cfg = config_text(&emu.endpoint(), api, "items", false, 4000, &sources).replace(
        "vectorize = false\n",
        &format!("vectorize = false\nvector_encoding = \"{vectors}\"\n"),
    );
    std::fs::write(dir.path().join("sync.toml"), cfg).expect("config");

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{fmt:?} {op} {api}: {shown}");

    let (expected, expected_dead) = model(&[(&setup_name, &sc.setup), (&rows_name, &sc.rows)]);
    let actual = emu.records("items").expect("collection exists");
    assert_eq!(
        actual.len(),
        expected.len(),
        "{fmt:?} {op} {api}: record count\n{shown}"
    );
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "{fmt:?} {op} {api}: record {k}\n{shown}");
    }
    let dead: Vec<(String, u64, serde_json::Value)> = dead_letters(dir.path());
    let dead_set: BTreeSet<(String, u64)> = dead.iter().map(|(f, r, _)| (f.clone(), *r)).collect();
    assert_eq!(dead.len(), dead_set.len(), "each rejected row once: {dead:#?}");
    assert_eq!(dead_set, expected_dead, "{fmt:?} {op} {api}: dead letters\n{shown}");
    for (_, _, entry) in &dead {
        assert!(
            entry["error"].as_str().is_some_and(|e| !e.is_empty()),
            "a reason: {entry}"
        );
    }
    let stats = emu.stats();
    assert!(
        stats.largest_write_request_rows <= 100,
        "largest write {}",
        stats.largest_write_request_rows
    );
    assert!(
        stats.largest_delete_request_rows <= 100,
        "largest delete {}",
        stats.largest_delete_request_rows
    );
    // Packed only where asked (or where "auto" saw the server store a packed vector exactly: V2),
    // and only vectors held as f32s (Parquet's): CSV's text goes as it is.
    let summary = String::from_utf8_lossy(&out.stdout);
    let packs = vectors == "base64" || (vectors == "auto" && api == "v2");
    if packs && matches!(fmt, Fmt::Parquet) {
        assert!(stats.packed_vectors > 0, "{fmt:?} {op} {api}: nothing was sent packed");
    } else {
        assert_eq!(stats.packed_vectors, 0, "{fmt:?} {op} {api} {vectors}");
    }
    if vectors == "auto" && api == "v2" && matches!(fmt, Fmt::Parquet) {
        assert!(
            summary.contains("vectors        packed (base64): the server stored a packed vector exactly"),
            "{summary}"
        );
    }
    assert!(summary.contains("read = applied + rejected: ok"), "{summary}");
    emu.shutdown().await;
}

macro_rules! matrix {
    ($($name:ident: $fmt:expr, $op:expr, $api:expr, $seed:expr $(, $vectors:expr)?;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                matrix_case($fmt, $op, $api, $seed, [$($vectors,)? "array"][0]).await;
            }
        )*
    };
}

matrix! {
    csv_upsert_v2: Fmt::Csv, "upsert", "v2", 1;
    csv_update_v2: Fmt::Csv, "update", "v2", 2;
    csv_delete_v2: Fmt::Csv, "delete", "v2", 3;
    csv_mixed_v2: Fmt::Csv, "mixed", "v2", 4;
    csv_upsert_v1: Fmt::Csv, "upsert", "v1", 5;
    csv_update_v1: Fmt::Csv, "update", "v1", 6;
    csv_delete_v1: Fmt::Csv, "delete", "v1", 7;
    csv_mixed_v1: Fmt::Csv, "mixed", "v1", 8;
    jsonl_upsert_v2: Fmt::Jsonl, "upsert", "v2", 9;
    jsonl_update_v2: Fmt::Jsonl, "update", "v2", 10;
    jsonl_delete_v2: Fmt::Jsonl, "delete", "v2", 11;
    jsonl_mixed_v2: Fmt::Jsonl, "mixed", "v2", 12;
    jsonl_upsert_v1: Fmt::Jsonl, "upsert", "v1", 13;
    jsonl_update_v1: Fmt::Jsonl, "update", "v1", 14;
    jsonl_delete_v1: Fmt::Jsonl, "delete", "v1", 15;
    jsonl_mixed_v1: Fmt::Jsonl, "mixed", "v1", 16;
    parquet_upsert_v2: Fmt::Parquet, "upsert", "v2", 17;
    parquet_update_v2: Fmt::Parquet, "update", "v2", 18;
    parquet_delete_v2: Fmt::Parquet, "delete", "v2", 19;
    parquet_mixed_v2: Fmt::Parquet, "mixed", "v2", 20;
    parquet_upsert_v1: Fmt::Parquet, "upsert", "v1", 21;
    parquet_update_v1: Fmt::Parquet, "update", "v1", 22;
    parquet_delete_v1: Fmt::Parquet, "delete", "v1", 23;
    parquet_mixed_v1: Fmt::Parquet, "mixed", "v1", 24;
    // Packed vectors (V2 only): Parquet's f32s as base64, CSV's text as it came.
    parquet_upsert_v2_base64: Fmt::Parquet, "upsert", "v2", 25, "base64";
    parquet_mixed_v2_base64: Fmt::Parquet, "mixed", "v2", 26, "base64";
    csv_mixed_v2_base64: Fmt::Csv, "mixed", "v2", 27, "base64";
    // "auto": one row upserted packed and fetched back under faults and throttling, then packed
    // (V2), or arrays without a check (V1).
    parquet_upsert_v2_auto: Fmt::Parquet, "upsert", "v2", 28, "auto";
    parquet_mixed_v2_auto: Fmt::Parquet, "mixed", "v2", 29, "auto";
    parquet_mixed_v1_auto: Fmt::Parquet, "mixed", "v1", 30, "auto";
    csv_mixed_v2_auto: Fmt::Csv, "mixed", "v2", 31, "auto";
}
