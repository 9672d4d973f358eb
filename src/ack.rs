//! Acknowledgement accounting: which rows are done, as a low watermark per source file.
//!
//! Owns: the [`Tracker`], which learns of every row read and of its outcome (applied or
//! rejected) in any order, and advances each file's watermark over the longest prefix of rows
//! that are all done; the acknowledged rows above a watermark, as [`RowRange`]s; and the
//! applied/rejected counts. An acknowledgement for a row it is not waiting for is an
//! [`AckError`], never ignored.
//! Never: touches the filesystem (the durable checkpoint is `checkpoint`'s), counts rows to find
//! a position (batches finish out of order), or lets a watermark pass a row that is not
//! acknowledged.

use std::collections::VecDeque;

use crate::record::Origin;
use crate::source::Position;

/// An inclusive range of row numbers.
pub type RowRange = [u64; 2];

/// An acknowledgement the tracker cannot place: a bug in the caller's bookkeeping. Nothing is
/// changed when one is returned, so the watermark never passes the row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("row {row} (seq {seq}) of file #{file} was acknowledged, but the run has only {files} files")]
    UnknownFile {
        file: usize,
        row: u64,
        seq: u64,
        files: usize,
    },
    #[error(
        "row {row} (seq {seq}) of file #{file} was acknowledged, but it is not waiting for one (never read, or already below the watermark)"
    )]
    NotPending { file: usize, row: u64, seq: u64 },
    #[error("row {row} (seq {seq}) of file #{file} was acknowledged, but seq {seq} was read as row {pending_row}")]
    WrongRow {
        file: usize,
        row: u64,
        seq: u64,
        pending_row: u64,
    },
    #[error("row {row} (seq {seq}) of file #{file} was acknowledged twice")]
    Twice { file: usize, row: u64, seq: u64 },
}

/// Why a list of row ranges cannot be acknowledgements above a watermark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range {index} ({first}-{last}) ends before it starts")]
    Reversed { index: usize, first: u64, last: u64 },
    #[error("range {index} ({first}-{last}) is not above the watermark (row {above} and before are done)")]
    BelowWatermark {
        index: usize,
        first: u64,
        last: u64,
        above: u64,
    },
    #[error(
        "range {index} ({first}-{last}) overlaps or comes before the range before it (which ends at {previous_last})"
    )]
    Unordered {
        index: usize,
        first: u64,
        last: u64,
        previous_last: u64,
    },
    #[error("the ranges hold more rows than a u64 can count")]
    TooManyRows,
}

/// One row read and not yet below the watermark.
#[derive(Debug)]
struct Slot {
    row: u64,
    end: Position,
    done: bool,
}

/// Progress of one source file in this run.
#[derive(Debug)]
pub struct FileProgress {
    /// Sequence number of the first row in `slots`.
    base_seq: Option<u64>,
    /// Rows read and not yet below the watermark, in order.
    slots: VecDeque<Slot>,
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

    /// Rows above the watermark that are already acknowledged, as inclusive ranges of row
    /// numbers: a resume skips them, so a crash re-sends only what was in flight.
    pub fn acknowledged_above(&self) -> Vec<RowRange> {
        let mut ranges: Vec<RowRange> = Vec::new();
        for s in self.slots.iter().filter(|s| s.done) {
            match ranges.last_mut() {
                Some(r) if r[1].checked_add(1) == Some(s.row) => r[1] = s.row,
                _ => ranges.push([s.row, s.row]),
            }
        }
        ranges
    }
}

/// Whether `row` is in one of the sorted, disjoint `ranges`.
pub fn in_ranges(ranges: &[RowRange], row: u64) -> bool {
    let i = ranges.partition_point(|r| r[0] <= row);
    i > 0 && ranges[i - 1][1] >= row
}

/// The union of `ours` with the parts of `inherited` after row `above`, as sorted, disjoint,
/// coalesced ranges. A resumed run must keep the acknowledgements it inherited for rows it has
/// not read yet, or their dead letters would be written again after the next restart.
pub fn merge_ranges(ours: &[RowRange], inherited: &[RowRange], above: u64) -> Vec<RowRange> {
    let mut all: Vec<RowRange> = ours
        .iter()
        .copied()
        .chain(
            inherited
                .iter()
                .filter(|r| r[1] > above)
                .map(|r| [r[0].max(above.saturating_add(1)), r[1]]),
        )
        .collect();
    all.sort_unstable();
    let mut out: Vec<RowRange> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r[0] <= last[1].saturating_add(1) => last[1] = last[1].max(r[1]),
            _ => out.push(r),
        }
    }
    out
}

/// How many rows the ranges hold. Ranges must be valid (see [`checked_ranges_len`] for ranges
/// that come from outside); an impossible total saturates rather than wraps.
pub fn ranges_len(ranges: &[RowRange]) -> u64 {
    ranges
        .iter()
        .map(|r| r[1].saturating_sub(r[0]).saturating_add(1))
        .fold(0u64, u64::saturating_add)
}

/// Checks that `ranges` can be acknowledgements above a watermark after row `above`: each
/// ordered (`first <= last`), all strictly after `above`, sorted and not overlapping. Returns
/// how many rows they hold.
pub fn checked_ranges_len(ranges: &[RowRange], above: u64) -> Result<u64, RangeError> {
    let mut total = 0u64;
    let mut previous: Option<u64> = None;
    for (index, &[first, last]) in ranges.iter().enumerate() {
        if first > last {
            return Err(RangeError::Reversed { index, first, last });
        }
        if first <= above {
            return Err(RangeError::BelowWatermark {
                index,
                first,
                last,
                above,
            });
        }
        if let Some(previous_last) = previous
            && first <= previous_last
        {
            return Err(RangeError::Unordered {
                index,
                first,
                last,
                previous_last,
            });
        }
        previous = Some(last);
        let len = (last - first).checked_add(1).ok_or(RangeError::TooManyRows)?;
        total = total.checked_add(len).ok_or(RangeError::TooManyRows)?;
    }
    Ok(total)
}

/// Tracks every file's acknowledgements.
#[derive(Debug, Default)]
pub struct Tracker {
    pub files: Vec<FileProgress>,
    /// Slots across all files (asked for on every row taken, so kept, not summed).
    pending: usize,
}

impl Tracker {
    /// `start(i)` gives file `i`'s committed position and its applied and rejected counts so far.
    pub fn new(file_count: usize, start: impl Fn(usize) -> (Option<Position>, u64, u64)) -> Tracker {
        Tracker {
            files: (0..file_count)
                .map(|i| {
                    let (watermark, applied, rejected) = start(i);
                    FileProgress {
                        base_seq: None,
                        slots: VecDeque::new(),
                        watermark,
                        read_to_end: false,
                        applied,
                        rejected,
                    }
                })
                .collect(),
            pending: 0,
        }
    }

    /// A row was read. Rows of a file arrive in order with consecutive sequence numbers.
    pub fn read(&mut self, origin: &Origin, end: Position) {
        self.push(origin, end, false);
    }

    /// A row the checkpoint says is already acknowledged: it only holds its place.
    pub fn already_done(&mut self, origin: &Origin, end: Position) {
        self.push(origin, end, true);
    }

    fn push(&mut self, origin: &Origin, end: Position, done: bool) {
        let f = &mut self.files[origin.file];
        if f.base_seq.is_none() || f.slots.is_empty() {
            f.base_seq = Some(origin.seq);
        }
        debug_assert_eq!(f.base_seq.map(|b| b + f.slots.len() as u64), Some(origin.seq));
        self.pending += 1;
        f.slots.push_back(Slot {
            row: origin.row,
            end,
            done,
        });
    }

    /// Marks the pending row `origin` done, or says why it cannot (changing nothing).
    fn mark(&mut self, origin: &Origin) -> Result<&mut FileProgress, AckError> {
        let &Origin { file, row, seq } = origin;
        let files = self.files.len();
        let f = self
            .files
            .get_mut(file)
            .ok_or(AckError::UnknownFile { file, row, seq, files })?;
        let not_pending = AckError::NotPending { file, row, seq };
        let i = f
            .base_seq
            .and_then(|base| seq.checked_sub(base))
            .and_then(|i| usize::try_from(i).ok())
            .ok_or(not_pending.clone())?;
        let slot = f.slots.get_mut(i).ok_or(not_pending)?;
        if slot.row != row {
            return Err(AckError::WrongRow {
                file,
                row,
                seq,
                pending_row: slot.row,
            });
        }
        if slot.done {
            return Err(AckError::Twice { file, row, seq });
        }
        slot.done = true;
        Ok(f)
    }

    /// A row was applied.
    pub fn applied(&mut self, origin: &Origin) -> Result<(), AckError> {
        let f = self.mark(origin)?;
        f.applied = f.applied.saturating_add(1);
        Ok(())
    }

    /// A row was rejected (its dead letter is already written).
    pub fn rejected(&mut self, origin: &Origin) -> Result<(), AckError> {
        let f = self.mark(origin)?;
        f.rejected = f.rejected.saturating_add(1);
        Ok(())
    }

    pub fn read_to_end(&mut self, file: usize) {
        self.files[file].read_to_end = true;
    }

    /// Moves every watermark over its acknowledged prefix.
    pub fn advance(&mut self) {
        for f in &mut self.files {
            while f.slots.front().is_some_and(|s| s.done) {
                if let Some(slot) = f.slots.pop_front() {
                    f.watermark = Some(slot.end);
                    f.base_seq = f.base_seq.map(|b| b + 1);
                    self.pending -= 1;
                }
            }
        }
    }

    /// Rows read but not yet below a watermark, across all files.
    pub fn pending(&self) -> usize {
        self.pending
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
        Position::Offset {
            byte: rows * 10,
            rows,
            line: None,
        }
    }

    #[test]
    fn watermark_is_the_longest_acknowledged_prefix() {
        let mut t = Tracker::new(1, |_| (None, 0, 0));
        for s in 0..5 {
            t.read(&origin(s), pos(s + 1));
        }
        t.applied(&origin(1)).expect("ack");
        t.applied(&origin(3)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, None, "row 0 is still in flight");
        assert_eq!(t.files[0].acknowledged_above(), vec![[2, 2], [4, 4]]);
        assert!(in_ranges(&[[2, 2], [4, 9]], 7) && !in_ranges(&[[2, 2], [4, 9]], 3) && !in_ranges(&[], 1));
        assert_eq!(ranges_len(&[[2, 2], [4, 9]]), 7);
        // Inherited acknowledgements beyond what this run has read survive a commit.
        assert_eq!(
            merge_ranges(&[[5, 6]], &[[3, 4], [8, 9], [20, 30]], 4),
            vec![[5, 6], [8, 9], [20, 30]]
        );
        assert_eq!(merge_ranges(&[[5, 7]], &[[2, 9]], 4), vec![[5, 9]]);
        t.applied(&origin(0)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        t.rejected(&origin(2)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(4)));
        assert_eq!((t.files[0].applied, t.files[0].rejected), (3, 1));
        t.applied(&origin(4)).expect("ack");
        t.read_to_end(0);
        t.advance();
        assert!(t.files[0].done());
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn rows_done_before_a_crash_hold_their_place_without_counting() {
        let mut t = Tracker::new(1, |_| (Some(pos(0)), 7, 1));
        t.read(&origin(0), pos(1));
        t.already_done(&origin(1), pos(2));
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(0)));
        t.applied(&origin(0)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        assert_eq!(t.files[0].applied, 8);
    }

    #[test]
    fn out_of_order_acknowledgements_advance_only_over_a_contiguous_prefix() {
        let mut t = Tracker::new(1, |_| (None, 0, 0));
        for s in 0..8 {
            t.read(&origin(s), pos(s + 1));
        }
        // Acknowledge back to front: nothing moves until row 1 (seq 0) is in.
        for s in (1..8).rev() {
            t.applied(&origin(s)).expect("ack");
            t.advance();
            assert_eq!(
                t.files[0].watermark, None,
                "seq {s} acknowledged, seq 0 still in flight"
            );
            assert_eq!(t.pending(), 8);
        }
        assert_eq!(t.files[0].acknowledged_above(), vec![[2, 8]]);
        t.applied(&origin(0)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(8)));
        assert!(t.files[0].acknowledged_above().is_empty());
        assert_eq!(t.pending(), 0);

        // A hole in the middle stops the watermark at the row before it.
        for s in 8..12 {
            t.read(&origin(s), pos(s + 1));
        }
        for s in [8, 9, 11] {
            t.applied(&origin(s)).expect("ack");
        }
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(10)), "rows 9 and 10 done, row 11 not");
        assert_eq!(t.files[0].acknowledged_above(), vec![[12, 12]]);
        assert_eq!(t.pending(), 2);
    }

    #[test]
    fn ranges_merge_coalesce_and_keep_inherited_rows_above_the_watermark() {
        // Adjacent and overlapping ranges become one; order of input does not matter.
        assert_eq!(
            merge_ranges(&[[10, 12], [3, 4]], &[[5, 6], [11, 20]], 0),
            vec![[3, 6], [10, 20]]
        );
        // Inherited ranges at or below the watermark are dropped, straddling ones are cut.
        assert_eq!(merge_ranges(&[], &[[1, 3], [5, 9]], 6), vec![[7, 9]]);
        assert_eq!(merge_ranges(&[], &[[1, 3]], 3), Vec::<RowRange>::new());
        // The end of the number line neither wraps nor panics.
        assert_eq!(
            merge_ranges(&[[u64::MAX, u64::MAX]], &[[1, u64::MAX]], u64::MAX - 2),
            vec![[u64::MAX - 1, u64::MAX]]
        );
        assert_eq!(ranges_len(&[[0, u64::MAX]]), u64::MAX, "saturates, never wraps");
        assert_eq!(checked_ranges_len(&[[3, 4], [6, 6]], 2), Ok(3));
        assert_eq!(checked_ranges_len(&[], 0), Ok(0));
        assert!(matches!(
            checked_ranges_len(&[[5, 4]], 0),
            Err(RangeError::Reversed { index: 0, .. })
        ));
        assert!(matches!(
            checked_ranges_len(&[[3, 4]], 3),
            Err(RangeError::BelowWatermark { index: 0, .. })
        ));
        assert!(matches!(
            checked_ranges_len(&[[3, 6], [6, 8]], 0),
            Err(RangeError::Unordered { index: 1, .. })
        ));
        assert!(matches!(
            checked_ranges_len(&[[9, 10], [3, 4]], 0),
            Err(RangeError::Unordered { index: 1, .. })
        ));
        assert_eq!(checked_ranges_len(&[[1, u64::MAX]], 0), Ok(u64::MAX));
        assert_eq!(
            checked_ranges_len(&[[0, u64::MAX]], 0).ok(),
            None,
            "first row 0 is at the watermark"
        );
        assert_eq!(
            checked_ranges_len(&[[1, u64::MAX - 1], [u64::MAX, u64::MAX]], 0),
            Ok(u64::MAX),
            "the most rows ranges above a watermark can hold, counted without wrapping"
        );
    }

    #[test]
    fn a_resume_with_inherited_ranges_holds_their_places_and_keeps_later_ones() {
        // The checkpoint: rows 1-2 done, rows 4-5 and 9-10 acknowledged above it.
        let inherited: Vec<RowRange> = vec![[4, 5], [9, 10]];
        let mut t = Tracker::new(1, |_| (Some(pos(2)), 3, 1));
        // The reader goes on from row 3 (seq numbers start again at 0 in a new run).
        let at = |seq: u64| Origin {
            file: 0,
            row: seq + 3,
            seq,
        };
        for seq in 0..4 {
            let o = at(seq);
            if in_ranges(&inherited, o.row) {
                t.already_done(&o, pos(o.row));
            } else {
                t.read(&o, pos(o.row));
            }
        }
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(2)), "row 3 is in flight");
        assert_eq!(t.files[0].acknowledged_above(), vec![[4, 5]]);
        let wm = t.files[0].watermark.map_or(0, |p| p.rows());
        assert_eq!(
            merge_ranges(&t.files[0].acknowledged_above(), &inherited, wm),
            vec![[4, 5], [9, 10]],
            "rows 9-10 are not read yet but stay acknowledged"
        );
        // A row that holds its place was acknowledged by an earlier run: acknowledging it again
        // is a bookkeeping error.
        assert_eq!(
            t.applied(&at(1)),
            Err(AckError::Twice {
                file: 0,
                row: 4,
                seq: 1
            })
        );
        t.applied(&at(0)).expect("ack");
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(5)));
        assert_eq!(
            merge_ranges(&t.files[0].acknowledged_above(), &inherited, 5),
            vec![[9, 10]]
        );
        assert_eq!(
            (t.files[0].applied, t.files[0].rejected),
            (4, 1),
            "held places are not counted"
        );
        assert_eq!(t.pending(), 1);
    }

    #[test]
    fn the_pending_counter_matches_the_rows_above_the_watermarks() {
        let mut t = Tracker::new(3, |_| (None, 0, 0));
        let mut seq = 0u64;
        let mut origins = Vec::new();
        // Three files read one after the other (sequence numbers run across the files).
        for file in 0..3 {
            for row in 1..=6u64 {
                let o = Origin { file, row, seq };
                seq += 1;
                if row == 2 && file == 1 {
                    t.already_done(&o, pos(row));
                } else {
                    t.read(&o, pos(row));
                    origins.push(o);
                }
            }
        }
        let slow_count = |t: &Tracker| t.files.iter().map(|f| f.slots.len()).sum::<usize>();
        assert_eq!(t.pending(), 18);
        // Acknowledge in a scrambled but deterministic order, checking after every step.
        let n = origins.len();
        for k in 0..n {
            let o = &origins[(k * 7) % n];
            if k % 2 == 0 {
                t.applied(o).expect("ack");
            } else {
                t.rejected(o).expect("ack");
            }
            if k % 3 == 0 {
                t.advance();
            }
            assert_eq!(t.pending(), slow_count(&t), "after {k} acknowledgements");
        }
        t.advance();
        assert_eq!(t.pending(), 0);
        assert_eq!(slow_count(&t), 0);
        let counted: u64 = t.files.iter().map(|f| f.applied + f.rejected).sum();
        assert_eq!(counted, 17, "the held place is not counted");
    }

    #[test]
    fn acknowledging_a_row_the_tracker_is_not_waiting_for_is_an_error() {
        let mut t = Tracker::new(2, |_| (None, 0, 0));
        for s in 0..3 {
            t.read(&origin(s), pos(s + 1));
        }
        // A file the run does not have.
        let stray = Origin {
            file: 5,
            row: 1,
            seq: 0,
        };
        assert_eq!(
            t.applied(&stray),
            Err(AckError::UnknownFile {
                file: 5,
                row: 1,
                seq: 0,
                files: 2
            })
        );
        // A file with nothing read, and a seq beyond what was read.
        assert!(matches!(
            t.rejected(&Origin {
                file: 1,
                row: 1,
                seq: 3
            }),
            Err(AckError::NotPending { file: 1, .. })
        ));
        assert!(matches!(
            t.applied(&origin(3)),
            Err(AckError::NotPending { seq: 3, .. })
        ));
        // The right seq with the wrong row.
        assert_eq!(
            t.applied(&Origin {
                file: 0,
                row: 9,
                seq: 1
            }),
            Err(AckError::WrongRow {
                file: 0,
                row: 9,
                seq: 1,
                pending_row: 2
            })
        );
        // Twice: once pending, and once below the watermark.
        t.applied(&origin(1)).expect("ack");
        assert_eq!(
            t.rejected(&origin(1)),
            Err(AckError::Twice {
                file: 0,
                row: 2,
                seq: 1
            })
        );
        t.applied(&origin(0)).expect("ack");
        t.advance();
        assert!(matches!(
            t.applied(&origin(0)),
            Err(AckError::NotPending { seq: 0, .. })
        ));
        // None of the refused acknowledgements changed anything.
        assert_eq!((t.files[0].applied, t.files[0].rejected), (2, 0));
        assert_eq!((t.files[1].applied, t.files[1].rejected), (0, 0));
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        assert_eq!(t.pending(), 1);
        // The message says what happened, for the "please report this" error.
        let msg = AckError::Twice {
            file: 0,
            row: 2,
            seq: 1,
        }
        .to_string();
        assert!(msg.contains("row 2") && msg.contains("twice"), "{msg}");
    }
}
