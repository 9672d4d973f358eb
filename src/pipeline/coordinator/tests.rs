//! The coordinator against a fake sender: per-key order, acknowledgements in any order, dead
//! letters, commit cadence, a fatal error and a stop. No HTTP; a temporary state directory.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::client::ServerError;
use crate::pipeline::plan::SourceFile;
use crate::record::{PrimaryKey, Record};
use crate::source::{Position, ReadOptions};

/// How the fake treats one batch.
#[derive(Clone, Copy)]
struct Behaviour {
    /// How long the request takes.
    delay: fn(&Batch) -> Duration,
    /// Rows the "server" refuses (by row number).
    refuse: fn(u64) -> bool,
    /// The whole call fails (by the batch's rows).
    fatal: fn(&Batch) -> bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            delay: |_| Duration::from_millis(1),
            refuse: |_| false,
            fatal: |_| false,
        }
    }
}

#[derive(Default)]
struct Log {
    /// Keys of rows sent and not yet returned.
    outstanding: HashSet<PrimaryKey>,
    /// Per key, the sequence numbers of its rows in the order they were sent.
    sent_per_key: HashMap<PrimaryKey, Vec<u64>>,
    /// Batch ids in the order they returned.
    returned: Vec<u64>,
    dispatched: usize,
    finished: usize,
    violations: Vec<String>,
}

struct Fake {
    behaviour: Behaviour,
    log: Mutex<Log>,
}

impl Fake {
    fn new(behaviour: Behaviour) -> Arc<Fake> {
        Arc::new(Fake {
            behaviour,
            log: Mutex::new(Log::default()),
        })
    }
}

impl SendBatches for Fake {
    async fn send(&self, batch: Batch) -> Result<BatchResult, SendError> {
        {
            {
                let mut log = self.log.lock().unwrap();
                log.dispatched += 1;
                for r in &batch.records {
                    if !log.outstanding.insert(r.key.clone()) {
                        log.violations
                            .push(format!("key {} sent again while its row is in flight", r.key));
                    }
                    log.sent_per_key.entry(r.key.clone()).or_default().push(r.origin.seq);
                }
            }
            tokio::time::sleep((self.behaviour.delay)(&batch)).await;
            let mut log = self.log.lock().unwrap();
            for r in &batch.records {
                log.outstanding.remove(&r.key);
            }
            log.returned.push(batch.id);
            log.finished += 1;
            drop(log);
            if (self.behaviour.fatal)(&batch) {
                return Err(SendError::Fatal {
                    message: "the fake gave up".into(),
                    source: Box::new(crate::client::WireError::Redirect {
                        endpoint: "POST fake".into(),
                        status: 302,
                        location: None,
                    }),
                });
            }
            let mut result = BatchResult::default();
            for r in batch.records {
                if (self.behaviour.refuse)(r.origin.row) {
                    let err = server_error(r.origin.row);
                    result.rejected.push((r, err));
                } else {
                    result.applied.push(r);
                }
            }
            Ok(result)
        }
    }
}

fn server_error(row: u64) -> ServerError {
    ServerError {
        status: 400,
        code: "InvalidArgument".into(),
        message: format!("row {row} is not acceptable"),
        request_id: Some(format!("req-{row}")),
    }
}

fn end(row: u64) -> Position {
    Position::Offset {
        byte: row * 10,
        rows: row,
        line: None,
    }
}

/// Row `row` (1-based) of file 0, with key `key`; `seq` follows the row.
fn row(row: u64, key: i64) -> Item {
    Item::Row {
        record: Record {
            key: PrimaryKey::Int(key),
            op: Op::Upsert,
            ttl: None,
            json: format!(r#"{{"id":{key},"row":{row}}}"#).into(),
            origin: Origin {
                file: 0,
                row,
                seq: row - 1,
            },
        },
        end: end(row),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    state: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, "{\"id\":1}\n").unwrap();
    let state = dir.path().join("state");
    Setup { data, state, _dir: dir }
}

fn settings(concurrency: usize, batch_rows: usize) -> Settings {
    Settings {
        concurrency,
        batch_rows,
        vectorize: false,
        max_rejected: None,
        max_rejected_per_run: None,
        primary_key: Arc::from("id"),
        commit_interval: Duration::from_secs(3600),
        commit_rows: u64::MAX,
        stop_grace: Duration::from_secs(10),
    }
}

fn coordinator(s: &Setup, settings: Settings, fake: Arc<Fake>, token: CancellationToken) -> Coordinator<Fake> {
    let source = SourceFile {
        path: s.data.clone(),
        mapping: 0,
        options: ReadOptions::default(),
        canonical: s.data.clone(),
    };
    let plan = FilePlan::fresh(source, crate::checkpoint::Fingerprint::of(&s.data).unwrap());
    let (store, previous) = Store::open(&s.state).unwrap();
    assert!(previous.is_none());
    let dead = DeadLetter::open(&s.state, 0).unwrap();
    Coordinator::new(
        settings,
        Arc::from(vec![plan]),
        Vec::new(),
        store,
        dead,
        fake,
        Arc::new(Stats::default()),
        token,
    )
}

/// Queues `items` then the end of file 0 (all waiting before the coordinator starts, so batches
/// fill in row order), drives the coordinator to the end and finishes it. Returns drive's
/// outcome, the unfinished rows and the commit's outcome.
async fn drive(c: &mut Coordinator<Fake>, items: Vec<Item>) -> (Result<(), RunError>, u64, Result<(), RunError>) {
    let (tx, rx) = mpsc::channel(items.len() + 1);
    for item in items.into_iter().chain([Item::FileEnd(0)]) {
        assert!(tx.try_send(item).is_ok());
    }
    drop(tx);
    let outcome = c.drive(rx, &Progress::new(0, false)).await;
    let (unfinished, committed) = c.finish();
    (outcome, unfinished, committed)
}

/// Cancels `token` (a signal) after `ms` milliseconds.
fn cancel_after(token: CancellationToken, ms: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        token.cancel();
    })
}

fn checkpoint(dir: &Path) -> Checkpoint {
    crate::checkpoint::load(dir)
        .unwrap()
        .expect("a checkpoint was committed")
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(crate::deadletter::FILE_NAME))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_later_row_of_a_key_waits_for_the_earlier_one() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        // Uneven request times, so requests overtake each other.
        delay: |b| Duration::from_millis((b.id * 7919) % 9),
        ..Behaviour::default()
    });
    let mut c = coordinator(&s, settings(4, 5), fake.clone(), CancellationToken::new());
    // 300 rows over 7 keys: every key recurs every 7 rows.
    let items = (1..=300).map(|r| row(r, (r % 7) as i64 + 1)).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    outcome.unwrap();
    committed.unwrap();
    assert_eq!(unfinished, 0);
    let log = fake.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(log.sent_per_key.len(), 7);
    for (key, seqs) in &log.sent_per_key {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "key {key} sent out of order: {seqs:?}"
        );
    }
    assert_eq!(log.sent_per_key.values().map(Vec::len).sum::<usize>(), 300);
    let cp = checkpoint(&s.state);
    assert_eq!(cp.files[0].position, Some(end(300)));
    assert!(cp.files[0].done);
    assert_eq!(cp.files[0].applied, 300);
}

#[tokio::test]
async fn acknowledgements_in_reverse_order_finish_with_the_right_checkpoint() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        // Of the batches in flight together, the later ones return first.
        delay: |b| Duration::from_millis(2 * (8 - b.id % 8)),
        ..Behaviour::default()
    });
    let mut c = coordinator(&s, settings(8, 4), fake.clone(), CancellationToken::new());
    let items = (1..=96).map(|r| row(r, r as i64)).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    outcome.unwrap();
    committed.unwrap();
    assert_eq!(unfinished, 0);
    let returned = fake.log.lock().unwrap().returned.clone();
    let mut sorted = returned.clone();
    sorted.sort_unstable();
    assert_ne!(returned, sorted, "the fake should have returned batches out of order");
    let cp = checkpoint(&s.state);
    assert_eq!(cp.files[0].position, Some(end(96)));
    assert!(cp.files[0].done);
    assert!(cp.files[0].acknowledged_above.is_empty());
    assert_eq!(cp.files[0].applied, 96);
}

#[tokio::test]
async fn the_watermark_waits_for_the_first_unacknowledged_row() {
    let s = setup();
    let mut c = coordinator(
        &s,
        settings(1, 5),
        Fake::new(Behaviour::default()),
        CancellationToken::new(),
    );
    let mut records = Vec::new();
    for r in 1..=10 {
        let Item::Row { record, end } = row(r, r as i64) else {
            unreachable!()
        };
        c.tracker.read(&record.origin, end);
        records.push(record);
    }
    let second: Vec<Record> = records.split_off(5);
    // Rows 6..=10 come back first: nothing is below the watermark yet, 6..=10 are kept above it.
    c.complete(
        Op::Upsert,
        BatchResult {
            applied: second,
            rejected: Vec::new(),
        },
    )
    .unwrap();
    c.commit().unwrap();
    let cp = checkpoint(&s.state);
    assert_eq!(cp.files[0].position, None);
    assert_eq!(cp.files[0].acknowledged_above, vec![[6, 10]]);
    assert!(!cp.files[0].done);
    // Then rows 1..=5: the watermark passes all ten.
    c.complete(
        Op::Upsert,
        BatchResult {
            applied: records,
            rejected: Vec::new(),
        },
    )
    .unwrap();
    c.commit().unwrap();
    let cp = checkpoint(&s.state);
    assert_eq!(cp.files[0].position, Some(end(10)));
    assert!(cp.files[0].acknowledged_above.is_empty());
    assert_eq!(cp.files[0].applied, 10);
    assert_eq!(cp.seq, 2);
}

#[tokio::test]
async fn refused_rows_are_dead_lettered_once_and_counted_in_the_checkpoint() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        delay: |b| Duration::from_millis((b.id * 31) % 5),
        refuse: |row| row % 10 == 3,
        ..Behaviour::default()
    });
    let mut c = coordinator(&s, settings(3, 4), fake, CancellationToken::new());
    let name = s.data.display().to_string();
    let mut items: Vec<Item> = (1..=50).map(|r| row(r, r as i64)).collect();
    // Row 25 the reader already rejected.
    items[24] = Item::Rejected {
        origin: Origin {
            file: 0,
            row: 25,
            seq: 24,
        },
        end: end(25),
        entry: Entry {
            file: name.clone(),
            row: 25,
            key: None,
            op: None,
            error: "not a number".into(),
            code: None,
            http_status: None,
            request_id: None,
            record: serde_json::json!({"id": "x"}),
        },
    };
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    outcome.unwrap();
    committed.unwrap();
    assert_eq!(unfinished, 0);
    let letters = dead_letters(&s.state);
    let mut rows: Vec<u64> = letters.iter().map(|l| l["row"].as_u64().unwrap()).collect();
    rows.sort_unstable();
    assert_eq!(rows, vec![3, 13, 23, 25, 33, 43], "each rejected row exactly once");
    for l in &letters {
        assert_eq!(l["file"], name.as_str());
        if l["row"] == 25 {
            assert!(l.get("code").is_none_or(|c| c.is_null()));
        } else {
            assert_eq!(l["code"], "InvalidArgument");
            assert_eq!(l["http_status"], 400);
            assert_eq!(l["key"], l["row"]);
            assert_eq!(l["record"]["row"], l["row"]);
        }
    }
    let cp = checkpoint(&s.state);
    let len = std::fs::metadata(s.state.join(crate::deadletter::FILE_NAME))
        .unwrap()
        .len();
    assert_eq!(cp.dead_letter_len, len);
    assert_eq!(cp.files[0].rejected, 6);
    assert_eq!(cp.files[0].applied, 44);
    assert_eq!(cp.files[0].position, Some(end(50)));
    assert_eq!(c.stats.rejected.load(Relaxed), 6);
}

/// Commits of a run of 10 batches of 10 rows, one at a time, each taking `ms`.
async fn commits(commit_rows: u64, commit_interval: Duration, delay: fn(&Batch) -> Duration) -> u64 {
    let s = setup();
    let fake = Fake::new(Behaviour {
        delay,
        ..Behaviour::default()
    });
    let settings = Settings {
        commit_rows,
        commit_interval,
        ..settings(1, 10)
    };
    let mut c = coordinator(&s, settings, fake, CancellationToken::new());
    let items = (1..=100).map(|r| row(r, r as i64)).collect();
    let (outcome, _, committed) = drive(&mut c, items).await;
    outcome.unwrap();
    committed.unwrap();
    let cp = checkpoint(&s.state);
    assert_eq!(cp.files[0].position, Some(end(100)));
    cp.seq
}

#[tokio::test]
async fn commit_rows_and_commit_interval_trigger_commits() {
    let slow = |_: &Batch| Duration::from_millis(25);
    // Neither threshold reached: only the final commit.
    assert_eq!(commits(u64::MAX, Duration::from_secs(3600), slow).await, 1);
    // Every acknowledged batch reaches commit_rows: a commit after (nearly) each, plus the final.
    let by_rows = commits(10, Duration::from_secs(3600), slow).await;
    assert!((6..=11).contains(&by_rows), "{by_rows} commits");
    // 10 × 25 ms with a commit at most every 60 ms: a few commits, not one per batch.
    let by_time = commits(u64::MAX, Duration::from_millis(60), slow).await;
    assert!((3..=11).contains(&by_time), "{by_time} commits");
}

#[tokio::test]
async fn a_fatal_error_stops_the_run_and_commits_what_was_acknowledged() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        // The batch holding row 16 fails, after the one sent beside it has come back.
        delay: |b| {
            let slow = b.records.iter().any(|r| r.origin.row == 16);
            Duration::from_millis(if slow { 60 } else { 2 })
        },
        fatal: |b| b.records.iter().any(|r| r.origin.row == 16),
        ..Behaviour::default()
    });
    let mut c = coordinator(&s, settings(2, 5), fake.clone(), CancellationToken::new());
    let items = (1..=60).map(|r| row(r, r as i64)).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    assert!(
        matches!(outcome, Err(RunError::Send(SendError::Fatal { .. }))),
        "{outcome:?}"
    );
    committed.unwrap();
    let cp = checkpoint(&s.state);
    let f = &cp.files[0];
    // Rows 1..=15 are below the watermark; rows after the failed batch that came back are kept
    // above it, so a resume skips them; the failed rows and the rest are unfinished.
    assert_eq!(f.position, Some(end(15)));
    assert!(!f.done);
    let above = crate::ack::ranges_len(&f.acknowledged_above);
    assert!(above >= 5, "{:?}", f.acknowledged_above);
    assert!(f.acknowledged_above.iter().all(|r| r[0] > 20));
    assert_eq!(f.applied, 15 + above);
    assert_eq!(c.stats.applied(), f.applied);
    // `unfinished` is what is ahead of the committed position (acknowledged rows above it included).
    assert!(unfinished >= 5 + above);
    assert_eq!(c.stats.rows_read.load(Relaxed), 15 + unfinished);
}

#[tokio::test]
async fn a_cancelled_token_finishes_requests_in_flight_then_commits() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        delay: |_| Duration::from_millis(40),
        ..Behaviour::default()
    });
    let token = CancellationToken::new();
    let mut c = coordinator(&s, settings(2, 5), fake.clone(), token.clone());
    let cancel = cancel_after(token, 100);
    let items = (1..=1000).map(|r| row(r, r as i64)).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    cancel.await.unwrap();
    assert!(matches!(outcome, Err(RunError::Interrupted)), "{outcome:?}");
    committed.unwrap();
    let log = fake.log.lock().unwrap();
    assert!(log.dispatched > 0);
    assert_eq!(log.dispatched, log.finished, "every request in flight finished");
    let cp = checkpoint(&s.state);
    let f = &cp.files[0];
    assert_eq!(f.applied, 5 * log.dispatched as u64);
    assert_eq!(f.position, Some(end(f.applied)));
    assert_eq!(c.stats.rows_read.load(Relaxed), f.applied + unfinished);
}

fn read_failure() -> Item {
    Item::Failed(crate::source::ReadError::File {
        file: PathBuf::from("data.csv"),
        message: "a quoted field is still open at the end of the file".into(),
    })
}

fn is_read_failure(outcome: &Result<(), RunError>) -> bool {
    matches!(outcome, Err(RunError::Source(e)) if matches!(e.as_ref(), crate::source::ReadError::File { .. }))
}

#[tokio::test]
async fn a_read_failure_drains_the_rows_read_before_it_then_stops() {
    // 40 rows on 3 keys (most of them wait for an earlier row of their key), then a read failure:
    // every row is still sent, in per-key order, acknowledged and checkpointed; the failure is
    // what the run returns.
    let s = setup();
    let fake = Fake::new(Behaviour {
        delay: |_| Duration::from_millis(5),
        ..Behaviour::default()
    });
    let mut c = coordinator(&s, settings(2, 5), fake.clone(), CancellationToken::new());
    let items = (1..=40)
        .map(|r| row(r, (r % 3) as i64))
        .chain([read_failure()])
        .collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    assert!(is_read_failure(&outcome), "{outcome:?}");
    committed.unwrap();
    assert_eq!(unfinished, 0);
    let log = fake.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    let f = &checkpoint(&s.state).files[0];
    assert_eq!(f.applied, 40);
    assert_eq!(f.position, Some(end(40)));
}

#[tokio::test]
async fn a_drain_longer_than_the_grace_leaves_the_rest_ahead_of_the_checkpoint() {
    let s = setup();
    let fake = Fake::new(Behaviour {
        delay: |_| Duration::from_millis(400),
        ..Behaviour::default()
    });
    let mut cfg = settings(2, 5);
    cfg.stop_grace = Duration::from_millis(150);
    let mut c = coordinator(&s, cfg, fake, CancellationToken::new());
    let items = (1..=30).map(|r| row(r, r as i64)).chain([read_failure()]).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    assert!(is_read_failure(&outcome), "{outcome:?}");
    committed.unwrap();
    assert!(unfinished > 0, "the grace ran out with rows unsent");
    let applied = crate::checkpoint::load(&s.state)
        .unwrap()
        .map_or(0, |cp| cp.files[0].applied);
    assert_eq!(
        applied + unfinished,
        30,
        "every row applied or still ahead of the checkpoint"
    );
}

#[tokio::test]
async fn a_signal_during_the_drain_still_returns_the_read_failure() {
    // The file and the place are what the user has to fix (and what `serve` sets aside by): a
    // stop requested while the rows before the failure are being sent does not hide them.
    let s = setup();
    let fake = Fake::new(Behaviour {
        // Four requests in two rounds of 200 ms: the stop at 30 ms comes while the first round
        // is in flight, with room for a loaded machine to run the stop late.
        delay: |_| Duration::from_millis(200),
        ..Behaviour::default()
    });
    let token = CancellationToken::new();
    let mut c = coordinator(&s, settings(2, 5), fake.clone(), token.clone());
    let cancel = cancel_after(token, 30);
    let items = (1..=20).map(|r| row(r, r as i64)).chain([read_failure()]).collect();
    let (outcome, unfinished, committed) = drive(&mut c, items).await;
    cancel.await.unwrap();
    assert!(is_read_failure(&outcome), "{outcome:?}");
    committed.unwrap();
    let log = fake.log.lock().unwrap();
    assert_eq!(log.dispatched, log.finished, "every request in flight finished");
    let f = &checkpoint(&s.state).files[0];
    assert_eq!(f.applied, 5 * log.dispatched as u64);
    assert_eq!(f.applied + unfinished, 20);
    assert!(unfinished > 0, "the stop came before every row was sent");
}
