//! Rows typed on several threads (`[read] threads`) reach the server in file order: a key's
//! upserts, updates and deletes apply in the order the file gives them, whatever thread typed
//! each row, and every bad row is dead-lettered once.

use std::collections::BTreeSet;

use crate::harness::*;

async fn typed_on(threads: usize, fmt: Fmt, seed: u64) {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], faults_on(), seed).await;
    // Many ops on few keys: any reordering between rows shows in the final state.
    let sc = scenario("mixed", fmt, 900, seed);
    let ext = fmt.ext();
    let setup_name = format!("00-setup.{ext}");
    let rows_name = format!("10-rows.{ext}");
    write(&dir.path().join(&setup_name), fmt, &sc.setup, false);
    write(&dir.path().join(&rows_name), fmt, &sc.rows, true);
    let sources = [(setup_name.clone(), Some("upsert")), (rows_name.clone(), None)];
    let mut cfg = config_text(&emu.endpoint(), "v2", "items", false, 0, &sources);
    cfg.push_str(&format!("\n[read]\nthreads = {threads}\n"));
    std::fs::write(dir.path().join("sync.toml"), cfg).expect("config");

    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "threads {threads} {fmt:?}: {shown}");

    let (expected, expected_dead) = model(&[(&setup_name, &sc.setup), (&rows_name, &sc.rows)]);
    let actual = emu.records("items").expect("collection exists");
    assert_eq!(
        actual.len(),
        expected.len(),
        "threads {threads} {fmt:?}: record count\n{shown}"
    );
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "threads {threads} {fmt:?}: record {k}\n{shown}");
    }
    let dead = dead_letters(dir.path());
    let dead_set: BTreeSet<(String, u64)> = dead.iter().map(|(f, r, _)| (f.clone(), *r)).collect();
    assert_eq!(dead.len(), dead_set.len(), "each rejected row once: {dead:#?}");
    assert_eq!(
        dead_set, expected_dead,
        "threads {threads} {fmt:?}: dead letters\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_typing_thread_keeps_file_order() {
    typed_on(1, Fmt::Csv, 71).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_typing_threads_keep_file_order_csv() {
    typed_on(5, Fmt::Csv, 72).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_typing_threads_keep_file_order_jsonl() {
    typed_on(3, Fmt::Jsonl, 73).await;
}
