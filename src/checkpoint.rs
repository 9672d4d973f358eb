//! Acknowledgements and checkpoints: which rows are done, as a low watermark per source file.
//!
//! Owns: the `Tracker`, which learns of every row read and of its outcome (applied or rejected)
//! in any order, and advances each file's committed position over the longest prefix of rows that
//! are all done, writing dead letters in that order; and the checkpoint file built from it.
//! Never: counts rows to find a position (batches finish out of order), and never lets a position
//! pass a row that is not acknowledged.

use std::collections::VecDeque;

use crate::record::Origin;
use crate::source::Position;

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
                Some(r) if r[1] + 1 == s.row => r[1] = s.row,
                _ => ranges.push([s.row, s.row]),
            }
        }
        ranges
    }
}

/// An inclusive range of row numbers.
pub type RowRange = [u64; 2];

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
                .map(|r| [r[0].max(above + 1), r[1]]),
        )
        .collect();
    all.sort_unstable();
    let mut out: Vec<RowRange> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r[0] <= last[1] + 1 => last[1] = last[1].max(r[1]),
            _ => out.push(r),
        }
    }
    out
}

/// How many rows the ranges hold.
pub fn ranges_len(ranges: &[RowRange]) -> u64 {
    ranges.iter().map(|r| r[1] + 1 - r[0]).sum()
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

    fn mark(&mut self, origin: &Origin) {
        let f = &mut self.files[origin.file];
        let Some(base) = f.base_seq else { return };
        let Some(i) = origin.seq.checked_sub(base).and_then(|i| usize::try_from(i).ok()) else {
            return;
        };
        if let Some(slot) = f.slots.get_mut(i) {
            slot.done = true;
        }
    }

    pub fn applied(&mut self, origin: &Origin) {
        self.mark(origin);
        self.files[origin.file].applied += 1;
    }

    /// A row was rejected (its dead letter is already written).
    pub fn rejected(&mut self, origin: &Origin) {
        self.mark(origin);
        self.files[origin.file].rejected += 1;
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
        Position::Offset { byte: rows * 10, rows }
    }

    #[test]
    fn watermark_is_the_longest_acknowledged_prefix() {
        let mut t = Tracker::new(1, |_| (None, 0, 0));
        for s in 0..5 {
            t.read(&origin(s), pos(s + 1));
        }
        t.applied(&origin(1));
        t.applied(&origin(3));
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
        t.applied(&origin(0));
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        t.rejected(&origin(2));
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(4)));
        assert_eq!((t.files[0].applied, t.files[0].rejected), (3, 1));
        t.applied(&origin(4));
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
        t.applied(&origin(0));
        t.advance();
        assert_eq!(t.files[0].watermark, Some(pos(2)));
        assert_eq!(t.files[0].applied, 8);
    }
}

// ---------------------------------------------------------------------------------------------
// The checkpoint file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The checkpoint format version this build writes and reads.
pub const VERSION: u32 = 1;
const SLOTS: [&str; 2] = ["checkpoint-a.json", "checkpoint-b.json"];
const LOCK_FILE: &str = "lock";
const HEAD_BYTES: u64 = 64 * 1024;
const TAIL_BYTES: u64 = 4096;

/// A checkpoint problem, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "state directory {dir} is in use by another vikingsync process{holder}; two runs must never share it \
         (use a separate [state] dir per run)"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error(
        "no readable checkpoint in {dir}: {details}. Refusing to start from zero or skip rows; restore a \
         checkpoint file, or run again with --start-over to set the state aside and send every file again"
    )]
    Unreadable { dir: PathBuf, details: String },
    #[error(
        "{file} changed since its checkpoint ({why}); with [state] on_change = \"error\" the run stops. Set \
         on_change = \"reprocess\" to read it again from the start"
    )]
    Changed { file: PathBuf, why: String },
    #[error(
        "state directory {dir} was {what} while this run held it (another process or a person removed or \
         replaced it). Stopping so that two runs never share one collection's state: nothing more is committed \
         here. Check who else uses the directory, then run again"
    )]
    Replaced { dir: PathBuf, what: String },
    #[error("state directory {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
}

/// What identifies a file's content: its size, and hashes of its first and last blocks.
/// It survives a rename, notices a rewrite, and recognises a file that only grew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Seconds since the epoch; informational only (a touch without a change is not a change).
    pub modified: Option<u64>,
    pub head_len: u64,
    pub head_sha256: String,
    pub tail_len: u64,
    pub tail_sha256: String,
}

fn hash_range(file: &mut File, start: u64, len: u64) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact(&mut buf)?;
    Ok(hex::encode(Sha256::digest(&buf)))
}

impl Fingerprint {
    pub fn of(path: &Path) -> std::io::Result<Fingerprint> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let size = meta.len();
        let head_len = size.min(HEAD_BYTES);
        let tail_len = size.min(TAIL_BYTES);
        Ok(Fingerprint {
            size,
            modified: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            head_len,
            head_sha256: hash_range(&mut file, 0, head_len)?,
            tail_len,
            tail_sha256: hash_range(&mut file, size - tail_len, tail_len)?,
        })
    }
}

/// How a file stands against its checkpoint entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Same content as when checkpointed.
    Unchanged,
    /// The checkpointed content is still its prefix, and more was appended.
    Grew,
    /// Different content under this name.
    Changed(String),
}

/// Compares the file at `path` with what `old` recorded. `appendable` is false for Parquet, whose
/// footer moves when it is rewritten, so growth there is a change.
pub fn standing(path: &Path, old: &Fingerprint, appendable: bool) -> std::io::Result<Standing> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < old.size {
        return Ok(Standing::Changed(format!(
            "it shrank from {} to {size} bytes",
            old.size
        )));
    }
    if hash_range(&mut file, 0, old.head_len)? != old.head_sha256 {
        return Ok(Standing::Changed("its first bytes differ".into()));
    }
    if hash_range(&mut file, old.size - old.tail_len, old.tail_len)? != old.tail_sha256 {
        return Ok(Standing::Changed("the bytes before its old end differ".into()));
    }
    if size == old.size {
        Ok(Standing::Unchanged)
    } else if appendable {
        Ok(Standing::Grew)
    } else {
        Ok(Standing::Changed(format!(
            "it grew from {} to {size} bytes and cannot be appended to",
            old.size
        )))
    }
}

/// One source file's committed progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: PathBuf,
    pub fingerprint: Fingerprint,
    /// Every row before this position is applied or dead-lettered. `None`: nothing yet.
    pub position: Option<Position>,
    pub done: bool,
    pub applied: u64,
    pub rejected: u64,
    /// Rows after `position` already applied or dead-lettered, as inclusive row-number ranges:
    /// a resume skips them, so only rows in flight at a crash are sent again.
    #[serde(default)]
    pub acknowledged_above: Vec<RowRange>,
}

/// The whole committed state of a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Increases with every commit; the newer of the two slots wins.
    pub seq: u64,
    /// RFC 3339.
    pub committed_at: String,
    /// Bytes of `dead-letter.jsonl` written for the rows this checkpoint counts as done.
    pub dead_letter_len: u64,
    pub files: Vec<FileCheckpoint>,
    /// SHA-256 of this JSON with `checksum` empty.
    #[serde(default)]
    pub checksum: String,
}

impl Checkpoint {
    fn compute_checksum(&self) -> String {
        let mut copy = self.clone();
        copy.checksum = String::new();
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Finds the entry for `path`, or for a renamed file with the same fingerprint.
    pub fn entry_for(&self, path: &Path, fp: &Fingerprint, taken: &[bool]) -> Option<usize> {
        self.files.iter().position(|f| f.path == path).or_else(|| {
            self.files
                .iter()
                .enumerate()
                .position(|(i, f)| !taken[i] && &f.fingerprint == fp && !f.path.exists())
        })
    }
}

fn parse_slot(path: &Path) -> Result<Option<Checkpoint>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let cp: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a checkpoint ({e})", path.display()))?;
    if cp.version != VERSION {
        return Err(format!(
            "{}: format version {} (this vikingsync reads {VERSION})",
            path.display(),
            cp.version
        ));
    }
    if cp.checksum != cp.compute_checksum() {
        return Err(format!("{}: checksum mismatch (torn or edited)", path.display()));
    }
    Ok(Some(cp))
}

/// Loads the newest valid checkpoint of `dir`. A corrupt slot falls back to the other; if slots
/// exist but none is valid, that is an error, never a silent start from zero.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let mut good: Vec<Checkpoint> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for slot in SLOTS {
        match parse_slot(&dir.join(slot)) {
            Ok(Some(cp)) => good.push(cp),
            Ok(None) => {}
            Err(e) => bad.push(e),
        }
    }
    match good.into_iter().max_by_key(|c| c.seq) {
        Some(cp) => {
            for b in &bad {
                tracing::warn!(problem = %b, seq = cp.seq, "a checkpoint slot is unreadable; using the other copy");
            }
            Ok(Some(cp))
        }
        None if bad.is_empty() => Ok(None),
        None => Err(CheckpointError::Unreadable {
            dir: dir.to_path_buf(),
            details: bad.join("; "),
        }),
    }
}

/// The state directory, locked for this process.
pub struct Store {
    dir: PathBuf,
    lock: File,
    /// (device, inode) of the directory when it was locked.
    dir_id: (u64, u64),
    seq: u64,
}

/// The (device, inode) pair that names a file whatever its path.
pub fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl Store {
    /// Locks `dir` (creating it) and loads its checkpoint. The lock is an advisory `flock`, released
    /// by the kernel when the process dies, so a killed run never blocks the next one.
    pub fn open(dir: &Path) -> Result<(Store, Option<Checkpoint>), CheckpointError> {
        let mut store = Store::lock(dir)?;
        let cp = load(dir)?;
        store.seq = cp.as_ref().map_or(0, |c| c.seq);
        Ok((store, cp))
    }

    /// Locks `dir` (creating it), without reading its checkpoint.
    fn lock(dir: &Path) -> Result<Store, CheckpointError> {
        let io = |source| CheckpointError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CheckpointError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        lock.set_len(0).map_err(io)?;
        lock.seek(SeekFrom::Start(0)).map_err(io)?;
        let _ = write!(lock, "{}", std::process::id());
        let dir_id = file_id(&std::fs::metadata(dir).map_err(io)?);
        Ok(Store {
            dir: dir.to_path_buf(),
            lock,
            dir_id,
            seq: 0,
        })
    }

    /// Locks `dir` like [`Store::open`], then sets its checkpoint slots and `others` aside (renamed
    /// with a `.set-aside-<time>` suffix: nothing is deleted) so the run starts from the beginning.
    pub fn open_set_aside(dir: &Path, others: &[&str]) -> Result<(Store, Option<Checkpoint>), CheckpointError> {
        let (store, _) = match Store::open(dir) {
            Err(CheckpointError::Unreadable { .. }) => (Store::lock(dir)?, None),
            other => other?,
        };
        let suffix = chrono::Utc::now().format("set-aside-%Y%m%dT%H%M%S%.3fZ").to_string();
        for name in SLOTS.iter().chain(others) {
            let from = dir.join(name);
            if from.exists() {
                let to = dir.join(format!("{name}.{suffix}"));
                std::fs::rename(&from, &to).map_err(|source| CheckpointError::Io {
                    dir: dir.to_path_buf(),
                    source,
                })?;
                tracing::warn!(from = %from.display(), to = %to.display(), "set aside; starting from the beginning");
            }
        }
        Ok((store, None))
    }

    /// Checks that the directory and the lock file this run locked are still the ones at their
    /// paths. A lock is only as good as its inode: once the directory is deleted and made again,
    /// another run can lock the new one, and both would send and commit.
    pub fn check_still_held(&self) -> Result<(), CheckpointError> {
        let replaced = |what: &str| CheckpointError::Replaced {
            dir: self.dir.clone(),
            what: what.to_string(),
        };
        match std::fs::metadata(&self.dir) {
            Ok(m) if file_id(&m) == self.dir_id => {}
            Ok(_) => return Err(replaced("replaced by another directory")),
            Err(_) => return Err(replaced("deleted")),
        }
        let held = self.lock.metadata().map_err(|source| CheckpointError::Io {
            dir: self.dir.clone(),
            source,
        })?;
        match std::fs::metadata(self.dir.join(LOCK_FILE)) {
            Ok(m) if file_id(&m) == file_id(&held) => Ok(()),
            Ok(_) => Err(replaced("given a new lock file")),
            Err(_) => Err(replaced("left without its lock file")),
        }
    }

    /// Writes `cp` crash-safely (temp file, fsync, rename, fsync of the directory) into the older
    /// of the two slots, so the previous commit survives a torn write.
    pub fn commit(&mut self, cp: &mut Checkpoint) -> Result<(), CheckpointError> {
        self.check_still_held()?;
        self.seq += 1;
        cp.version = VERSION;
        cp.seq = self.seq;
        cp.committed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        cp.checksum = String::new();
        cp.checksum = cp.compute_checksum();
        let bytes = serde_json::to_vec_pretty(cp).map_err(|e| CheckpointError::Io {
            dir: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let slot = self.dir.join(SLOTS[(self.seq % 2) as usize]);
        let io = |source| CheckpointError::Io {
            dir: self.dir.clone(),
            source,
        };
        let mut file = atomic_write_file::AtomicWriteFile::open(&slot).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.commit().map_err(io)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    fn sample(dl: u64) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            seq: 0,
            committed_at: String::new(),
            dead_letter_len: dl,
            files: vec![],
            checksum: String::new(),
        }
    }

    #[test]
    fn a_torn_newest_slot_falls_back_to_the_previous_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut store, cp) = Store::open(dir.path()).expect("open");
            assert!(cp.is_none());
            store.commit(&mut sample(10)).expect("commit 1");
            store.commit(&mut sample(20)).expect("commit 2");
        }
        assert_eq!(load(dir.path()).expect("load").expect("some").dead_letter_len, 20);
        // Tear the newest slot (seq 2 → slot index 0) half-way.
        let newest = dir.path().join(SLOTS[0]);
        let bytes = std::fs::read(&newest).expect("read");
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).expect("tear");
        let cp = load(dir.path()).expect("falls back").expect("some");
        assert_eq!((cp.seq, cp.dead_letter_len), (1, 10));
        // A checksum mismatch (an edit or bit rot) is caught too.
        let other = dir.path().join(SLOTS[1]);
        let text = std::fs::read_to_string(&other)
            .expect("read")
            .replace("\"dead_letter_len\": 10", "\"dead_letter_len\": 11");
        std::fs::write(&other, text).expect("edit");
        let err = load(dir.path()).expect_err("both bad");
        assert!(err.to_string().contains("Refusing to start from zero"), "{err}");
        // The next commit after a fall-back goes on from the good sequence number.
        std::fs::remove_file(&newest).expect("rm");
        std::fs::remove_file(&other).expect("rm");
        assert!(load(dir.path()).expect("empty").is_none());
    }

    #[test]
    fn the_lock_keeps_a_second_process_out_and_dies_with_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let err = Store::open(dir.path()).err().expect("second open refused");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(store);
        Store::open(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn fingerprints_tell_growth_from_rewrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "id\n1\n2\n").expect("write");
        let fp = Fingerprint::of(&p).expect("fp");
        assert_eq!(standing(&p, &fp, true).expect("s"), Standing::Unchanged);
        std::fs::write(&p, "id\n1\n2\n3\n").expect("append");
        assert_eq!(standing(&p, &fp, true).expect("s"), Standing::Grew);
        assert!(matches!(standing(&p, &fp, false).expect("s"), Standing::Changed(_)));
        std::fs::write(&p, "id\n1\n9\n3\n").expect("rewrite");
        assert!(matches!(standing(&p, &fp, true).expect("s"), Standing::Changed(_)));
        std::fs::write(&p, "id\n1\n").expect("shrink");
        assert!(matches!(standing(&p, &fp, true).expect("s"), Standing::Changed(_)));
    }
}

/// The pid of a process holding the state directory's lock, if one does.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Some(pid.trim().to_string())
        }
    }
}
