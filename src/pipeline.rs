//! The pipeline: wires reader → schema → batcher → limiter → sender → tracker/dead-letter.
//!
//! Owns: the run's tasks and their channels (a blocking reader thread feeding a bounded channel;
//! one coordinator that batches, dispatches up to `concurrency` requests and takes their
//! acknowledgements in any order), the stop conditions, and the run's summary.
//! Never: shapes requests (batch), talks HTTP (client), or decides validity (schema). Memory is
//! bounded: the channel, the batcher's queues and the in-flight window are all capped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::batch::Batcher;
use crate::checkpoint::{Checkpoint, CheckpointError, FileCheckpoint, Fingerprint, Standing, Store, Tracker};
use crate::client::{BatchResult, Locator, SendError, Sender, Target};
use crate::config::{Config, ConfigError, Credentials, OnChange};
use crate::deadletter::{DeadLetter, Entry};
use crate::limit::RowLimiter;
use crate::record::{Op, Origin, Record};
use crate::report::{Progress, Stats, Summary};
use crate::schema::{Schema, SourceMapping};
use crate::source::{self, Format, Position, RawRow, ReadError, ReadOptions};

/// Why a run stopped early. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Source(Box<ReadError>),
    #[error("{0}")]
    Send(#[from] SendError),
    #[error("{rejected} rows were rejected, more than max_rejected_rows = {limit}; see {dead_letter}")]
    TooManyRejected {
        rejected: u64,
        limit: u64,
        dead_letter: PathBuf,
    },
    #[error("state directory {dir}: {source}")]
    State { dir: PathBuf, source: std::io::Error },
    #[error("cannot start the emulator: {0}")]
    Emulator(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("stopped by a signal; progress is checkpointed, run the same command again to continue")]
    Interrupted,
}

impl From<ReadError> for RunError {
    fn from(e: ReadError) -> Self {
        RunError::Source(Box::new(e))
    }
}

impl RunError {
    /// The process exit code: 2 for too many rejected rows, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::TooManyRejected { .. } => 2,
            _ => 1,
        }
    }
}

/// How a run went: its numbers, and the error that stopped it, if any.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    /// Rows read but neither applied nor rejected when the run stopped (ahead of the checkpoint).
    pub unfinished: u64,
    pub error: Option<RunError>,
    pub dead_letter: PathBuf,
}

/// Options that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub progress: bool,
    /// Set the previous checkpoint and dead-letter file aside and start from the beginning.
    pub start_over: bool,
    /// The data plane to talk to; `None` = `[target] endpoint` with the credentials found by
    /// `Credentials::load`. Required for `target.emulator = true` (the caller starts it).
    pub endpoint: Option<Endpoint>,
}

/// A VikingDB data plane and the credentials that reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://host[:port]`.
    pub url: String,
    pub credentials: Credentials,
}

/// One source file of the run.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub mapping: usize,
    pub options: ReadOptions,
    /// Where to start reading (from the checkpoint); `None` = the beginning.
    pub start: Option<Position>,
    /// Already done according to the checkpoint: not read at all.
    pub skip: bool,
    /// The path with symlinks resolved: the file's identity in the checkpoint.
    pub canonical: PathBuf,
    /// Rows after `start` the checkpoint says are acknowledged: read but not sent.
    pub done_rows: Arc<Vec<crate::checkpoint::RowRange>>,
}

/// Expands every `[[sources]]` entry into its files, in config order then sorted path order.
pub fn source_files(config: &Config) -> Result<(Vec<SourceFile>, Vec<SourceMapping>), RunError> {
    let mut files = Vec::new();
    let mut mappings = Vec::new();
    let mut seen: std::collections::HashMap<PathBuf, usize> = std::collections::HashMap::new();
    for (i, s) in config.sources.iter().enumerate() {
        mappings.push(SourceMapping::from_config(s));
        for path in source::expand(&s.path, &config.base_dir)? {
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
                ..ReadOptions::default()
            };
            if let Some(d) = s.delimiter {
                options.delimiter = d as u8;
            }
            files.push(SourceFile {
                canonical: seen_path.clone(),
                path,
                mapping: i,
                options,
                start: None,
                skip: false,
                done_rows: Arc::new(Vec::new()),
            });
        }
    }
    Ok((files, mappings))
}

/// What the reader thread hands the coordinator.
enum Item {
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
const CHANNEL_ROWS: usize = 1024;
const MAX_WAITING: usize = 10_000;

/// Reads every file in order, types each row, and sends the results down `tx`.
fn read_all(
    files: Vec<SourceFile>,
    mappings: Vec<SourceMapping>,
    schema: Schema,
    tx: mpsc::Sender<Item>,
    stats: Arc<Stats>,
) {
    let mut seq = 0u64;
    for (index, file) in files.iter().enumerate() {
        let name = file.path.display().to_string();
        if file.skip {
            if tx.blocking_send(Item::FileEnd(index)).is_err() {
                return;
            }
            continue;
        }
        let mut reader = match source::open(&file.path, &file.options, file.start) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Item::Failed(e));
                return;
            }
        };
        let mapping = &mappings[file.mapping];
        let mut last_bytes = 0;
        while let Some(next) = reader.next_row() {
            let already = |row: u64| crate::checkpoint::in_ranges(&file.done_rows, row);
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
                    unreadable(&name, origin, end, raw, message, mapping.op)
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
fn unreadable(
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

fn typed(schema: &Schema, mapping: &SourceMapping, raw: RawRow, origin: Origin, file: &str) -> Item {
    let end = raw.end;
    match schema.coerce(&raw, mapping, origin.clone()) {
        Ok(record) => Item::Row { record, end },
        Err(rej) => Item::Rejected {
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
        },
    }
}

fn locator(config: &Config) -> Locator {
    let c = &config.collection;
    match (&c.name, &c.resource_id, &c.alias) {
        (_, Some(r), _) => Locator::ResourceId(r.clone()),
        (_, _, Some(a)) => Locator::Alias(a.clone()),
        (Some(n), _, _) => Locator::Name(n.clone()),
        (None, None, None) => Locator::Name(String::new()),
    }
}

/// Runs a one-shot backfill to the end, or until something stops it.
pub async fn run(config: Config, options: RunOptions) -> RunReport {
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let dead_letter_path = config.state.dir.join(crate::deadletter::FILE_NAME);
    let result = run_inner(&config, &options, &stats).await;
    let summary = stats.snapshot(started.elapsed());
    let (unfinished, error) = match result {
        Ok(unfinished) => (unfinished, None),
        Err((unfinished, e)) => (unfinished, Some(e)),
    };
    RunReport {
        summary,
        unfinished,
        error,
        dead_letter: dead_letter_path,
    }
}

type Unfinished = u64;

/// One file's standing against the checkpoint: where to start, and what is already counted.
struct Plan {
    fingerprint: Fingerprint,
    applied: u64,
    rejected: u64,
}

/// Matches each file with its checkpoint entry (by path, or by fingerprint after a rename) and
/// decides where it starts. Entries of files not in this run are carried over unchanged.
fn plan_files(
    files: &mut [SourceFile],
    previous: Option<&Checkpoint>,
    on_change: OnChange,
) -> Result<(Vec<Plan>, Vec<FileCheckpoint>), RunError> {
    let mut plans = Vec::with_capacity(files.len());
    let mut taken = vec![false; previous.map_or(0, |c| c.files.len())];
    for file in files.iter_mut() {
        let io = |e: std::io::Error| {
            RunError::from(ReadError::File {
                file: file.path.clone(),
                message: format!("cannot read: {e}"),
            })
        };
        let canonical = &file.canonical;
        let fingerprint = Fingerprint::of(canonical).map_err(io)?;
        let mut plan = Plan {
            fingerprint: fingerprint.clone(),
            applied: 0,
            rejected: 0,
        };
        let entry = previous.and_then(|cp| cp.entry_for(canonical, &fingerprint, &taken).map(|i| (i, &cp.files[i])));
        if let Some((i, entry)) = entry {
            taken[i] = true;
            let appendable = !matches!(
                source::detect(&file.path, file.options.format),
                Ok((Format::Parquet, _))
            );
            match crate::checkpoint::standing(canonical, &entry.fingerprint, appendable).map_err(io)? {
                Standing::Unchanged => {
                    file.start = entry.position;
                    file.skip = entry.done;
                    file.done_rows = Arc::new(entry.acknowledged_above.clone());
                    plan.applied = entry.applied;
                    plan.rejected = entry.rejected;
                }
                Standing::Grew => {
                    tracing::info!(file = %file.path.display(), "the file grew since its checkpoint; continuing from its position");
                    file.start = entry.position;
                    file.done_rows = Arc::new(entry.acknowledged_above.clone());
                    plan.applied = entry.applied;
                    plan.rejected = entry.rejected;
                }
                Standing::Changed(why) => match on_change {
                    OnChange::Error => {
                        return Err(CheckpointError::Changed {
                            file: file.path.clone(),
                            why,
                        }
                        .into());
                    }
                    OnChange::Reprocess => {
                        tracing::warn!(file = %file.path.display(), %why, "the file changed since its checkpoint; reading it again from the start");
                    }
                },
            }
            if &entry.path != canonical {
                tracing::info!(from = %entry.path.display(), to = %canonical.display(), "a checkpointed file was renamed");
            }
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
    Ok((plans, carried))
}

/// Stops the run gracefully on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_inner(
    config: &Config,
    options: &RunOptions,
    stats: &Arc<Stats>,
) -> Result<Unfinished, (Unfinished, RunError)> {
    let early = |e: RunError| (0, e);
    let (mut store, previous) = if options.start_over {
        Store::open_set_aside(&config.state.dir, &[crate::deadletter::FILE_NAME])
    } else {
        Store::open(&config.state.dir)
    }
    .map_err(|e| early(e.into()))?;
    // An in-process emulator starts empty every run, so a checkpoint from an earlier run
    // describes a collection that no longer exists: start over.
    let previous = match previous {
        Some(_) if config.target.emulator => {
            tracing::info!("target.emulator: the emulator starts empty, so the previous checkpoint is ignored");
            None
        }
        p => p,
    };
    let (mut files, mappings) = source_files(config).map_err(early)?;
    let (plans, carried) = plan_files(&mut files, previous.as_ref(), config.state.on_change).map_err(early)?;
    let resumed: u64 = files
        .iter()
        .map(|f| f.start.map_or(0, |p| p.rows()) + crate::checkpoint::ranges_len(&f.done_rows))
        .sum();
    stats.rows_resumed.store(resumed, Relaxed);
    if previous.is_some() {
        let skipped = files.iter().filter(|f| f.skip).count();
        tracing::info!(
            rows_done = resumed,
            files_done = skipped,
            "resuming from the checkpoint"
        );
    }
    let (endpoint, credentials) = if let Some(e) = &options.endpoint {
        (e.url.clone(), e.credentials.clone())
    } else if config.target.emulator {
        let why = "target.emulator = true needs the emulator's endpoint in RunOptions (the binary starts it)";
        return Err(early(RunError::Emulator(why.into())));
    } else {
        let creds = Credentials::load(config).map_err(|e| early(e.into()))?;
        (config.target.endpoint.clone().unwrap_or_default(), creds)
    };
    let state_err = |source| {
        early(RunError::State {
            dir: config.state.dir.clone(),
            source,
        })
    };
    let dead =
        DeadLetter::open(&config.state.dir, previous.as_ref().map_or(0, |c| c.dead_letter_len)).map_err(state_err)?;

    let schema = Schema::from_config(&config.collection);
    let batcher = Batcher::new(config.rate.batch_rows, config.collection.vectorize);
    let limiter = Arc::new(RowLimiter::new(config.rate.rows_per_second, config.rate.batch_rows));
    let target = Target {
        endpoint,
        region: config.target.region.clone(),
        api: config.target.api,
        locator: locator(config),
        ignore_unknown_fields: config.collection.ignore_unknown_fields,
        request_timeout: config.request_timeout(),
        connect_timeout: config.connect_timeout(),
        concurrency: config.rate.concurrency,
    };
    let sender = Arc::new(
        Sender::new(target, credentials, limiter, config.retry.clone(), stats.clone()).map_err(|e| early(e.into()))?,
    );
    let total_bytes: u64 = files
        .iter()
        .zip(&plans)
        .filter(|(f, _)| !f.skip)
        .map(|(_, p)| p.fingerprint.size)
        .sum();
    let progress = Progress::new(total_bytes, options.progress);
    tracing::info!(files = files.len(), bytes = total_bytes, "starting");

    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let reader_stats = stats.clone();
    let reader_files = files.clone();
    let reader = std::thread::Builder::new()
        .name("vikingsync-reader".into())
        .spawn(move || read_all(reader_files, mappings, schema, tx, reader_stats))
        .map_err(state_err)?;

    let tracker = Tracker::new(files.len(), |i| (files[i].start, plans[i].applied, plans[i].rejected));
    let rejected_before: u64 = plans.iter().map(|p| p.rejected).sum();
    // Rows read but not yet below the watermark, at most. Acknowledged rows above the watermark
    // are checkpointed (and skipped on resume), so this bounds memory and the checkpoint, not what
    // a crash re-sends; several requests' worth keeps a slow request from idling the others.
    let window = 4 * config.rate.concurrency * config.rate.batch_rows;
    let mut coordinator = Coordinator {
        files,
        plans,
        carried,
        store,
        batcher,
        tracker,
        dead,
        sender,
        stats: stats.clone(),
        in_flight: JoinSet::new(),
        concurrency: config.rate.concurrency,
        window,
        max_rejected: config.state.max_rejected_rows,
        rejected_before,
        primary_key: Arc::from(config.collection.primary_key.as_str()),
        commit_interval: config.state.commit_interval(),
        commit_rows: config.state.commit_rows,
        acked_since_commit: 0,
        last_commit: Instant::now(),
    };
    let outcome = coordinator.drive(rx, &progress).await;
    progress.finish();
    // Whatever stopped the run, abandon what is still in flight (those rows stay ahead of the
    // checkpoint) and commit what was acknowledged.
    coordinator.in_flight.abort_all();
    drop(std::mem::take(&mut coordinator.in_flight));
    let unfinished = coordinator.tracker.pending() as u64;
    let committed = coordinator.commit();
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    store = coordinator.store;
    drop(store);
    match (outcome, committed) {
        (Ok(()), Ok(())) => Ok(unfinished),
        (Err(e), _) => Err((unfinished, e)),
        (Ok(()), Err(e)) => Err((unfinished, e)),
    }
}

struct Coordinator {
    files: Vec<SourceFile>,
    plans: Vec<Plan>,
    carried: Vec<FileCheckpoint>,
    store: Store,
    batcher: Batcher,
    tracker: Tracker,
    dead: DeadLetter,
    sender: Arc<Sender>,
    stats: Arc<Stats>,
    in_flight: JoinSet<(Op, Result<BatchResult, SendError>)>,
    concurrency: usize,
    /// Rows read but not yet below the watermark, at most.
    window: usize,
    max_rejected: Option<u64>,
    /// Rows earlier runs of this backfill rejected (from the checkpoint).
    rejected_before: u64,
    primary_key: Arc<str>,
    commit_interval: Duration,
    commit_rows: u64,
    acked_since_commit: u64,
    last_commit: Instant,
}

/// How long in-flight requests may take to finish after a stop signal.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Coordinator {
    async fn drive(&mut self, mut rx: mpsc::Receiver<Item>, progress: &Progress) -> Result<(), RunError> {
        let mut input_open = true;
        let mut stopping: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            if stopping.is_none() {
                self.dispatch();
            }
            if stopping.is_some() && self.in_flight.is_empty() {
                return Err(RunError::Interrupted);
            }
            if !input_open && self.in_flight.is_empty() && self.batcher.is_empty() {
                break;
            }
            let can_take = input_open
                && stopping.is_none()
                && self.batcher.waiting_len() < MAX_WAITING
                && self.tracker.pending() < self.window;
            tokio::select! {
                biased;
                _ = &mut signal, if stopping.is_none() => {
                    tracing::warn!(in_flight = self.in_flight.len(), "stop requested: finishing requests in flight, then checkpointing");
                    stopping = Some(Instant::now());
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    let (op, result) = done.map_err(|e| RunError::Send(SendError::Fatal(format!("a sender task failed: {e}"))))?;
                    self.complete(op, result?)?;
                }
                item = rx.recv(), if can_take => {
                    match item {
                        Some(item) => {
                            self.take(item)?;
                            // Drain what is already waiting so batches fill before they go out.
                            while self.tracker.pending() < self.window && self.batcher.waiting_len() < MAX_WAITING {
                                match rx.try_recv() {
                                    Ok(item) => self.take(item)?,
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            input_open = false;
                            self.batcher.flush();
                        }
                    }
                }
                _ = tick.tick() => {
                    // Input is slower than the senders, or the window is full: send what we have.
                    if self.in_flight.len() < self.concurrency && !self.batcher.has_ready() {
                        self.batcher.flush();
                    }
                    // Rows a previous run finished only hold places: let the watermark pass them.
                    self.tracker.advance();
                    progress.update(&self.stats);
                    if self.acked_since_commit > 0
                        && (self.last_commit.elapsed() >= self.commit_interval || self.acked_since_commit >= self.commit_rows)
                    {
                        self.commit()?;
                    }
                    if stopping.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
                        return Err(RunError::Interrupted);
                    }
                }
            }
        }
        self.tracker.advance();
        progress.update(&self.stats);
        // Everything read must be acknowledged by now; anything else is a bug, and is said so.
        let pending = self.tracker.pending();
        if pending > 0 || self.tracker.files.iter().any(|f| !f.done()) {
            return Err(RunError::Send(SendError::Fatal(format!(
                "internal accounting error: {pending} rows read were never acknowledged; the checkpoint keeps                  them ahead of the committed position. Please report this"
            ))));
        }
        Ok(())
    }

    /// Makes the acknowledged prefix of every file durable, with the dead-letter length that
    /// belongs to it.
    fn commit(&mut self) -> Result<(), RunError> {
        self.tracker.advance();
        let dead_letter_len = self.dead.sync().map_err(|e| self.state_error(e))?;
        let mut files: Vec<FileCheckpoint> = self
            .files
            .iter()
            .zip(&self.plans)
            .zip(&self.tracker.files)
            .map(|((file, plan), progress)| FileCheckpoint {
                path: file.canonical.clone(),
                fingerprint: plan.fingerprint.clone(),
                position: progress.watermark,
                done: progress.done(),
                applied: progress.applied,
                rejected: progress.rejected,
                acknowledged_above: crate::checkpoint::merge_ranges(
                    &progress.acknowledged_above(),
                    &file.done_rows,
                    progress.watermark.map_or(0, |p| p.rows()),
                ),
            })
            .collect();
        files.extend(self.carried.iter().cloned());
        let mut cp = Checkpoint {
            version: crate::checkpoint::VERSION,
            seq: 0,
            committed_at: String::new(),
            dead_letter_len,
            files,
            checksum: String::new(),
        };
        self.store.commit(&mut cp)?;
        self.acked_since_commit = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn state_error(&self, source: std::io::Error) -> RunError {
        RunError::State {
            dir: self.store.dir().to_path_buf(),
            source,
        }
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.concurrency {
            let Some(batch) = self.batcher.pop_ready() else { break };
            let sender = self.sender.clone();
            // The sender hands every record back, applied or rejected: no copy of the batch.
            self.in_flight.spawn(async move {
                let op = batch.op;
                (op, sender.send(batch).await)
            });
        }
    }

    fn take(&mut self, item: Item) -> Result<(), RunError> {
        match item {
            Item::Row { record, end } => {
                self.stats.rows_read.fetch_add(1, Relaxed);
                self.tracker.read(&record.origin, end);
                self.batcher.push(record);
            }
            Item::Done { origin, end } => {
                self.tracker.already_done(&origin, end);
            }
            Item::Rejected { origin, end, entry } => {
                self.stats.rows_read.fetch_add(1, Relaxed);
                self.tracker.read(&origin, end);
                self.acked_since_commit += 1;
                self.reject(&origin, entry)?;
            }
            Item::FileEnd(i) => {
                self.tracker.read_to_end(i);
                tracing::debug!(file = %self.files[i].path.display(), "read to the end");
            }
            Item::Failed(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn reject(&mut self, origin: &Origin, entry: Entry) -> Result<(), RunError> {
        tracing::debug!(file = %entry.file, row = entry.row, error = %entry.error, "row rejected");
        // Written at once; the checkpoint records the length that goes with its acknowledgements,
        // and a resume cuts the file back to it, so each rejected row appears exactly once.
        self.dead.append(&entry).map_err(|e| self.state_error(e))?;
        self.tracker.rejected(origin);
        // The limit counts the whole backfill, earlier runs of it included.
        let rejected = self.stats.rejected.fetch_add(1, Relaxed) + 1 + self.rejected_before;
        match self.max_rejected {
            Some(limit) if rejected > limit => Err(RunError::TooManyRejected {
                rejected,
                limit,
                dead_letter: self.dead.path().to_path_buf(),
            }),
            _ => Ok(()),
        }
    }

    fn complete(&mut self, op: Op, result: BatchResult) -> Result<(), RunError> {
        self.stats.add_applied(op, result.applied.len() as u64);
        self.acked_since_commit += (result.applied.len() + result.rejected.len()) as u64;
        for rec in &result.applied {
            self.tracker.applied(&rec.origin);
        }
        self.batcher.acknowledge(
            result
                .applied
                .iter()
                .map(|r| &r.key)
                .chain(result.rejected.iter().map(|(r, _)| &r.key)),
        );
        let mut outcome = Ok(());
        for (rec, err) in result.rejected {
            // Deletes carry only their key: record it under the key's field name so it can be replayed.
            let record = serde_json::from_str(&rec.json).unwrap_or_else(|_| {
                let mut m = serde_json::Map::new();
                m.insert(self.primary_key.to_string(), rec.key.to_json());
                serde_json::Value::Object(m)
            });
            let entry = Entry {
                file: self.files[rec.origin.file].path.display().to_string(),
                row: rec.origin.row,
                key: Some(rec.key.to_json()),
                op: Some(rec.op),
                error: format!("refused by the server: {}", err.message),
                code: (!err.code.is_empty()).then(|| err.code.clone()),
                http_status: Some(err.status),
                request_id: err.request_id.clone(),
                record,
            };
            if let Err(e) = self.reject(&rec.origin, entry) {
                outcome = Err(e);
            }
        }
        self.tracker.advance();
        outcome
    }
}

/// What `vikingsync validate` found.
#[derive(Debug, Default)]
pub struct ValidateReport {
    pub files: usize,
    pub rows: u64,
    pub rejected: Vec<Entry>,
}

/// Reads the sources (up to `sample` rows per file) and types every row, sending nothing.
pub fn validate(config: &Config, sample: Option<u64>) -> Result<ValidateReport, RunError> {
    let (files, mappings) = source_files(config)?;
    let schema = Schema::from_config(&config.collection);
    let mut report = ValidateReport {
        files: files.len(),
        ..ValidateReport::default()
    };
    for (index, file) in files.iter().enumerate() {
        let name = file.path.display().to_string();
        let mut reader = source::open(&file.path, &file.options, None)?;
        let mut n = 0u64;
        while let Some(next) = reader.next_row() {
            if sample.is_some_and(|s| n >= s) {
                break;
            }
            n += 1;
            report.rows += 1;
            let origin = Origin {
                file: index,
                row: n,
                seq: report.rows,
            };
            let item = match next {
                Ok(raw) => typed(&schema, &mappings[file.mapping], raw, origin, &name),
                Err(ReadError::Row {
                    row, end, raw, message, ..
                }) => unreadable(
                    &name,
                    Origin { row, ..origin },
                    end,
                    raw,
                    message,
                    mappings[file.mapping].op,
                ),
                Err(e) => return Err(e.into()),
            };
            if let Item::Rejected { entry, .. } = item {
                report.rejected.push(entry);
            }
        }
    }
    Ok(report)
}

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
}

/// Reads the checkpoint (without taking the lock) and sets it against the sources now.
pub fn status(config: &Config) -> Result<StatusReport, RunError> {
    let dir = &config.state.dir;
    let checkpoint = crate::checkpoint::load(dir)?;
    let (files, _) = source_files(config)?;
    let mut taken = vec![false; checkpoint.as_ref().map_or(0, |c| c.files.len())];
    let mut out = Vec::new();
    for f in &files {
        let canonical = &f.canonical;
        let fp = Fingerprint::of(canonical).ok();
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
                let appendable = !matches!(source::detect(&f.path, f.options.format), Ok((Format::Parquet, _)));
                let standing = match crate::checkpoint::standing(canonical, &e.fingerprint, appendable) {
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
    })
}

/// `plain`: an uncompressed CSV/JSONL file, whose byte position is a share of its size.
fn file_status(path: PathBuf, size: u64, e: &FileCheckpoint, standing: String, plain: bool) -> FileStatus {
    FileStatus {
        path,
        size,
        rows_done: e.position.map_or(0, |p| p.rows()) + crate::checkpoint::ranges_len(&e.acknowledged_above),
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
