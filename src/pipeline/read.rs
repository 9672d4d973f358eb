//! The reader thread: reads every planned file in order, types each row, and hands the results
//! to the coordinator through a bounded channel.
//!
//! Owns: turning rows into [`Item`]s (a typed row, a row a previous run finished, a rejected row
//! with its dead-letter entry, the end of a file, a file that cannot be read further), run-wide
//! sequence numbers, the reader's counters (rows parsed, bytes read), and a shard's choice of
//! rows (`run --shard I/N`: another shard's row holds its place and is not typed).
//! Never: sends, acknowledges, writes state, or runs on the async runtime: it is a plain thread
//! that blocks on the channel, so memory is bounded by the channel's capacity.

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

/// Reads every file in order, types each row, and sends the results down `tx`. With a `shard`,
/// rows owned by other shards pass as [`Item::Done`]: they hold their place (the watermark moves
/// over them) but are neither sent nor dead-lettered here.
pub(super) fn read_all(
    files: Arc<[FilePlan]>,
    mappings: Vec<SourceMapping>,
    schema: Schema,
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
    shard: Option<Shard>,
) {
    let mut seq = 0u64;
    for (index, file) in files.iter().enumerate() {
        let name = file.source.path.display().to_string();
        if file.skip {
            if tx.blocking_send(Item::FileEnd(index)).is_err() {
                return;
            }
            continue;
        }
        let mut reader = match source::open(&file.source.path, &file.source.options, file.start) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Item::Failed(e));
                return;
            }
        };
        let mapping = &mappings[file.source.mapping];
        let mut last_bytes = 0;
        while let Some(next) = reader.next_row() {
            let already = |row: u64| crate::ack::in_ranges(&file.done_rows, row);
            let item = match next {
                Ok(raw) => {
                    let origin = Origin {
                        file: index,
                        row: raw.row,
                        seq,
                    };
                    seq += 1;
                    if already(raw.row) {
                        Item::Done { origin, end: raw.end }
                    } else if shard.is_some_and(|sh| {
                        !sh.owns(schema.key_of(&raw, mapping).as_ref(), &file.source.canonical, raw.row)
                    }) {
                        // Another shard's row: it holds its place, and is not typed further.
                        Item::Done { origin, end: raw.end }
                    } else {
                        typed(&schema, mapping, raw, origin, &name)
                    }
                }
                Err(ReadError::Row { row, end, .. }) if already(row) => {
                    let origin = Origin { file: index, row, seq };
                    seq += 1;
                    Item::Done { origin, end }
                }
                Err(ReadError::Row {
                    row, end, raw, message, ..
                }) => {
                    let origin = Origin { file: index, row, seq };
                    seq += 1;
                    // No key could be read: the row's place decides its shard.
                    match shard {
                        Some(sh) if !sh.owns(None, &file.source.canonical, row) => Item::Done { origin, end },
                        _ => unreadable(&name, origin, end, raw, message, mapping.op),
                    }
                }
                Err(e @ ReadError::File { .. }) => Item::Failed(e),
            };
            let failed = matches!(item, Item::Failed(_));
            if !matches!(item, Item::Done { .. }) {
                stats.rows_parsed.fetch_add(1, Relaxed);
            }
            let bytes = reader.bytes_read();
            stats.bytes_read.fetch_add(bytes.saturating_sub(last_bytes), Relaxed);
            last_bytes = bytes;
            if tx.blocking_send(item).is_err() || failed {
                return; // the run stopped, or this file cannot be read further
            }
        }
        if tx.blocking_send(Item::FileEnd(index)).is_err() {
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
