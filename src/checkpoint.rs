//! The durable store: the locked state directory and the checkpoint file in it.
//!
//! Owns: the checkpoint format ([`Checkpoint`], [`FileCheckpoint`], [`VERSION`]); the two A/B
//! slots, written crash-safely with a checksum, and loading the newest valid one, refusing a slot
//! whose numbers are inconsistent or would overflow; file [`Fingerprint`]s and how a file stands
//! against one; the state directory's lock and the checks that this run still holds it.
//! Never: decides what is acknowledged (that is `ack`'s `Tracker`; this module stores what it is
//! given), starts from zero when slots exist but none is valid, or does unchecked arithmetic on a
//! number read from a file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ack::RowRange;
use crate::source::Position;

/// The checkpoint format version this build writes and reads.
pub const VERSION: u32 = 1;
const SLOTS: [&str; 2] = ["checkpoint-a.json", "checkpoint-b.json"];
const LOCK_FILE: &str = "lock";
const HEAD_BYTES: u64 = 64 * 1024;
const TAIL_BYTES: u64 = 4096;
/// The largest row count, byte offset or sequence number a checkpoint may hold: far beyond any
/// real file, and leaves room for the `+ 1`s of the run that resumes from it.
pub const MAX_NUMBER: u64 = i64::MAX as u64;

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
    /// One slot refused; `load` falls back to the other, and says `Unreadable` if none is left.
    #[error("checkpoint slot {slot}: {problem}")]
    Slot { slot: PathBuf, problem: SlotProblem },
}

/// Why one checkpoint slot cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotProblem {
    #[error("cannot read it ({0})")]
    Read(String),
    #[error("not a checkpoint ({0})")]
    NotACheckpoint(String),
    #[error("format version {0} (this vikingsync reads {VERSION})")]
    Version(u32),
    #[error("checksum mismatch (torn or edited)")]
    Checksum,
    /// The checksum holds, but the numbers cannot describe a real run.
    #[error("`{field}` {why}: the numbers in this checkpoint do not add up")]
    Inconsistent { field: String, why: String },
}

fn inconsistent(field: impl Into<String>, why: impl Into<String>) -> SlotProblem {
    SlotProblem::Inconsistent {
        field: field.into(),
        why: why.into(),
    }
}

/// What identifies a file's content: its size, and hashes of its first and last blocks.
/// It survives a rename, notices a rewrite, and recognises a file that only grew.
///
/// An object (`s3://…`, `tos://…`) is identified by its URL, its size and its ETag instead
/// (`head_len` and `tail_len` 0): objects are never appended to or renamed, only replaced, and a
/// replacement has a new ETag. Checkpoints written before objects existed have no `etag` and read
/// as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Seconds since the epoch; informational only (a touch without a change is not a change).
    pub modified: Option<u64>,
    pub head_len: u64,
    pub head_sha256: String,
    pub tail_len: u64,
    pub tail_sha256: String,
    /// The object's ETag as the store sent it (quotes included); only for objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
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
            etag: None,
        })
    }

    /// The fingerprint of an object as listed. An object without an ETag (a store that sends
    /// none) is identified by its size alone.
    pub fn of_object(size: u64, etag: Option<String>, modified: Option<u64>) -> Fingerprint {
        Fingerprint {
            size,
            modified,
            head_len: 0,
            head_sha256: String::new(),
            tail_len: 0,
            tail_sha256: String::new(),
            etag: Some(etag.unwrap_or_default()),
        }
    }

    /// Whether this fingerprint is an object's.
    pub fn is_object(&self) -> bool {
        self.etag.is_some()
    }
}

/// How an object stands against its checkpoint entry: the same ETag and size is the same object;
/// anything else was rewritten (objects are never appended to).
pub fn object_standing(old: &Fingerprint, now: &Fingerprint) -> Standing {
    match (&old.etag, &now.etag) {
        (Some(a), Some(b)) if a == b && old.size == now.size => Standing::Unchanged,
        (Some(a), Some(b)) if a != b => Standing::Changed(format!(
            "its ETag changed from {a} to {b} ({} → {} bytes): the object was rewritten",
            old.size, now.size
        )),
        (Some(_), Some(_)) => Standing::Changed(format!(
            "its size changed from {} to {} bytes under the same ETag",
            old.size, now.size
        )),
        _ => Standing::Changed("the checkpoint entry is not an object's".into()),
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
    let Some(tail_start) = old.size.checked_sub(old.tail_len) else {
        return Ok(Standing::Changed(format!(
            "its checkpoint records a {}-byte tail of a {}-byte file",
            old.tail_len, old.size
        )));
    };
    if old.head_len > old.size {
        return Ok(Standing::Changed(format!(
            "its checkpoint records a {}-byte head of a {}-byte file",
            old.head_len, old.size
        )));
    }
    if hash_range(&mut file, 0, old.head_len)? != old.head_sha256 {
        return Ok(Standing::Changed("its first bytes differ".into()));
    }
    if hash_range(&mut file, tail_start, old.tail_len)? != old.tail_sha256 {
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
                // Objects are never renamed (a copy is a new object): matched by URL only.
                .position(|(i, f)| !taken[i] && !fp.is_object() && &f.fingerprint == fp && !f.path.exists())
        })
    }
}

impl Checkpoint {
    /// Checks every number against the others, with checked arithmetic: positions, row counts,
    /// ranges, counts and lengths must describe a possible run, and their sums must fit. The
    /// checksum only proves the file is as written, not that what was written makes sense.
    pub fn check_numbers(&self) -> Result<(), SlotProblem> {
        let big = |field: String, n: u64| {
            if n > MAX_NUMBER {
                Err(inconsistent(field, format!("is {n}, more than {MAX_NUMBER}")))
            } else {
                Ok(())
            }
        };
        big("seq".into(), self.seq)?;
        big("dead_letter_len".into(), self.dead_letter_len)?;
        let (mut rows_total, mut applied_total, mut rejected_total) = (0u64, 0u64, 0u64);
        for (i, f) in self.files.iter().enumerate() {
            let field = |name: &str| format!("files[{i}].{name}");
            let fp = &f.fingerprint;
            big(field("fingerprint.size"), fp.size)?;
            if fp.head_len > fp.size.min(HEAD_BYTES) {
                return Err(inconsistent(
                    field("fingerprint.head_len"),
                    format!("is {} for a {}-byte file (at most {HEAD_BYTES})", fp.head_len, fp.size),
                ));
            }
            if fp.tail_len > fp.size.min(TAIL_BYTES) {
                return Err(inconsistent(
                    field("fingerprint.tail_len"),
                    format!("is {} for a {}-byte file (at most {TAIL_BYTES})", fp.tail_len, fp.size),
                ));
            }
            let rows = match f.position {
                None => 0,
                Some(Position::Offset { byte, rows, line }) => {
                    big(field("position.byte"), byte)?;
                    big(field("position.rows"), rows)?;
                    // Every data row takes at least one byte of the stream.
                    if rows > byte {
                        return Err(inconsistent(
                            field("position.rows"),
                            format!("is {rows}, more rows than the {byte} bytes before the position can hold"),
                        ));
                    }
                    // Lines are counted from 1, and each line before the position ends in a byte.
                    if let Some(line) = line {
                        big(field("position.line"), line)?;
                        if line == 0 || line - 1 > byte {
                            return Err(inconsistent(
                                field("position.line"),
                                format!(
                                    "is {line}: lines count from 1, and the {byte} bytes before the \
                                     position hold at most {byte} line feeds"
                                ),
                            ));
                        }
                    }
                    rows
                }
                Some(Position::RowGroup { row_group, row, rows }) => {
                    let group = u64::try_from(row_group).unwrap_or(u64::MAX);
                    big(field("position.row_group"), group)?;
                    big(field("position.rows"), rows)?;
                    // `rows` counts the rows of the groups before `row_group` and then `row`.
                    if row > rows {
                        return Err(inconsistent(
                            field("position.row"),
                            format!("is {row}, more than the {rows} rows before the position"),
                        ));
                    }
                    rows
                }
            };
            let above = crate::ack::checked_ranges_len(&f.acknowledged_above, rows)
                .map_err(|e| inconsistent(field("acknowledged_above"), e.to_string()))?;
            if let Some(&[_, last]) = f.acknowledged_above.last() {
                big(field("acknowledged_above"), last)?;
            }
            let done_rows = rows.checked_add(above).filter(|n| *n <= MAX_NUMBER).ok_or_else(|| {
                inconsistent(
                    field("acknowledged_above"),
                    format!("with position.rows {rows} counts more than {MAX_NUMBER} rows"),
                )
            })?;
            big(field("applied"), f.applied)?;
            big(field("rejected"), f.rejected)?;
            f.applied
                .checked_add(f.rejected)
                .filter(|n| *n <= MAX_NUMBER)
                .ok_or_else(|| {
                    inconsistent(
                        field("rejected"),
                        format!("plus applied ({}) is more than {MAX_NUMBER}", f.applied),
                    )
                })?;
            let add = |total: u64, n: u64, name: &str| {
                total.checked_add(n).filter(|t| *t <= MAX_NUMBER).ok_or_else(|| {
                    inconsistent(
                        field(name),
                        format!("brings the total over all files past {MAX_NUMBER}"),
                    )
                })
            };
            rows_total = add(rows_total, done_rows, "position.rows")?;
            applied_total = add(applied_total, f.applied, "applied")?;
            rejected_total = add(rejected_total, f.rejected, "rejected")?;
        }
        applied_total
            .checked_add(rejected_total)
            .filter(|n| *n <= MAX_NUMBER)
            .ok_or_else(|| {
                inconsistent(
                    "files[*].applied",
                    format!("plus rejected over all files is more than {MAX_NUMBER}"),
                )
            })?;
        Ok(())
    }
}

/// Reads and checks one slot. `Ok(None)`: the slot does not exist.
fn parse_slot(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let refuse = |problem| CheckpointError::Slot {
        slot: path.to_path_buf(),
        problem,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refuse(SlotProblem::Read(e.to_string()))),
    };
    let cp: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| refuse(SlotProblem::NotACheckpoint(e.to_string())))?;
    if cp.version != VERSION {
        return Err(refuse(SlotProblem::Version(cp.version)));
    }
    if cp.checksum != cp.compute_checksum() {
        return Err(refuse(SlotProblem::Checksum));
    }
    cp.check_numbers().map_err(refuse)?;
    Ok(Some(cp))
}

/// Loads the newest valid checkpoint of `dir`. A corrupt slot falls back to the other; if slots
/// exist but none is valid, that is an error, never a silent start from zero.
pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let mut good: Vec<Checkpoint> = Vec::new();
    let mut bad: Vec<CheckpointError> = Vec::new();
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
            details: bad.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
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
    /// The sequence number of the last commit (of this store or the checkpoint it opened).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn commit(&mut self, cp: &mut Checkpoint) -> Result<(), CheckpointError> {
        self.check_still_held()?;
        // Past MAX_NUMBER `check_numbers` refuses the commit: the sequence never wraps.
        let seq = self.seq.saturating_add(1);
        let slot = self.dir.join(SLOTS[(seq % 2) as usize]);
        cp.version = VERSION;
        cp.seq = seq;
        cp.committed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // Never write what `load` would refuse.
        cp.check_numbers().map_err(|problem| CheckpointError::Slot {
            slot: slot.clone(),
            problem,
        })?;
        self.seq = seq;
        cp.checksum = String::new();
        cp.checksum = cp.compute_checksum();
        let bytes = serde_json::to_vec_pretty(cp).map_err(|e| CheckpointError::Io {
            dir: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
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
    fn objects_stand_by_etag_and_are_never_renames() {
        let old = Fingerprint::of_object(100, Some("\"abc\"".into()), Some(1));
        // A new modification time alone is not a change.
        assert_eq!(
            object_standing(&old, &Fingerprint::of_object(100, Some("\"abc\"".into()), Some(9))),
            Standing::Unchanged
        );
        let Standing::Changed(why) = object_standing(&old, &Fingerprint::of_object(120, Some("\"def\"".into()), None))
        else {
            panic!("a new ETag is a change");
        };
        assert!(
            why.contains("\"abc\"") && why.contains("\"def\"") && why.contains("rewritten"),
            "{why}"
        );
        assert!(matches!(
            object_standing(&old, &Fingerprint::of_object(99, Some("\"abc\"".into()), None)),
            Standing::Changed(_)
        ));
        // A local file's entry never stands for an object.
        let mut local = old.clone();
        local.etag = None;
        assert!(matches!(object_standing(&local, &old), Standing::Changed(_)));
        // The same content under another key is another object, not a rename of the first.
        let mut entry = one_file(Path::new("s3://b-1/a.csv"));
        entry.fingerprint = old.clone();
        let cp = Checkpoint {
            version: VERSION,
            seq: 1,
            committed_at: String::new(),
            dead_letter_len: 0,
            files: vec![entry],
            checksum: String::new(),
        };
        assert_eq!(cp.entry_for(Path::new("s3://b-1/b.csv"), &old, &[false]), None);
        assert_eq!(cp.entry_for(Path::new("s3://b-1/a.csv"), &old, &[false]), Some(0));
    }

    #[test]
    fn fingerprints_without_an_etag_read_as_before_and_write_as_before() {
        let text = r#"{"size":10,"modified":null,"head_len":10,"head_sha256":"x","tail_len":10,"tail_sha256":"y"}"#;
        let fp: Fingerprint = serde_json::from_str(text).expect("an old fingerprint reads");
        assert_eq!(fp.etag, None);
        assert!(!fp.is_object());
        assert_eq!(
            serde_json::to_string(&fp).expect("json"),
            text,
            "and is written unchanged"
        );
        let obj = Fingerprint::of_object(5, Some("\"e\"".into()), None);
        let back: Fingerprint = serde_json::from_str(&serde_json::to_string(&obj).expect("json")).expect("reads");
        assert_eq!(back, obj);
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

    /// One file with a watermark after row 10 and rows 20-29 acknowledged above it.
    fn one_file(path: &Path) -> FileCheckpoint {
        FileCheckpoint {
            path: path.to_path_buf(),
            fingerprint: Fingerprint {
                size: 1000,
                modified: None,
                head_len: 1000,
                head_sha256: String::new(),
                tail_len: 1000,
                tail_sha256: String::new(),
                etag: None,
            },
            position: Some(Position::Offset {
                byte: 100,
                rows: 10,
                line: None,
            }),
            done: false,
            applied: 15,
            rejected: 5,
            acknowledged_above: vec![[20, 29]],
        }
    }

    fn with_file(f: FileCheckpoint) -> Checkpoint {
        let mut cp = sample(0);
        cp.files.push(f);
        cp
    }

    /// Breaks the numbers of a good checkpoint one way each; returns the field it should be
    /// refused for.
    #[allow(clippy::type_complexity)]
    fn absurd() -> Vec<(&'static str, Box<dyn Fn(&mut Checkpoint)>)> {
        fn f0(cp: &mut Checkpoint) -> &mut FileCheckpoint {
            &mut cp.files[0]
        }
        vec![
            (
                "files[0].position.line",
                Box::new(move |cp| {
                    f0(cp).position = Some(Position::Offset {
                        byte: 100,
                        rows: 10,
                        line: Some(0),
                    })
                }),
            ),
            (
                "files[0].position.line",
                Box::new(move |cp| {
                    f0(cp).position = Some(Position::Offset {
                        byte: 100,
                        rows: 10,
                        line: Some(102),
                    })
                }),
            ),
            (
                "files[0].acknowledged_above",
                Box::new(move |cp| f0(cp).acknowledged_above = vec![[25, 21]]),
            ),
            (
                "files[0].acknowledged_above",
                Box::new(move |cp| f0(cp).acknowledged_above = vec![[20, 29], [25, 40]]),
            ),
            (
                "files[0].acknowledged_above",
                Box::new(move |cp| f0(cp).acknowledged_above = vec![[5, 12]]),
            ),
            (
                "files[0].acknowledged_above",
                Box::new(move |cp| f0(cp).acknowledged_above = vec![[20, u64::MAX]]),
            ),
            (
                "files[0].position.rows",
                Box::new(move |cp| {
                    f0(cp).position = Some(Position::Offset {
                        byte: 100,
                        rows: 101,
                        line: None,
                    })
                }),
            ),
            (
                "files[0].position.byte",
                Box::new(move |cp| {
                    f0(cp).position = Some(Position::Offset {
                        byte: u64::MAX,
                        rows: u64::MAX,
                        line: None,
                    })
                }),
            ),
            (
                "files[0].position.row",
                Box::new(move |cp| {
                    f0(cp).position = Some(Position::RowGroup {
                        row_group: 1,
                        row: 11,
                        rows: 10,
                    })
                }),
            ),
            ("files[0].applied", Box::new(move |cp| f0(cp).applied = u64::MAX)),
            (
                "files[0].rejected",
                Box::new(move |cp| f0(cp).rejected = MAX_NUMBER - 3),
            ),
            (
                "files[0].fingerprint.tail_len",
                Box::new(move |cp| f0(cp).fingerprint.tail_len = u64::MAX),
            ),
            (
                "files[0].fingerprint.head_len",
                Box::new(move |cp| f0(cp).fingerprint.head_len = 1001),
            ),
            ("dead_letter_len", Box::new(|cp| cp.dead_letter_len = u64::MAX)),
            ("seq", Box::new(|cp| cp.seq = u64::MAX)),
            (
                "files[1].applied",
                Box::new(|cp| {
                    let mut other = cp.files[0].clone();
                    other.path = "other.csv".into();
                    cp.files[0].applied = MAX_NUMBER - 20;
                    other.applied = 100;
                    cp.files.push(other);
                }),
            ),
            (
                "files[1].position.rows",
                Box::new(|cp| {
                    let mut other = cp.files[0].clone();
                    other.path = "other.csv".into();
                    other.position = Some(Position::Offset {
                        byte: MAX_NUMBER,
                        rows: MAX_NUMBER - 10,
                        line: None,
                    });
                    other.acknowledged_above = vec![];
                    cp.files.push(other);
                }),
            ),
        ]
    }

    #[test]
    fn numbers_that_do_not_add_up_are_refused_naming_the_field() {
        let good = with_file(one_file(Path::new("a.csv")));
        good.check_numbers().expect("a consistent checkpoint passes");
        // Edges that are fine: nothing acknowledged yet, ranges right above the watermark,
        // adjacent ranges, a Parquet position at the start of a group.
        let mut edge = good.clone();
        edge.files[0].position = None;
        edge.files[0].acknowledged_above = vec![[1, 3], [4, 4], [9, 9]];
        edge.check_numbers().expect("edges");
        edge.files[0].position = Some(Position::RowGroup {
            row_group: 2,
            row: 0,
            rows: 0,
        });
        edge.check_numbers().expect("empty row groups before");
        for (field, break_it) in absurd() {
            let mut cp = good.clone();
            break_it(&mut cp);
            match cp.check_numbers() {
                Err(SlotProblem::Inconsistent { field: got, why }) => {
                    assert_eq!(got, field, "{why}")
                }
                other => panic!("{field}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_slot_with_a_valid_checksum_but_absurd_numbers_falls_back_or_is_refused() {
        for (field, break_it) in absurd() {
            let dir = tempfile::tempdir().expect("tempdir");
            let good = with_file(one_file(&dir.path().join("a.csv")));
            {
                let (mut store, _) = Store::open(dir.path()).expect("open");
                store.commit(&mut good.clone()).expect("commit 1 (slot b)");
            }
            // The newer slot: absurd numbers under a checksum that matches them.
            let mut bad = good.clone();
            bad.seq = 2;
            break_it(&mut bad);
            bad.checksum = bad.compute_checksum();
            let bytes = serde_json::to_vec_pretty(&bad).expect("json");
            std::fs::write(dir.path().join(SLOTS[0]), &bytes).expect("write slot a");
            let cp = load(dir.path()).expect("falls back").expect("some");
            assert_eq!(cp.seq, 1, "{field}: the older, consistent slot is used");
            // Both slots absurd: refused, naming the slot and the field.
            std::fs::write(dir.path().join(SLOTS[1]), &bytes).expect("write slot b");
            let err = load(dir.path()).expect_err("both absurd");
            let text = err.to_string();
            assert!(matches!(err, CheckpointError::Unreadable { .. }), "{text}");
            assert!(text.contains("Refusing to start from zero"), "{text}");
            assert!(text.contains(SLOTS[0]) && text.contains(SLOTS[1]), "{text}");
            assert!(text.contains(&format!("`{field}`")), "{field}: {text}");
            // The store refuses to open on it too, rather than starting from zero.
            assert!(Store::open(dir.path()).is_err(), "{field}");
        }
    }

    #[test]
    fn a_slot_error_names_the_slot_and_its_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let slot = dir.path().join(SLOTS[0]);
        let mut cp = with_file(one_file(Path::new("a.csv")));
        cp.files[0].acknowledged_above = vec![[30, 39], [35, 36]];
        cp.checksum = cp.compute_checksum();
        std::fs::write(&slot, serde_json::to_vec(&cp).expect("json")).expect("write");
        match parse_slot(&slot) {
            Err(CheckpointError::Slot {
                slot: s,
                problem: SlotProblem::Inconsistent { field, why },
            }) => {
                assert_eq!((s, field.as_str()), (slot.clone(), "files[0].acknowledged_above"));
                assert!(why.contains("range 1 (35-36) overlaps"), "{why}");
            }
            other => panic!("expected an inconsistency, got {other:?}"),
        }
        std::fs::write(&slot, b"{}").expect("write");
        assert!(matches!(
            parse_slot(&slot),
            Err(CheckpointError::Slot {
                problem: SlotProblem::NotACheckpoint(_),
                ..
            })
        ));
    }

    #[test]
    fn commit_never_writes_what_load_would_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = Store::open(dir.path()).expect("open");
        let mut cp = with_file(one_file(&dir.path().join("a.csv")));
        cp.files[0].acknowledged_above = vec![[3, 4]];
        let err = store.commit(&mut cp).expect_err("below the watermark");
        assert!(err.to_string().contains("files[0].acknowledged_above"), "{err}");
        assert!(load(dir.path()).expect("load").is_none(), "nothing was written");
        // The refused commit did not use up a sequence number.
        store.commit(&mut sample(0)).expect("commit");
        assert_eq!(load(dir.path()).expect("load").expect("some").seq, 1);
        // A store at the end of its sequence numbers refuses instead of wrapping.
        store.seq = MAX_NUMBER;
        assert!(store.commit(&mut sample(0)).is_err());
        store.seq = u64::MAX;
        assert!(store.commit(&mut sample(0)).is_err());
        assert_eq!(load(dir.path()).expect("load").expect("some").seq, 1);
    }

    #[test]
    fn a_fingerprint_with_impossible_lengths_is_a_change_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "id\n1\n").expect("write");
        let mut fp = Fingerprint::of(&p).expect("fp");
        fp.tail_len = fp.size + 1;
        assert!(matches!(standing(&p, &fp, true).expect("s"), Standing::Changed(_)));
        let mut fp = Fingerprint::of(&p).expect("fp");
        fp.head_len = u64::MAX;
        fp.size = 1;
        assert!(matches!(standing(&p, &fp, true).expect("s"), Standing::Changed(_)));
    }
}
