//! The dead-letter file: one JSON line per rejected row, saying where it came from and why.
//!
//! Owns: the format of `state/dead-letter.jsonl` and appending to it; its length, so a checkpoint
//! can record it and a resume can cut the file back to it (each rejected row exactly once).
//! Never: decides whether a row is rejected; never rewrites lines already committed.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::Op;

pub const FILE_NAME: &str = "dead-letter.jsonl";

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The source file, as the run named it.
    pub file: String,
    /// 1-based data row number within the file.
    pub row: u64,
    /// The primary key, when it could be read.
    pub key: Option<serde_json::Value>,
    pub op: Option<Op>,
    /// Why the row was rejected: our check, or the server's words.
    pub error: String,
    /// The server's error code, when the server refused the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The HTTP status of the refusal, when the server (or a proxy, for a 413) refused the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The record: as read from the source, or as sent when the server refused it.
    pub record: serde_json::Value,
}

/// Appends entries to the dead-letter file.
pub struct DeadLetter {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
}

impl DeadLetter {
    /// Opens the file in `dir`, cut back to `keep_len` bytes (0 = start empty). Bytes past
    /// `keep_len` belong to rows after the last checkpoint, which will be read again.
    pub fn open(dir: &Path, keep_len: u64) -> std::io::Result<DeadLetter> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&path)?;
        let current = file.metadata()?.len();
        if current < keep_len {
            return Err(std::io::Error::other(format!(
                "{} is {current} bytes but the checkpoint recorded {keep_len}: it was cut or replaced after \
                 the checkpoint, so the rows rejected in the missing part cannot be listed from this state. \
                 Restore the file, or run again with --start-over: it sets the checkpoint and this file aside \
                 (nothing is deleted) and sends every file again from the start; writes are idempotent, so the \
                 collection ends the same and every rejected row is dead-lettered again",
                path.display()
            )));
        }
        file.set_len(keep_len)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(keep_len))?;
        Ok(DeadLetter {
            path,
            out: BufWriter::new(file),
            len: keep_len,
        })
    }

    pub fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; returns the durable length. Fails if the file at the path is no longer
    /// the one being written (deleted or replaced): its lines would be lost.
    pub fn sync(&mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        let ours = crate::checkpoint::file_id(&self.out.get_ref().metadata()?);
        match std::fs::metadata(&self.path) {
            Ok(m) if crate::checkpoint::file_id(&m) == ours => Ok(self.len),
            _ => Err(std::io::Error::other(format!(
                "{} was deleted or replaced while this run wrote it; stopping so no rejected row is lost",
                self.path.display()
            ))),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> std::io::Result<Vec<Entry>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| std::io::Error::other(format!("{}: line {}: {e}", path.display(), i + 1)))
            })
            .collect()
    }

    fn entry(row: u64) -> Entry {
        Entry {
            file: "a.csv".into(),
            row,
            key: Some(serde_json::json!("k")),
            op: Some(Op::Upsert),
            error: "bad".into(),
            code: None,
            http_status: None,
            request_id: None,
            record: serde_json::json!({"id": "k"}),
        }
    }

    #[test]
    fn truncates_back_to_the_committed_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dl = DeadLetter::open(dir.path(), 0).expect("open");
        dl.append(&entry(1)).expect("append");
        let committed = dl.sync().expect("sync");
        dl.append(&entry(2)).expect("append");
        dl.sync().expect("sync");
        drop(dl);
        let mut dl = DeadLetter::open(dir.path(), committed).expect("reopen");
        dl.append(&entry(3)).expect("append");
        dl.sync().expect("sync");
        let rows: Vec<u64> = read_all(&dir.path().join(FILE_NAME))
            .expect("read")
            .iter()
            .map(|e| e.row)
            .collect();
        assert_eq!(rows, vec![1, 3]);
        assert!(
            DeadLetter::open(dir.path(), 10_000).is_err(),
            "a shorter file than recorded is refused"
        );
    }
}
