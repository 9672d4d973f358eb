//! Planning: expands `[[sources]]` into files and sets each file against the checkpoint.
//!
//! Owns: file discovery order (config order, then sorted paths), the one-source-per-file rule,
//! matching a file with its checkpoint entry (by path, or by fingerprint after a rename), and
//! deciding where each file starts. The result is one [`FilePlan`] per file: everything the
//! reader, the tracker and the commit need to know about it, in one place.
//! Never: reads rows, sends, or writes state; it only looks at files' metadata and the checkpoint.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::ack::RowRange;
use crate::checkpoint::{Checkpoint, CheckpointError, FileCheckpoint, Fingerprint, Standing};
use crate::config::{Config, OnChange};
use crate::schema::SourceMapping;
use crate::source::{self, Format, Position, ReadError, ReadOptions};

use super::RunError;

/// One source file of the run, as discovered (before the checkpoint is consulted).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    /// Index of its `[[sources]]` entry (and of its mapping).
    pub mapping: usize,
    pub options: ReadOptions,
    /// The path with symlinks resolved: the file's identity in the checkpoint.
    pub canonical: PathBuf,
}

impl SourceFile {
    /// Whether a resumed read may continue past the checkpoint's size (CSV/JSONL may grow,
    /// Parquet may not).
    /// The file's fingerprint now: an object's from its listing, a local file's from its bytes.
    pub fn fingerprint(&self) -> std::io::Result<Fingerprint> {
        match &self.options.object {
            Some(o) => Ok(Fingerprint::of_object(o.size, o.etag.clone(), o.modified)),
            None => Fingerprint::of(&self.canonical),
        }
    }

    /// How the file stands against a checkpoint entry's fingerprint (`now` is [`Self::fingerprint`]).
    pub fn standing(&self, old: &Fingerprint, now: &Fingerprint) -> std::io::Result<Standing> {
        if now.is_object() {
            Ok(crate::checkpoint::object_standing(old, now))
        } else {
            crate::checkpoint::standing(&self.canonical, old, self.appendable())
        }
    }

    pub fn appendable(&self) -> bool {
        !matches!(
            source::detect(&self.path, self.options.format),
            Ok((Format::Parquet, _))
        )
    }
}

/// One file of a run and its standing against the checkpoint: where to read from, what is
/// already done, and the counts it starts with.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub source: SourceFile,
    /// The file as it is now; written into the next checkpoint.
    pub fingerprint: Fingerprint,
    /// Where to start reading (from the checkpoint); `None` = the beginning.
    pub start: Option<Position>,
    /// Already done according to the checkpoint: not read at all.
    pub skip: bool,
    /// Rows after `start` the checkpoint says are acknowledged: read but not sent.
    pub done_rows: Vec<RowRange>,
    /// Rows applied and rejected by earlier runs (from the checkpoint).
    pub applied: u64,
    pub rejected: u64,
}

impl FilePlan {
    /// A file that starts from the beginning.
    pub fn fresh(source: SourceFile, fingerprint: Fingerprint) -> FilePlan {
        FilePlan {
            source,
            fingerprint,
            start: None,
            skip: false,
            done_rows: Vec::new(),
            applied: 0,
            rejected: 0,
        }
    }

    /// Rows the checkpoint already counts as done.
    pub fn resumed_rows(&self) -> u64 {
        self.start.map_or(0, |p| p.rows()) + crate::ack::ranges_len(&self.done_rows)
    }
}

/// Every file of the run, planned, and the checkpoint entries of files not in this run (carried
/// over unchanged into every commit).
#[derive(Debug)]
pub struct RunPlan {
    pub files: Vec<FilePlan>,
    pub carried: Vec<FileCheckpoint>,
}

/// Expands every `[[sources]]` entry into its files, in config order then sorted path order.
pub fn source_files(config: &Config) -> Result<(Vec<SourceFile>, Vec<SourceMapping>), RunError> {
    collect_sources(config, false)
}

/// [`source_files`] for `serve`: a pattern may match nothing yet.
pub fn watched_files(config: &Config) -> Result<(Vec<SourceFile>, Vec<SourceMapping>), RunError> {
    collect_sources(config, true)
}

fn collect_sources(config: &Config, allow_empty: bool) -> Result<(Vec<SourceFile>, Vec<SourceMapping>), RunError> {
    let mut files = Vec::new();
    let mut mappings = Vec::new();
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for (i, s) in config.sources.iter().enumerate() {
        mappings.push(SourceMapping::from_config(s));
        if source::object::is_object_url(&s.path) {
            for object in list_objects(config, &s.path, allow_empty)? {
                let path = PathBuf::from(object.url.to_string());
                if let Some(&first) = seen.get(&path) {
                    return Err(ReadError::File {
                        file: path,
                        message: format!(
                            "matched by [[sources]] #{} and #{}; an object may belong to one source only",
                            first + 1,
                            i + 1
                        ),
                    }
                    .into());
                }
                seen.insert(path.clone(), i);
                let mut options = ReadOptions {
                    format: s.format,
                    ..ReadOptions::default()
                };
                if let Some(d) = s.delimiter {
                    options.delimiter = d as u8;
                }
                options.object = Some(object);
                files.push(SourceFile {
                    canonical: path.clone(),
                    path,
                    mapping: i,
                    options,
                });
            }
            continue;
        }
        let paths = if allow_empty {
            source::expand_allow_empty(&s.path, &config.base_dir)?
        } else {
            source::expand(&s.path, &config.base_dir)?
        };
        for path in paths {
            // One file read by two sources would be sent twice and checkpointed once.
            let seen_path = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(&first) = seen.get(&seen_path) {
                if first == i {
                    // One glob reaching a file twice (a symlink loop, or a link beside its target):
                    // the file is read once.
                    tracing::debug!(file = %path.display(), "matched again through a symlink; read once");
                    continue;
                }
                return Err(ReadError::File {
                    file: path,
                    message: format!(
                        "matched by [[sources]] #{} and #{}; a file may belong to one source only",
                        first + 1,
                        i + 1
                    ),
                }
                .into());
            }
            seen.insert(seen_path.clone(), i);
            let mut options = ReadOptions {
                format: s.format,
                complete_lines: config.follow,
                ..ReadOptions::default()
            };
            if let Some(d) = s.delimiter {
                options.delimiter = d as u8;
            }
            files.push(SourceFile {
                canonical: seen_path,
                path,
                mapping: i,
                options,
            });
        }
    }
    Ok((files, mappings))
}

/// The objects an `s3://` / `tos://` source names (see `source::object::Storage::expand`).
fn list_objects(config: &Config, url: &str, allow_empty: bool) -> Result<Vec<source::object::ObjectFile>, RunError> {
    let storage = config.object_storage()?;
    let parsed = source::object::ObjectUrl::parse(url).map_err(|message| ReadError::File {
        file: PathBuf::from(url),
        message,
    })?;
    storage.expand(&parsed, allow_empty).map_err(|message| {
        RunError::from(ReadError::File {
            file: PathBuf::from(url),
            message,
        })
    })
}

/// Matches each file with its checkpoint entry (by path, or by fingerprint after a rename) and
/// decides where it starts. Entries of files not in this run are carried over unchanged.
pub fn plan_files(
    files: Vec<SourceFile>,
    previous: Option<&Checkpoint>,
    on_change: OnChange,
) -> Result<RunPlan, RunError> {
    let mut plans = Vec::with_capacity(files.len());
    let mut taken = vec![false; previous.map_or(0, |c| c.files.len())];
    for file in files {
        let io = |e: std::io::Error| {
            RunError::from(ReadError::File {
                file: file.path.clone(),
                message: format!("cannot read: {e}"),
            })
        };
        let fingerprint = file.fingerprint().map_err(io)?;
        let entry = previous.and_then(|cp| {
            cp.entry_for(&file.canonical, &fingerprint, &taken)
                .map(|i| (i, &cp.files[i]))
        });
        let Some((i, entry)) = entry else {
            plans.push(FilePlan::fresh(file, fingerprint));
            continue;
        };
        taken[i] = true;
        let standing = file.standing(&entry.fingerprint, &fingerprint).map_err(io)?;
        let mut plan = FilePlan::fresh(file, fingerprint);
        match standing {
            Standing::Unchanged | Standing::Grew => {
                if matches!(standing, Standing::Grew) {
                    tracing::info!(file = %plan.source.path.display(), "the file grew since its checkpoint; continuing from its position");
                } else {
                    plan.skip = entry.done;
                }
                plan.start = entry.position;
                plan.done_rows = entry.acknowledged_above.clone();
                plan.applied = entry.applied;
                plan.rejected = entry.rejected;
            }
            Standing::Changed(why) => match on_change {
                OnChange::Error => {
                    return Err(CheckpointError::Changed {
                        file: plan.source.path.clone(),
                        why,
                    }
                    .into());
                }
                OnChange::Reprocess => {
                    tracing::warn!(file = %plan.source.path.display(), %why, "the file changed since its checkpoint; reading it again from the start");
                }
            },
        }
        if entry.path != plan.source.canonical {
            tracing::info!(from = %entry.path.display(), to = %plan.source.canonical.display(), "a checkpointed file was renamed");
        }
        plans.push(plan);
    }
    let carried = previous
        .map(|cp| {
            cp.files
                .iter()
                .zip(&taken)
                .filter(|(_, t)| !**t)
                .map(|(f, _)| f.clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(RunPlan { files: plans, carried })
}
