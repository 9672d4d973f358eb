//! `serve` against a hostile world: the target is down when the service starts (unready, then it
//! comes up on the same address and every row lands), and a file rewritten in place under its
//! checkpoint is set aside while the others keep flowing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use vikingdb_emulator::FaultConfig;

fn rows(n: usize, first: usize, seed: u64) -> Vec<Row> {
    let mut rng = Lcg::new(seed);
    (first..first + n)
        .map(|i| full_row(&mut rng, "upsert", format!("h{i:06}")))
        .collect()
}

/// (status, body), or (0, "") when nothing answers.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).await.unwrap_or((0, String::new()))
}

fn serve_config(endpoint: &str, extra_state: &str) -> String {
    upserts_at(endpoint, "v2", "in/*.csv", 0).replace(
        "[state]\ndir = \"state\"\n",
        &format!("[state]\ndir = \"state\"\n{extra_state}\n[serve]\nsettle = 0.3\nrescan = 0.2\nlinger = 0.05\n"),
    )
}

/// Starts `serve` in `dir`; returns the child and its HTTP address.
async fn start_serve(dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut child = binary(dir, &["serve", "--config", "sync.toml", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (addr, mut lines) = listening_address(&mut child).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

fn drop_file(dir: &Path, name: &str, data: &[Row]) {
    let tmp = dir.join("in").join(format!(".{name}.tmp"));
    write(&tmp, Fmt::Csv, data, false);
    std::fs::rename(&tmp, dir.join("in").join(name)).expect("rename");
}

async fn wait_for(emu: &vikingdb_emulator::Emulator, n: usize) -> usize {
    for _ in 0..600 {
        let got = emu.records("items").map_or(0, |r| r.len());
        if got >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    emu.records("items").map_or(0, |r| r.len())
}

fn check(emu: &vikingdb_emulator::Emulator, all: &[Row]) {
    let (expected, _) = model(&[("x", all)]);
    let actual = emu.records("items").expect("collection");
    assert_eq!(actual.len(), expected.len());
    for (k, v) in &expected {
        assert_eq!(actual.get(k), Some(v), "record {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_at_start_makes_it_unready_then_every_row_lands() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).expect("in");
    // Reserve a port, then free it: nothing listens there when serve starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    write_config(dir.path(), &serve_config(&endpoint, ""));
    let data = rows(300, 0, 1);
    drop_file(dir.path(), "a.csv", &data);
    let (mut child, addr) = start_serve(dir.path()).await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, why) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "unready while the target is down: {why}");
    // The target comes up on that address.
    let config = emulator_config(vec![spec("items", 0, false)], FaultConfig::default(), 2);
    let emu = vikingdb_emulator::start(config, format!("127.0.0.1:{port}").parse().expect("addr"))
        .await
        .expect("the emulator takes the freed port");
    assert_eq!(wait_for(&emu, 300).await, 300);
    check(&emu, &data);
    let mut ready = 0;
    for _ in 0..100 {
        ready = get(addr, "/readyz").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200, "ready once a pass succeeded");
    assert!(child.try_wait().expect("try_wait").is_none(), "still serving");
    let _ = child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_in_place_is_set_aside_and_the_others_flow() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).expect("in");
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 3).await;
    write_config(dir.path(), &serve_config(&emu.endpoint(), "on_change = \"error\""));
    let first = rows(200, 0, 2);
    drop_file(dir.path(), "a.csv", &first);
    let (mut child, addr) = start_serve(dir.path()).await;
    assert_eq!(wait_for(&emu, 200).await, 200);
    // a.csv rewritten in place with other rows (same length or not: its head changed).
    let other = rows(150, 5000, 3);
    write(&dir.path().join("in").join("a.csv"), Fmt::Csv, &other, false);
    let second = rows(100, 1000, 4);
    drop_file(dir.path(), "b.csv", &second);
    let mut failed = 0;
    for _ in 0..300 {
        let (_, body) = get(addr, "/metrics").await;
        failed = body
            .lines()
            .find_map(|l| l.strip_prefix("vikingsync_files{state=\"failed\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if failed == 1 && emu.records("items").map_or(0, |r| r.len()) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed, 1, "the rewritten file is set aside");
    // b.csv landed; none of the rewritten a.csv's rows were sent.
    let all: Vec<Row> = first.iter().chain(second.iter()).cloned().collect();
    check(&emu, &all);
    assert!(child.try_wait().expect("try_wait").is_none(), "still serving");
    // `status` names it, with the reason.
    let out = run_binary(dir.path(), &["status", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert!(shown.contains("failed") && shown.contains("a.csv"), "{shown}");
    let _ = child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_emptied_between_passes_stops_the_service_instead_of_resending() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("in")).expect("in");
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 5).await;
    write_config(dir.path(), &serve_config(&emu.endpoint(), ""));
    let first = rows(200, 0, 6);
    drop_file(dir.path(), "a.csv", &first);
    let (mut child, _addr) = start_serve(dir.path()).await;
    assert_eq!(wait_for(&emu, 200).await, 200);
    let sent_before = emu.stats().rows_accepted_sync;
    // Someone empties the state directory while the service runs (a volume swapped, a cleanup).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = dir.path().join("state");
    std::fs::remove_dir_all(&state).expect("remove");
    std::fs::create_dir(&state).expect("create");
    drop_file(dir.path(), "b.csv", &rows(50, 1000, 7));
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the service stops")
        .expect("status");
    assert_eq!(status.code(), Some(1), "a replaced state directory stops the service");
    // a.csv was not sent again from an empty checkpoint.
    assert_eq!(emu.stats().rows_accepted_sync, sent_before, "nothing re-sent");
}
