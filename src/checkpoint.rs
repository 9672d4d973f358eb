//! Acknowledgements and checkpoints: which rows are done, as a low watermark per source file.
//!
//! Owns: the `Tracker`, which learns of every row read and of its outcome (applied or rejected)
//! in any order, and advances each file's committed position over the longest prefix of rows that
//! are all done, writing dead letters in that order; and the checkpoint file built from it.
//! Never: counts rows to find a position (batches finish out of order), and never lets a position
//! pass a row that is not acknowledged.

use std::collections::VecDeque;

use crate::deadletter::{DeadLetter, Entry};
use crate::record::Origin;
use crate::source::Position;

#[derive(Debug)]
enum Slot {
    Pending,
    Applied,
    Rejected(Box<Entry>),
}

/// Progress of one source file in this run.
#[derive(Debug)]
pub struct FileProgress {
    /// Sequence number of the first row in `slots`.
    base_seq: Option<u64>,
    /// Rows read and not yet below the watermark, with the position after each.
    slots: VecDeque<(Position, Slot)>,
    /// The committed position: every row before it is applied or dead-lettered.
    pub watermark: Option<Position>,
    /// The reader reached the end of the file.
    pub read_to_end: bool,
    pub applied: u64,
    pub rejected: u64,
}

impl FileProgress {
    /// All rows read and all acknowledged.
    pub fn done(&self) -> bool {
        self.read_to_end && self.slots.is_empty()
    }
}

/// Tracks every file's acknowledgements.
#[derive(Debug, Default)]
pub struct Tracker {
    pub files: Vec<FileProgress>,
}

impl Tracker {
    pub fn new(file_count: usize, start: impl Fn(usize) -> Option<Position>) -> Tracker {
        Tracker {
            files: (0..file_count)
                .map(|i| FileProgress {
                    base_seq: None,
                    slots: VecDeque::new(),
                    watermark: start(i),
                    read_to_end: false,
                    applied: 0,
                    rejected: 0,
                })
                .collect(),
        }
    }

    /// A row was read. Rows of a file arrive in order with consecutive sequence numbers.
    pub fn read(&mut self, origin: &Origin, end: Position) {
        let f = &mut self.files[origin.file];
        if f.base_seq.is_none() || f.slots.is_empty() {
            f.base_seq = Some(origin.seq);
        }
        debug_assert_eq!(f.base_seq.map(|b| b + f.slots.len() as u64), Some(origin.seq));
        f.slots.push_back((end, Slot::Pending));
    }

    fn slot(&mut self, origin: &Origin) -> Option<&mut Slot> {
        let f = &mut self.files[origin.file];
        let i = origin.seq.checked_sub(f.base_seq?)?;
        f.slots.get_mut(usize::try_from(i).ok()?).map(|(_, s)| s)
    }

    pub fn applied(&mut self, origin: &Origin) {
        if let Some(s) = self.slot(origin) {
            *s = Slot::Applied;
        }
        self.files[origin.file].applied += 1;
    }

    pub fn rejected(&mut self, origin: &Origin, entry: Entry) {
        if let Some(s) = self.slot(origin) {
            *s = Slot::Rejected(Box::new(entry));
        }
        self.files[origin.file].rejected += 1;
    }

    pub fn read_to_end(&mut self, file: usize) {
        self.files[file].read_to_end = true;
    }

    /// Moves every watermark over its done prefix, writing those rows' dead letters in order.
    pub fn advance(&mut self, dead: &mut DeadLetter) -> std::io::Result<()> {
        for f in &mut self.files {
            while let Some((_, slot)) = f.slots.front() {
                if matches!(slot, Slot::Pending) {
                    break;
                }
                let Some((end, slot)) = f.slots.pop_front() else { break };
                if let Slot::Rejected(entry) = slot {
                    dead.append(&entry)?;
                }
                f.watermark = Some(end);
                f.base_seq = f.base_seq.map(|b| b + 1);
            }
        }
        Ok(())
    }

    /// Rows read but not yet acknowledged, across all files.
    pub fn pending(&self) -> usize {
        self.files.iter().map(|f| f.slots.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(seq: u64) -> Origin {
        Origin {
            file: 0,
            row: seq + 1,
            seq,
        }
    }

    fn pos(rows: u64) -> Position {
        Position::Offset { byte: rows * 10, rows }
    }

    #[test]
    fn watermark_is_the_longest_acknowledged_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dl = DeadLetter::open(dir.path(), 0).expect("dl");
        let mut t = Tracker::new(1, |_| None);
        for s in 0..5 {
            t.read(&origin(s), pos(s + 1));
        }
        t.applied(&origin(1));
        t.applied(&origin(3));
        t.advance(&mut dl).expect("advance");
        assert_eq!(t.files[0].watermark, None, "row 0 is still in flight");
        t.applied(&origin(0));
        t.advance(&mut dl).expect("advance");
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        let entry = Entry {
            file: "f".into(),
            row: 3,
            key: None,
            op: None,
            error: "x".into(),
            code: None,
            request_id: None,
            record: serde_json::Value::Null,
        };
        t.rejected(&origin(2), entry);
        t.advance(&mut dl).expect("advance");
        assert_eq!(t.files[0].watermark, Some(pos(4)));
        assert!(
            !dl.is_empty(),
            "the rejected row was written when the watermark passed it"
        );
        t.applied(&origin(4));
        t.read_to_end(0);
        t.advance(&mut dl).expect("advance");
        assert!(t.files[0].done());
        assert_eq!(t.pending(), 0);
    }
}
