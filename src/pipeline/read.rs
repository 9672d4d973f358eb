//! The reader thread: reads every planned file in order, types each row (on `[read] threads`
//! typing threads beside it, in chunks whose results are handed on in read order), and hands the
//! results to the coordinator through a bounded channel.
//!
//! Owns: turning rows into [`Item`]s (a typed row, a row a previous run finished, a rejected row
//! with its dead-letter entry, the end of a file, a file that cannot be read further), run-wide
//! sequence numbers, the reader's counters (rows parsed, bytes read), and a shard's choice of
//! rows (`run --shard I/N`: another shard's row holds its place and is not typed).
//! Never: sends, acknowledges, writes state, or runs on the async runtime: it is a plain thread
//! that blocks on the channel, so memory is bounded by the channel's capacity (plus a few chunks
//! per typing thread). Never hands an item on out of read order, and never panics when the system
//! refuses a thread (it types on fewer threads, or on the reading thread, and says so).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;

use super::plan::FilePlan;
use crate::deadletter::Entry;
use crate::record::{Op, Origin, PrimaryKey, Record};
use crate::report::Stats;
use crate::schema::{Schema, SourceMapping};
use crate::source::{self, Position, RawRow, ReadError};

/// What the reader thread hands the coordinator.
pub(super) enum Item {
    Row {
        record: Record,
        end: Position,
    },
    /// A row a previous run already acknowledged.
    Done {
        origin: Origin,
        end: Position,
    },
    Rejected {
        origin: Origin,
        end: Position,
        entry: Entry,
    },
    FileEnd(usize),
    Failed(ReadError),
}

/// Rows parsed ahead of the coordinator (the coordinator itself takes at most `window`).
pub(super) const CHANNEL_ROWS: usize = 1024;

/// Rows handed to a typing thread at a time.
const CHUNK_ROWS: usize = 32;

/// Everything a typing thread needs to turn a row into an [`Item`].
struct Typing {
    files: Arc<[FilePlan]>,
    /// Each file's path as shown in dead-letter entries.
    names: Vec<String>,
    mappings: Vec<SourceMapping>,
    schema: Schema,
    shard: Option<Shard>,
}

/// A row as read, with its place, before it is typed; or an item that needs no typing.
enum Unit {
    Row {
        file: usize,
        seq: u64,
        next: Result<RawRow, ReadError>,
    },
    Ready(Item),
}

impl Typing {
    /// The item for one unit: a row a previous run finished, another shard's row, a typed row, or
    /// a rejected one.
    fn item(&self, unit: Unit) -> Item {
        let (index, seq, next) = match unit {
            Unit::Ready(item) => return item,
            Unit::Row { file, seq, next } => (file, seq, next),
        };
        let file = &self.files[index];
        let mapping = &self.mappings[file.source.mapping];
        let name = &self.names[index];
        let already = |row: u64| crate::ack::in_ranges(&file.done_rows, row);
        match next {
            Ok(raw) => {
                let origin = Origin {
                    file: index,
                    row: raw.row,
                    seq,
                };
                if already(raw.row) {
                    Item::Done { origin, end: raw.end }
                } else if self.shard.is_some_and(|sh| {
                    !sh.owns(
                        self.schema.key_of(&raw, mapping).as_ref(),
                        &file.source.canonical,
                        raw.row,
                    )
                }) {
                    // Another shard's row: it holds its place, and is not typed further.
                    Item::Done { origin, end: raw.end }
                } else {
                    typed(&self.schema, mapping, raw, origin, name)
                }
            }
            Err(ReadError::Row {
                row, end, raw, message, ..
            }) => {
                let origin = Origin { file: index, row, seq };
                if already(row) {
                    return Item::Done { origin, end };
                }
                // No key could be read: the row's place decides its shard.
                match self.shard {
                    Some(sh) if !sh.owns(None, &file.source.canonical, row) => Item::Done { origin, end },
                    _ => unreadable(name, origin, end, raw, message, mapping.op),
                }
            }
            Err(e @ ReadError::File { .. }) => Item::Failed(e),
        }
    }
}

/// Where the reading thread puts what it read: typed on the spot and sent, or gathered into
/// chunks for the typing threads.
trait Outlet {
    /// False when the run stopped (nobody takes items any more).
    fn put(&mut self, unit: Unit) -> bool;
    /// Hands on a partial chunk (at the end of a file).
    fn flush(&mut self) -> bool;
}

/// Types on the reading thread and sends each item.
struct Inline {
    typing: Arc<Typing>,
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
}

impl Outlet for Inline {
    fn put(&mut self, unit: Unit) -> bool {
        let item = self.typing.item(unit);
        forward(item, &self.tx, &self.stats)
    }

    fn flush(&mut self) -> bool {
        true
    }
}

/// Counts an item and sends it; false when the run stopped or the file failed (nothing more
/// may follow a failure).
fn forward(item: Item, tx: &mpsc::Sender<Item>, stats: &Stats) -> bool {
    if matches!(item, Item::Row { .. } | Item::Rejected { .. }) {
        stats.rows_parsed.fetch_add(1, Relaxed);
    }
    let failed = matches!(item, Item::Failed(_));
    tx.blocking_send(item).is_ok() && !failed
}

type Chunk = (Vec<Unit>, std::sync::mpsc::SyncSender<Vec<Item>>);

/// Gathers units into chunks for the typing threads; a forwarding thread sends their items on in
/// the order they were read (each chunk's answer is awaited in turn), so the coordinator sees
/// exactly what typing on the reading thread would give.
struct Parallel {
    chunk: Vec<Unit>,
    work: std::sync::mpsc::SyncSender<Chunk>,
    order: std::sync::mpsc::SyncSender<std::sync::mpsc::Receiver<Vec<Item>>>,
}

impl Outlet for Parallel {
    fn put(&mut self, unit: Unit) -> bool {
        self.chunk.push(unit);
        self.chunk.len() < CHUNK_ROWS || self.flush()
    }

    fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let units = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ROWS));
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        // The order first: a typing thread may answer before the forwarder waits.
        self.order.send(answered).is_ok() && self.work.send((units, answer)).is_ok()
    }
}

/// Rows [`first_packed`] looks at before it gives up while no Parquet file lies ahead: the check
/// is worth a short read, not a long one (a JSONL file whose vectors are long arrays has none
/// to offer). The first row of a Parquet file usually serves; 200 leave room for deletes first,
/// a resumed file, and a shard of dozens.
const PROBE_ROWS: usize = 200;

/// Rows it reads at most on the way to a Parquet file behind other files (CSV, JSONL): only
/// their keys are kept (a few MB at most), so that the row checked with is still the first of
/// its key. About a second of reading at worst.
const PROBE_ROWS_TO_PARQUET: usize = 100_000;

/// A row for `vector_encoding = "auto"`'s check (see [`first_packed`]).
#[derive(Debug)]
pub(super) struct Probe {
    /// The row typed as the run types it without packing: sent to repair a wrong guess.
    pub arrays: Record,
    /// The same row with its vector packed.
    pub packed: Record,
    /// The vector's field and the `f32`s it holds.
    pub field: String,
    pub values: Vec<f32>,
    /// `row N of FILE`, for messages.
    pub place: String,
}

/// A row for `vector_encoding = "auto"`'s check: the first of the run's rows, among its first
/// [`PROBE_ROWS`] (or [`PROBE_ROWS_TO_PARQUET`] when a Parquet file lies ahead), that this run will itself send as an upsert with a vector packed by `packs`
/// (a schema that packs) and that types as well under `arrays` (the run's schema when nothing is
/// packed): so it is sent whatever the verdict. Rows a previous run finished, rows of another
/// shard and rows that fail typing are passed over, as the reader passes them. The row's key must
/// not appear in any earlier row the run sends (any op, either typing): writing it early, for the
/// check, then reorders nothing of this run. Its vector must tell the byte orders apart (an
/// element whose bytes differ when reversed; a zero vector reads the same either way).
pub(super) fn first_packed(
    files: &Arc<[FilePlan]>,
    mappings: &[SourceMapping],
    arrays: &Schema,
    packs: &Schema,
    shard: Option<Shard>,
) -> Option<Probe> {
    let typing = |schema: &Schema| Typing {
        names: files.iter().map(|f| f.source.path.display().to_string()).collect(),
        files: files.clone(),
        mappings: mappings.to_vec(),
        schema: schema.clone(),
        shard,
    };
    let (as_arrays, as_packed) = (typing(arrays), typing(packs));
    let mut seen: std::collections::HashSet<PrimaryKey> = std::collections::HashSet::new();
    let (mut looked, mut typed) = (0, 0);
    // Whether a Parquet file is among files[i..]: only then is a long read worth it.
    let parquet = |f: &FilePlan| {
        !f.skip
            && source::detect(&f.source.path, f.source.options.format)
                .is_ok_and(|(format, _)| format == source::Format::Parquet)
    };
    let mut parquet_ahead: Vec<bool> = files.iter().map(parquet).collect();
    for i in (1..parquet_ahead.len()).rev() {
        parquet_ahead[i - 1] |= parquet_ahead[i];
    }
    for (index, file) in files.iter().enumerate().filter(|(_, f)| !f.skip) {
        let Ok(mut reader) = source::open(&file.source.path, &file.source.options, file.start) else {
            continue; // the reader says why, in its place
        };
        let limit = if parquet_ahead[index] {
            PROBE_ROWS_TO_PARQUET
        } else {
            PROBE_ROWS
        };
        while let Some(next) = reader.next_row() {
            if looked >= limit || matches!(next, Err(ReadError::File { .. })) {
                return None;
            }
            looked += 1;
            // Only a vector given as a list of numbers can go packed (a CSV cell never is one):
            // any other row is not typed here, only its key kept.
            match &next {
                Ok(raw) if !arrays.has_vector_list(raw, &mappings[file.source.mapping]) => {
                    seen.extend(arrays.key_of(raw, &mappings[file.source.mapping]));
                    continue;
                }
                // At most PROBE_ROWS rows are typed, wherever they are.
                Ok(_) if typed >= PROBE_ROWS => return None,
                Ok(_) => typed += 1,
                Err(_) => continue, // unreadable: never sent
            }
            let unit = |next| Unit::Row {
                file: index,
                seq: 0,
                next,
            };
            let (a, p) = (as_arrays.item(unit(next.clone())), as_packed.item(unit(next)));
            if let (Item::Row { record: arrays, .. }, Item::Row { record: packed, .. }) = (&a, &p)
                && arrays.op == Op::Upsert
                && !seen.contains(&arrays.key)
                && let Some((field, values)) = packs.packed_vector_of(packed)
                && values.iter().any(|x| x.to_le_bytes() != x.to_be_bytes())
            {
                let place = format!("row {} of {}", arrays.origin.row, file.source.path.display());
                return Some(Probe {
                    arrays: arrays.clone(),
                    packed: packed.clone(),
                    field,
                    values,
                    place,
                });
            }
            for item in [a, p] {
                if let Item::Row { record, .. } = item {
                    seen.insert(record.key);
                }
            }
        }
    }
    None
}

/// Reads every file in order, types each row (on `threads` typing threads beside this one, or
/// on this thread when `threads` ≤ 1), and sends the results down `tx` in read order. With a
/// `shard`, rows owned by other shards pass as [`Item::Done`]: they hold their place (the
/// watermark moves over them) but are neither sent nor dead-lettered here.
pub(super) fn read_all(
    files: Arc<[FilePlan]>,
    mappings: Vec<SourceMapping>,
    schema: Schema,
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
    shard: Option<Shard>,
    threads: usize,
) {
    read_all_granted(files, mappings, schema, tx, stats, shard, threads, usize::MAX);
}

/// The system grants a thread while `left` is not zero: [`read_all`] passes no limit, and tests
/// stand in for a container's pid limit with a small one.
fn grant(left: &mut usize) -> std::io::Result<()> {
    if *left == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "Resource temporarily unavailable (the thread limit)",
        ));
    }
    *left -= 1;
    Ok(())
}

/// [`read_all`] where at most `granted` more threads can be started.
#[allow(clippy::too_many_arguments)]
fn read_all_granted(
    files: Arc<[FilePlan]>,
    mappings: Vec<SourceMapping>,
    schema: Schema,
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
    shard: Option<Shard>,
    threads: usize,
    mut granted: usize,
) {
    let typing = Typing {
        names: files.iter().map(|f| f.source.path.display().to_string()).collect(),
        files: files.clone(),
        mappings,
        schema,
        shard,
    };
    let typing = Arc::new(typing);
    if threads <= 1 {
        return read_inline(&files, typing, tx, stats);
    }
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Chunk>(threads);
    let (order_tx, order_rx) = std::sync::mpsc::sync_channel::<std::sync::mpsc::Receiver<Vec<Item>>>(threads * 2);
    let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
    std::thread::scope(|scope| {
        // Threads are asked for, not assumed: a container's pid limit can refuse them, and that
        // must slow the run down, not panic it. The order thread first: without it no typing
        // thread is of use, and under a limit that refuses one thread and then every other, a
        // refused typing thread must still leave the ones started working.
        // The forwarder gets the sender only once typing threads run: if none can start, the
        // sender is still here for typing on this thread.
        let (hand_over, handed) = std::sync::mpsc::sync_channel::<mpsc::Sender<Item>>(1);
        let forward_stats = stats.clone();
        let forwarder = grant(&mut granted).and_then(|()| {
            std::thread::Builder::new()
                .name("vikingsync-typing-order".to_string())
                .spawn_scoped(scope, move || {
                    let Ok(tx) = handed.recv() else { return };
                    for answered in order_rx {
                        let Ok(items) = answered.recv() else { return };
                        for item in items {
                            if !forward(item, &tx, &forward_stats) {
                                return;
                            }
                        }
                    }
                })
        });
        let mut started = 0;
        if let Err(e) = &forwarder {
            tracing::warn!(error = %e, "the system refused the typing order thread; typing on the reading thread");
        } else {
            for i in 0..threads {
                let (work_rx, typing) = (work_rx.clone(), typing.clone());
                let spawned = grant(&mut granted).and_then(|()| {
                    std::thread::Builder::new()
                        .name(format!("vikingsync-typing-{i}"))
                        .spawn_scoped(scope, move || {
                            loop {
                                // Poisoned only if another typing thread panicked; the channel is
                                // still sound.
                                let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                                let Ok((units, answer)) = next else { return };
                                let items = units.into_iter().map(|u| typing.item(u)).collect();
                                if answer.send(items).is_err() {
                                    return;
                                }
                            }
                        })
                });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) if started > 0 => {
                        tracing::warn!(error = %e, started, wanted = threads, "the system refused a typing thread; typing on fewer");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the system refused every typing thread; typing on the reading thread");
                        break;
                    }
                }
            }
        }
        if started > 0 && hand_over.send(tx.clone()).is_ok() {
            drop(tx);
            let mut outlet = Parallel {
                chunk: Vec::with_capacity(CHUNK_ROWS),
                work: work_tx,
                order: order_tx,
            };
            read_files(&files, &stats, &mut outlet);
            outlet.flush();
            // Dropping the outlet closes both channels: the typing threads and the forwarder end.
        } else {
            // Dropping the hand-over ends a forwarder that started; closing the work queue ends
            // any typing thread that did.
            drop((hand_over, work_tx, order_tx));
            read_inline(&files, typing.clone(), tx, stats.clone());
        }
    });
}

/// Reads and types every row on this thread.
fn read_inline(files: &[FilePlan], typing: Arc<Typing>, tx: mpsc::Sender<Item>, stats: Arc<Stats>) {
    let mut outlet = Inline {
        typing,
        tx,
        stats: stats.clone(),
    };
    read_files(files, &stats, &mut outlet);
}

/// The reading loop: every planned file in order, each row with its run-wide sequence number.
fn read_files(files: &[FilePlan], stats: &Stats, outlet: &mut dyn Outlet) {
    let mut seq = 0u64;
    for (index, file) in files.iter().enumerate() {
        if file.skip {
            if !outlet.put(Unit::Ready(Item::FileEnd(index))) {
                return;
            }
            continue;
        }
        let mut reader = match source::open(&file.source.path, &file.source.options, file.start) {
            Ok(r) => r,
            Err(e) => {
                outlet.put(Unit::Ready(Item::Failed(e)));
                outlet.flush();
                return;
            }
        };
        let mut last_bytes = 0;
        while let Some(next) = reader.next_row() {
            let unit = match next {
                Err(e @ ReadError::File { .. }) => Unit::Ready(Item::Failed(e)),
                next => {
                    seq += 1;
                    Unit::Row {
                        file: index,
                        seq: seq - 1,
                        next,
                    }
                }
            };
            let failed = matches!(unit, Unit::Ready(Item::Failed(_)));
            let bytes = reader.bytes_read();
            stats.bytes_read.fetch_add(bytes.saturating_sub(last_bytes), Relaxed);
            last_bytes = bytes;
            if !outlet.put(unit) || failed {
                outlet.flush();
                return; // the run stopped, or this file cannot be read further
            }
        }
        if !outlet.put(Unit::Ready(Item::FileEnd(index))) || !outlet.flush() {
            return;
        }
    }
}

/// A row the reader could not turn into cells: it goes to the dead-letter file as read.
pub(super) fn unreadable(
    file: &str,
    origin: Origin,
    end: Position,
    raw: serde_json::Value,
    message: String,
    op: Option<Op>,
) -> Item {
    Item::Rejected {
        entry: Entry {
            file: file.to_string(),
            row: origin.row,
            key: None,
            op,
            error: message,
            code: None,
            http_status: None,
            request_id: None,
            record: raw,
        },
        origin,
        end,
    }
}

/// One shard of a sharded backfill: `index` of `count` (`run --shard I/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard owns a row: by a hash of its primary key, so that every op of a key
    /// stays in one shard, in file order; a row whose key could not be read, by its place.
    pub fn owns(&self, key: Option<&PrimaryKey>, file: &std::path::Path, row: u64) -> bool {
        let h = match key {
            Some(PrimaryKey::Str(s)) => fnv1a(&[b"s:", s.as_bytes()]),
            Some(PrimaryKey::Int(i)) => fnv1a(&[b"i:", &i.to_le_bytes()]),
            None => fnv1a(&[b"r:", file.as_os_str().as_encoded_bytes(), &row.to_le_bytes()]),
        };
        h % u64::from(self.count.max(1)) == u64::from(self.index)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hashers promise neither), so a
/// resumed shard owns the same rows.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Types one row: a record to send, or a rejected row with its dead-letter entry.
pub(super) fn typed(schema: &Schema, mapping: &SourceMapping, raw: RawRow, origin: Origin, file: &str) -> Item {
    let end = raw.end;
    match schema.coerce(&raw, mapping, origin.clone()) {
        Ok(record) => Item::Row { record, end },
        Err(rej) => typed_rejection(rej, raw, origin, end, file),
    }
}

fn typed_rejection(rej: crate::schema::RowRejection, raw: RawRow, origin: Origin, end: Position, file: &str) -> Item {
    Item::Rejected {
        end,
        entry: Entry {
            file: file.to_string(),
            row: origin.row,
            key: rej.key.as_ref().map(|k| k.to_json()),
            op: rej.op,
            error: rej.reason,
            code: None,
            http_status: None,
            request_id: None,
            record: raw.to_json(),
        },
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::plan::source_files;

    /// Everything the reader hands on, in order, as text: rows with their keys, origins and
    /// positions, rejections with their reasons, file ends and failures.
    fn read(dir: &std::path::Path, threads: usize, granted: usize) -> Vec<String> {
        let text = r#"
[target]
endpoint = "http://127.0.0.1:9"
[collection]
name = "items"
primary_key = "id"
[collection.fields]
id = "string"
score = "float32"
vec = "vector"
[[sources]]
path = "*.csv"
op = "upsert"
"#;
        let config = Config::parse(text, &dir.join("sync.toml"), dir.to_path_buf()).expect("config");
        let (sources, mappings) = source_files(&config).expect("sources");
        let files: Vec<FilePlan> = sources
            .into_iter()
            .map(|s| {
                let fingerprint = s.fingerprint().expect("fingerprint");
                FilePlan::fresh(s, fingerprint)
            })
            .collect();
        let schema = Schema::from_config(&config.collection);
        let (tx, mut rx) = mpsc::channel(CHANNEL_ROWS);
        let stats = Arc::new(Stats::default());
        let reader = std::thread::spawn(move || {
            read_all_granted(files.into(), mappings, schema, tx, stats, None, threads, granted);
        });
        let mut out = Vec::new();
        while let Some(item) = rx.blocking_recv() {
            out.push(match item {
                Item::Row { record, end } => format!("row {:?} {:?} {end:?}", record.key, record.origin),
                Item::Done { origin, end } => format!("done {origin:?} {end:?}"),
                Item::Rejected { origin, end, entry } => format!("rejected {origin:?} {end:?} {}", entry.error),
                Item::FileEnd(i) => format!("end {i}"),
                Item::Failed(e) => format!("failed {e}"),
            });
        }
        reader.join().expect("the reader returns");
        out
    }

    /// A system that refuses threads (a container's pid limit) slows typing down; it changes
    /// nothing of what is handed on, nor its order, and never panics.
    #[test]
    fn refused_typing_threads_type_on_fewer_or_inline_with_the_same_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, first) in [("a.csv", 0), ("b.csv", 1000)] {
            let mut csv = String::from("id,score,vec\n");
            for i in first..first + 300 {
                // Every 37th row has a score that is not a number: a rejection in the stream.
                let score = if i % 37 == 5 {
                    "x".to_string()
                } else {
                    format!("{}", i % 11)
                };
                csv.push_str(&format!("k{i},{score},\"[{i},0.5,-0.25]\"\n"));
            }
            std::fs::write(dir.path().join(name), csv).expect("write");
        }
        let inline = read(dir.path(), 1, usize::MAX);
        assert_eq!(inline.iter().filter(|l| l.starts_with("row ")).count(), 600 - 16);
        assert_eq!(inline.iter().filter(|l| l.starts_with("rejected ")).count(), 16);
        assert_eq!(inline.iter().filter(|l| l.starts_with("end ")).count(), 2);
        // Of the order thread and four typing threads, granted: all; none; the order thread only
        // (inline); it and one typing thread; it and three (typing on fewer).
        for granted in [usize::MAX, 0, 1, 2, 4] {
            assert_eq!(read(dir.path(), 4, granted), inline, "{granted} threads granted");
        }
    }

    /// The row `vector_encoding = "auto"` checks with is one this run will itself send whatever
    /// the verdict: not one a previous run finished, not another shard's, not one that fails
    /// typing (packed text types only when packing), an upsert whose vector goes packed and tells
    /// the byte orders apart, and the first row of its key; none among the first rows means none.
    #[test]
    fn the_checked_row_is_the_first_this_run_sends_packed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut jsonl = String::new();
        for i in 0..40 {
            let line = match i {
                // Not numbers: fails typing either way.
                2 => r#"{"id":"k2","op":"upsert","vec":"x"}"#.to_string(),
                // Packed text: types only when packing.
                3 => r#"{"id":"k3","op":"upsert","vec":"AACAPwAAAEAAAEBAAACAQA=="}"#.to_string(),
                // Zeros read the same in either byte order.
                4 => r#"{"id":"k4","op":"upsert","vec":[0,0,0,0]}"#.to_string(),
                // An update of k6 before k6's upsert: k6 is not the first row of its key.
                5 => r#"{"id":"k6","op":"update","vec":[1,2,3,4]}"#.to_string(),
                _ => format!(r#"{{"id":"k{i}","op":"upsert","vec":[{i},0.5,-0.25,1e-3]}}"#),
            };
            jsonl.push_str(&line);
            jsonl.push('\n');
        }
        std::fs::write(dir.path().join("a.jsonl"), jsonl).expect("write");
        let text = r#"
[target]
endpoint = "http://127.0.0.1:9"
[collection]
name = "items"
primary_key = "id"
dim = 4
[collection.fields]
id = "string"
vec = "vector"
[[sources]]
path = "*.jsonl"
op_column = "op"
"#;
        let config = Config::parse(text, &dir.path().join("sync.toml"), dir.path().to_path_buf()).expect("config");
        let (sources, mappings) = source_files(&config).expect("sources");
        let plan = |done: Vec<crate::ack::RowRange>| -> Arc<[FilePlan]> {
            let files: Vec<FilePlan> = sources
                .iter()
                .map(|s| {
                    let mut f = FilePlan::fresh(s.clone(), s.fingerprint().expect("fingerprint"));
                    f.done_rows = done.clone();
                    f
                })
                .collect();
            files.into()
        };
        let arrays = Schema::from_config(&config.collection);
        let mut packs = arrays.clone();
        packs.vector_encoding = crate::config::VectorEncoding::Base64;
        let found = |done: Vec<crate::ack::RowRange>, shard: Option<Shard>| {
            first_packed(&plan(done), &mappings, &arrays, &packs, shard).map(|p| {
                assert_eq!(p.arrays.key, p.packed.key);
                assert!(p.arrays.json.contains("\"vec\":["), "{}", p.arrays.json);
                assert!(!p.packed.json.contains("\"vec\":["), "{}", p.packed.json);
                (p.packed.key, p.field, p.values, p.place)
            })
        };
        let k = |i: u32| PrimaryKey::Str(format!("k{i}").into());

        let (key, field, values, place) = found(vec![], None).expect("a row");
        assert_eq!((key, field, values), (k(0), "vec".into(), vec![0.0, 0.5, -0.25, 1e-3]));
        assert!(place.starts_with("row 1 of ") && place.ends_with("a.jsonl"), "{place}");
        // Rows are counted from 1. k0 and k1 done by a previous run; k2 fails typing; k3 types
        // only when packing; k4's zeros tell nothing; row 6 updates k6, so row 7's upsert of k6
        // is not the first of its key: k7.
        assert_eq!(found(vec![[1, 2]], None).map(|f| f.0), Some(k(7)));
        // With row 6's update done by a previous run, row 7 is the first row of k6 this run sends.
        assert_eq!(found(vec![[1, 6]], None).map(|f| f.0), Some(k(6)));
        // Another shard's rows are passed over: the row found is this shard's own.
        for index in 0..3 {
            let shard = Shard { index, count: 3 };
            let (got, ..) = found(vec![], Some(shard)).expect("a row");
            let row = (0..40u32)
                .filter(|i| ![2, 3, 4, 5, 6].contains(i))
                .find(|i| shard.owns(Some(&k(*i)), &sources[0].canonical, u64::from(*i) + 1));
            assert_eq!(Some(got), row.map(k), "shard {index}");
        }
        // Every row done: nothing to check with.
        assert_eq!(found(vec![[1, 40]], None).map(|f| f.0), None);
        // A schema that does not pack finds nothing.
        assert!(first_packed(&plan(vec![]), &mappings, &arrays, &arrays, None).is_none());
    }
}
