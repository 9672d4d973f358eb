//! `run` under signals and with `--listen`: a second signal exits at once with the checkpoint
//! consistent (a rerun ends in the exact state, nothing lost), and `run --listen` serves the
//! counters the summary reads, never counting a row applied that the server did not accept.

use std::time::Duration;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|i| full_row(&mut rng, "upsert", format!("s{i:06}")))
        .collect()
}

fn kill(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

fn metric(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse::<f64>().expect("number") as u64)
        })
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

fn applied_by_server(emu: &vikingdb_emulator::Emulator) -> u64 {
    emu.stats().rows_accepted_sync
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_a_rerun_loses_nothing() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 300, false)], FaultConfig::default(), 11).await;
    let data = rows(3000, 4);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &data, false);
    write_config(dir.path(), &upserts_at(&emu.endpoint(), "v2", "rows.csv", 300));
    let mut child = binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Wait until some rows landed, then two signals in a row.
    for _ in 0..600 {
        if applied_by_server(&emu) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed = applied_by_server(&emu);
    assert!((300..3000).contains(&landed), "mid-run: {landed}");
    let pid = child.id().expect("pid");
    kill(pid, "-TERM");
    tokio::time::sleep(Duration::from_millis(50)).await;
    kill(pid, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains("second signal"), "{err}");
    // The checkpoint on disk is consistent: a rerun finishes, and the state is exact.
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml", "--no-progress"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let (expected, _) = model(&[("rows.csv", &data)]);
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len(), "{shown}");
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}\n{shown}");
    }
    assert!(dead_letters(dir.path()).is_empty(), "{shown}");
    // Re-sent at most what was in flight and not committed: far less than the whole file.
    let accepted = applied_by_server(&emu);
    assert!((3000..4000).contains(&accepted), "accepted {accepted}\n{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_listen_serves_the_counters_and_never_counts_more_than_the_server_took() {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 400, false)], FaultConfig::default(), 12).await;
    let data = rows(2000, 9);
    write(&dir.path().join("rows.csv"), Fmt::Csv, &data, false);
    write_config(dir.path(), &upserts_at(&emu.endpoint(), "v2", "rows.csv", 400));
    let mut child = binary(
        dir.path(),
        &[
            "run",
            "--config",
            "sync.toml",
            "--no-progress",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("spawn");
    let (addr, mut lines) = listening_address(&mut child).await;
    let (code, _) = http_get(addr, "/healthz").await.expect("/healthz");
    assert_eq!(code, 200);
    let mut last = 0;
    let mut scrapes = 0;
    loop {
        // An error: the run ended, and its endpoints with it.
        let Ok((200, body)) = http_get(addr, "/metrics").await else {
            break;
        };
        let applied = metric(&body, "vikingsync_rows_total{op=\"upsert\",outcome=\"applied\"}");
        // Scraped first, then the server asked: the server has at least what was counted.
        assert!(
            applied <= applied_by_server(&emu),
            "{applied} counted, server {}",
            applied_by_server(&emu)
        );
        assert!(applied >= last, "counters only grow");
        assert!(body.contains("vikingsync_build_info{version="), "{body}");
        last = applied;
        scrapes += 1;
        if applied >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    assert!(scrapes >= 3, "scraped {scrapes} times during the run");
    let mut rest = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(rest.contains("applied        2000"), "{rest}");
}
