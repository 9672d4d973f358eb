//! `vikingsync status`: sets the checkpoint against the sources as they are now.
//!
//! Owns: the status report (per-file rows done, counts, standing; the lock holder; the
//! dead-letter entries the checkpoint covers).
//! Never: takes the state directory's lock, writes anything, or sends.

use std::path::PathBuf;

use super::RunError;
use super::plan::watched_files;
use crate::checkpoint::{FileCheckpoint, Standing};
use crate::config::Config;
use crate::source::{self, Position};

/// One file's line in `vikingsync status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStatus {
    pub path: PathBuf,
    pub size: u64,
    /// Rows acknowledged (applied or dead-lettered), per the checkpoint.
    pub rows_done: u64,
    pub applied: u64,
    pub rejected: u64,
    pub done: bool,
    /// For uncompressed CSV/JSONL: bytes before the committed position.
    pub bytes_done: Option<u64>,
    /// `not started`, `unchanged`, `grew since`, `changed: …`, `unreadable: …`, or
    /// `gone (no source matches it now)` for a checkpointed file no source matches.
    pub standing: String,
}

/// What `vikingsync status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub state_dir: PathBuf,
    pub running_pid: Option<String>,
    pub last_commit: Option<String>,
    pub commits: u64,
    pub dead_letter_entries: u64,
    pub files: Vec<FileStatus>,
    /// The file table `serve` keeps beside the checkpoint ([`SERVICE_FILE`]), when there is one.
    pub service: Vec<ServiceFile>,
    /// The shards of a sharded backfill (`run --shard I/N`), each from its own checkpoint.
    pub shards: Vec<ShardStatus>,
}

/// One shard's totals, from `[state] dir`/shard-I-of-N.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    pub name: String,
    pub running_pid: Option<String>,
    pub last_commit: Option<String>,
    pub files: usize,
    pub files_done: usize,
    /// Rows this shard has passed: its own acknowledged rows and the rows it left to the others.
    pub rows_passed: u64,
    pub applied: u64,
    pub rejected: u64,
}

fn shards(dir: &std::path::Path) -> Result<Vec<ShardStatus>, RunError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("shard-") && n.contains("-of-"))
        .collect();
    names.sort_by_key(|n| {
        let mut parts = n.trim_start_matches("shard-").split("-of-");
        let i: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(u32::MAX);
        let c: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(u32::MAX);
        (c, i)
    });
    let mut out = Vec::new();
    for name in names {
        let sub = dir.join(&name);
        let cp = crate::checkpoint::load(&sub)?;
        let (files, files_done, rows_passed, applied, rejected) = cp.as_ref().map_or((0, 0, 0, 0, 0), |cp| {
            cp.files.iter().fold((0, 0, 0, 0, 0), |acc, f| {
                (
                    acc.0 + 1,
                    acc.1 + usize::from(f.done),
                    acc.2 + f.position.map_or(0, |p| p.rows()) + crate::ack::ranges_len(&f.acknowledged_above),
                    acc.3 + f.applied,
                    acc.4 + f.rejected,
                )
            })
        });
        out.push(ShardStatus {
            running_pid: crate::checkpoint::lock_holder(&sub),
            last_commit: cp.as_ref().map(|c| c.committed_at.clone()),
            name,
            files,
            files_done,
            rows_passed,
            applied,
            rejected,
        });
    }
    Ok(out)
}

/// The file `serve` keeps its file table in, in the state directory.
pub const SERVICE_FILE: &str = "serve-files.json";

/// One file of a service: its state (`pending`, `active`, `done`, `failed`) and why it failed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServiceFile {
    pub path: PathBuf,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the checkpoint (without taking the lock) and sets it against the sources now.
pub fn status(config: &Config) -> Result<StatusReport, RunError> {
    let dir = &config.state.dir;
    let checkpoint = crate::checkpoint::load(dir)?;
    // A service's pattern may match nothing yet: that is a state to show, not an error.
    let (files, _) = watched_files(config)?;
    let mut taken = vec![false; checkpoint.as_ref().map_or(0, |c| c.files.len())];
    let mut out = Vec::new();
    for f in &files {
        let canonical = &f.canonical;
        let fp = f.fingerprint().ok();
        let size = fp.as_ref().map_or(0, |fp| fp.size);
        let entry = match (&checkpoint, &fp) {
            (Some(cp), Some(fp)) => cp.entry_for(canonical, fp, &taken).map(|i| {
                taken[i] = true;
                &cp.files[i]
            }),
            _ => None,
        };
        let line = match entry {
            None => FileStatus {
                path: f.path.clone(),
                size,
                rows_done: 0,
                applied: 0,
                rejected: 0,
                done: false,
                bytes_done: None,
                standing: "not started".into(),
            },
            Some(e) => {
                let now = match &fp {
                    Some(now) => f.standing(&e.fingerprint, now),
                    None => crate::checkpoint::standing(canonical, &e.fingerprint, f.appendable()),
                };
                let standing = match now {
                    Ok(Standing::Unchanged) => "unchanged".to_string(),
                    Ok(Standing::Grew) => "grew since".to_string(),
                    Ok(Standing::Changed(why)) => format!("changed: {why}"),
                    Err(err) => format!("unreadable: {err}"),
                };
                let plain = matches!(
                    source::detect(&f.path, f.options.format),
                    Ok((_, source::Compression::None))
                );
                file_status(f.path.clone(), size, e, standing, plain)
            }
        };
        out.push(line);
    }
    if let Some(cp) = &checkpoint {
        for (e, t) in cp.files.iter().zip(&taken) {
            if !t {
                out.push(file_status(
                    e.path.clone(),
                    e.fingerprint.size,
                    e,
                    "gone (no source matches it now)".into(),
                    false,
                ));
            }
        }
    }
    let dead_letter_entries = checkpoint.as_ref().map_or(0, |cp| {
        std::fs::read(dir.join(crate::deadletter::FILE_NAME))
            .map(|b| {
                b[..b.len().min(cp.dead_letter_len as usize)]
                    .iter()
                    .filter(|c| **c == b'\n')
                    .count() as u64
            })
            .unwrap_or(0)
    });
    Ok(StatusReport {
        state_dir: dir.clone(),
        running_pid: crate::checkpoint::lock_holder(dir),
        last_commit: checkpoint.as_ref().map(|c| c.committed_at.clone()),
        commits: checkpoint.as_ref().map_or(0, |c| c.seq),
        dead_letter_entries,
        files: out,
        shards: shards(dir)?,
        service: std::fs::read(dir.join(SERVICE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
    })
}

/// `plain`: an uncompressed CSV/JSONL file, whose byte position is a share of its size.
fn file_status(path: PathBuf, size: u64, e: &FileCheckpoint, standing: String, plain: bool) -> FileStatus {
    FileStatus {
        path,
        size,
        rows_done: e.position.map_or(0, |p| p.rows()) + crate::ack::ranges_len(&e.acknowledged_above),
        applied: e.applied,
        rejected: e.rejected,
        done: e.done,
        bytes_done: match e.position {
            Some(Position::Offset { byte, .. }) if plain => Some(byte),
            _ => None,
        },
        standing,
    }
}
