//! The coordinator: takes the reader's items, batches them, dispatches up to `concurrency`
//! requests, and takes their acknowledgements in any order.
//!
//! Owns: dispatch (per-key order through the batcher), acknowledgement accounting (the tracker's
//! watermarks), dead letters (written once, counted against `max_rejected_rows`), commit timing
//! (`commit_rows`, `commit_interval`, and a final commit whatever stopped the run), and the stop
//! grace period after the shutdown token is cancelled or a read failure ends the input (the rows
//! read before it are drained, then the failure is returned).
//! Never: talks HTTP or shapes requests (it sees the sender only through [`SendBatches`]), reads
//! files, installs signal handlers, or lets a checkpoint pass a row that is not acknowledged.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::plan::FilePlan;
use super::read::Item;
use crate::ack::Tracker;
use crate::batch::{Batch, Batcher};
use crate::checkpoint::{Checkpoint, FileCheckpoint, Store};
use crate::client::{BatchResult, SendError, Sender};
use crate::config::Config;
use crate::deadletter::{DeadLetter, Entry};
use crate::record::{Op, Origin};
use crate::report::{Progress, Stats};

/// What the coordinator needs of a sender: one batch in, every row back applied or rejected
/// (or the whole call failed).
pub trait SendBatches: Send + Sync + 'static {
    fn send(&self, batch: Batch) -> impl Future<Output = Result<BatchResult, SendError>> + Send;
    /// Requests that may be in flight now, when the sender adapts it; `None`: the settings' number.
    fn in_flight_limit(&self) -> Option<usize> {
        None
    }
}

impl SendBatches for Sender {
    fn send(&self, batch: Batch) -> impl Future<Output = Result<BatchResult, SendError>> + Send {
        Sender::send(self, batch)
    }
    fn in_flight_limit(&self) -> Option<usize> {
        Some(Sender::in_flight_limit(self))
    }
}

/// Records held back behind a busy key, at most, before the coordinator stops taking input.
const MAX_WAITING: usize = 10_000;

/// The coordinator's knobs, from the config.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Requests in flight when the sender does not adapt it (see [`SendBatches::in_flight_limit`]).
    pub concurrency: usize,
    pub batch_rows: usize,
    pub vectorize: bool,
    pub max_rejected: Option<u64>,
    pub max_rejected_per_run: Option<u64>,
    pub primary_key: Arc<str>,
    pub commit_interval: Duration,
    pub commit_rows: u64,
    /// How long in-flight requests may take to finish after a stop is requested, and the rows
    /// read before a read failure to be sent.
    pub stop_grace: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            concurrency: config
                .rate
                .concurrency
                .fixed()
                .unwrap_or(crate::limit::INITIAL_CONCURRENCY),
            batch_rows: config.rate.batch_rows,
            vectorize: config.collection.vectorize,
            max_rejected: config.state.max_rejected_rows,
            max_rejected_per_run: config.state.max_rejected_rows_per_run,
            primary_key: Arc::from(config.collection.primary_key.as_str()),
            commit_interval: config.state.commit_interval(),
            commit_rows: config.state.commit_rows,
            stop_grace: config.serve.drain_deadline(),
        }
    }
}

pub(super) struct Coordinator<S: SendBatches> {
    files: Arc<[FilePlan]>,
    /// Checkpoint entries of files not in this run, kept as they were.
    carried: Vec<FileCheckpoint>,
    store: Store,
    batcher: Batcher,
    tracker: Tracker,
    dead: DeadLetter,
    sender: Arc<S>,
    stats: Arc<Stats>,
    in_flight: JoinSet<(Op, Result<BatchResult, SendError>)>,
    concurrency: usize,
    /// Rows read but not yet below the watermark, at most.
    /// Rows per request: the read-ahead window is a few requests' worth per slot.
    batch_rows: usize,
    max_rejected: Option<u64>,
    max_rejected_per_run: Option<u64>,
    /// Rows earlier runs of this backfill rejected (from the checkpoint).
    rejected_before: u64,
    primary_key: Arc<str>,
    commit_interval: Duration,
    commit_rows: u64,
    stop_grace: Duration,
    /// Files whose end was already logged as done.
    announced: Vec<bool>,
    acked_since_commit: u64,
    last_commit: Instant,
    shutdown: CancellationToken,
}

impl<S: SendBatches> Coordinator<S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        files: Arc<[FilePlan]>,
        carried: Vec<FileCheckpoint>,
        store: Store,
        dead: DeadLetter,
        sender: Arc<S>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Coordinator<S> {
        let tracker = Tracker::new(files.len(), |i| (files[i].start, files[i].applied, files[i].rejected));
        let rejected_before = files.iter().map(|f| f.rejected).sum();
        let announced = files.iter().map(|f| f.skip).collect();
        Coordinator {
            files,
            carried,
            store,
            batcher: Batcher::new(settings.batch_rows, settings.vectorize),
            tracker,
            dead,
            sender,
            stats,
            in_flight: JoinSet::new(),
            concurrency: settings.concurrency,
            batch_rows: settings.batch_rows,
            max_rejected: settings.max_rejected,
            max_rejected_per_run: settings.max_rejected_per_run,
            rejected_before,
            primary_key: settings.primary_key,
            commit_interval: settings.commit_interval,
            commit_rows: settings.commit_rows,
            stop_grace: settings.stop_grace,
            announced,
            acked_since_commit: 0,
            last_commit: Instant::now(),
            shutdown,
        }
    }

    /// Runs until the input is exhausted and every row acknowledged, or something stops it.
    ///
    /// A read failure ends the input, not the run at once: the rows read before it are still sent
    /// and acknowledged (for up to the stop grace), then the failure is returned. It is returned
    /// even when something else stops the drain (a signal, a send that gives up, too many
    /// rejections), which is logged: the file and the place are what the user has to fix, and
    /// `serve` sets that file aside by it.
    pub async fn drive(&mut self, rx: mpsc::Receiver<Item>, progress: &Progress) -> Result<(), RunError> {
        let mut failed: Option<(RunError, Instant)> = None;
        let outcome = self.drive_until(rx, progress, &mut failed).await;
        match (failed, outcome) {
            (None, outcome) => outcome,
            (Some((read, _)), Ok(())) => Err(read),
            (Some((read, _)), Err(other)) => {
                tracing::warn!(error = %other, "the rows read before a read failure were not all sent");
                Err(read)
            }
        }
    }

    /// [`Coordinator::drive`]'s loop; a read failure is left in `failed`, and `Ok` then means
    /// that the rows read before it were drained (or the grace ran out).
    async fn drive_until(
        &mut self,
        mut rx: mpsc::Receiver<Item>,
        progress: &Progress,
        failed: &mut Option<(RunError, Instant)>,
    ) -> Result<(), RunError> {
        let mut input_open = true;
        let mut stopping: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shutdown.clone();
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        loop {
            if stopping.is_none() {
                self.dispatch();
            }
            if stopping.is_some() && self.in_flight.is_empty() {
                return Err(RunError::Interrupted);
            }
            if !input_open && self.in_flight.is_empty() && self.batcher.is_empty() {
                if failed.is_some() {
                    return Ok(());
                }
                break;
            }
            let can_take = input_open
                && stopping.is_none()
                && self.batcher.waiting_len() < MAX_WAITING
                && self.tracker.pending() < self.window();
            tokio::select! {
                biased;
                _ = &mut stop, if stopping.is_none() => {
                    tracing::warn!(in_flight = self.in_flight.len(), "stop requested: finishing requests in flight, then checkpointing");
                    stopping = Some(Instant::now());
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    let (op, result) = done.map_err(|e| RunError::Send(SendError::Internal(format!("a sender task failed: {e}"))))?;
                    self.complete(op, result?)?;
                }
                item = rx.recv(), if can_take => {
                    match item {
                        Some(item) => {
                            input_open = self.take_or_end(item, failed)?;
                            // Drain what is already waiting so batches fill before they go out.
                            while input_open
                                && self.tracker.pending() < self.window()
                                && self.batcher.waiting_len() < MAX_WAITING
                            {
                                match rx.try_recv() {
                                    Ok(item) => input_open = self.take_or_end(item, failed)?,
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
                    if self.in_flight.len() < self.limit() && !self.batcher.has_ready() {
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
                    if stopping.is_some_and(|t| t.elapsed() >= self.stop_grace) {
                        return Err(RunError::Interrupted);
                    }
                    if failed.as_ref().is_some_and(|(_, at)| at.elapsed() >= self.stop_grace) {
                        tracing::warn!(
                            in_flight = self.in_flight.len(),
                            "rows read before the failure were not all acknowledged in time: they stay ahead of the checkpoint"
                        );
                        return Ok(());
                    }
                }
            }
        }
        self.tracker.advance();
        progress.update(&self.stats);
        // Everything read must be acknowledged by now; anything else is a bug, and is said so.
        let pending = self.tracker.pending();
        if pending > 0 || self.tracker.files.iter().any(|f| !f.done()) {
            return Err(RunError::Send(SendError::Internal(format!(
                "accounting: {pending} rows read were never acknowledged; the checkpoint keeps them ahead of the \
                 committed position"
            ))));
        }
        Ok(())
    }

    /// After [`Coordinator::drive`], whatever stopped it: abandons what is still in flight (those
    /// rows stay ahead of the checkpoint) and commits what was acknowledged. Returns the rows read
    /// but not acknowledged, and the commit's outcome.
    pub fn finish(&mut self) -> (u64, Result<(), RunError>) {
        self.in_flight.abort_all();
        drop(std::mem::take(&mut self.in_flight));
        let unfinished = self.tracker.pending() as u64;
        (unfinished, self.commit())
    }

    /// Makes the acknowledged prefix of every file durable, with the dead-letter length that
    /// belongs to it.
    fn commit(&mut self) -> Result<(), RunError> {
        self.tracker.advance();
        let dead_letter_len = self.dead.sync().map_err(|e| self.state_error(e))?;
        let mut files: Vec<FileCheckpoint> = self
            .files
            .iter()
            .zip(&self.tracker.files)
            .map(|(file, progress)| FileCheckpoint {
                path: file.source.canonical.clone(),
                fingerprint: file.fingerprint.clone(),
                position: progress.watermark,
                done: progress.done(),
                applied: progress.applied,
                rejected: progress.rejected,
                acknowledged_above: crate::ack::merge_ranges(
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
        self.stats.checkpoint_seq.store(self.store.seq(), Relaxed);
        self.stats
            .rows_committed
            .store(self.stats.applied() + self.stats.rejected.load(Relaxed), Relaxed);
        self.announce();
        self.acked_since_commit = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// One log line per file whose rows are all acknowledged and committed.
    fn announce(&mut self) {
        for (i, progress) in self.tracker.files.iter().enumerate() {
            if progress.done() && !self.announced[i] {
                self.announced[i] = true;
                self.stats.files_done.fetch_add(1, Relaxed);
                tracing::info!(
                    file = %self.files[i].source.path.display(),
                    applied = progress.applied,
                    rejected = progress.rejected,
                    "file done"
                );
            }
        }
    }

    fn state_error(&self, source: std::io::Error) -> RunError {
        RunError::State {
            dir: self.store.dir().to_path_buf(),
            source,
        }
    }

    /// Requests that may be in flight now.
    fn limit(&self) -> usize {
        self.sender.in_flight_limit().unwrap_or(self.concurrency).max(1)
    }

    /// Rows read but not yet below the watermark, at most: four requests' worth per slot, so a
    /// slow request never idles the others, and memory follows the in-flight limit. Acknowledged
    /// rows above the watermark are checkpointed (and skipped on resume), so this bounds memory
    /// and the checkpoint, not what a crash re-sends.
    fn window(&self) -> usize {
        4 * self.limit() * self.batch_rows
    }

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.limit() {
            let Some(batch) = self.batcher.pop_ready() else { break };
            let sender = self.sender.clone();
            // The sender hands every record back, applied or rejected: no copy of the batch.
            self.in_flight.spawn(async move {
                let op = batch.op;
                (op, sender.send(batch).await)
            });
        }
    }

    /// As [`Coordinator::take`], except that a read failure ends the input: it is kept in
    /// `failed`, what the batcher holds goes out, and `false` says that nothing more is to be
    /// taken.
    fn take_or_end(&mut self, item: Item, failed: &mut Option<(RunError, Instant)>) -> Result<bool, RunError> {
        match item {
            Item::Failed(e) => {
                let e = RunError::from(e);
                tracing::warn!(error = %e, "reading stopped: sending the rows read before it, then stopping");
                *failed = Some((e, Instant::now()));
                self.batcher.flush();
                Ok(false)
            }
            other => self.take(other).map(|()| true),
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
                tracing::debug!(file = %self.files[i].source.path.display(), "read to the end");
            }
            // `take_or_end` keeps read failures from here; were one to arrive, it stops the run.
            Item::Failed(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn reject(&mut self, origin: &Origin, entry: Entry) -> Result<(), RunError> {
        tracing::debug!(file = %entry.file, row = entry.row, error = %entry.error, "row rejected");
        // Written at once; the checkpoint records the length that goes with its acknowledgements,
        // and a resume cuts the file back to it, so each rejected row appears exactly once.
        let entry_op = entry.op;
        self.dead.append(&entry).map_err(|e| self.state_error(e))?;
        self.tracker.rejected(origin)?;
        // The limit counts the whole backfill, earlier runs of it included.
        self.stats.add_rejected(entry_op);
        let rejected = self.stats.rejected.load(Relaxed) + self.rejected_before;
        let this_run = self.stats.rejected.load(Relaxed);
        match (self.max_rejected, self.max_rejected_per_run) {
            (Some(limit), _) if rejected > limit => Err(RunError::TooManyRejected {
                rejected,
                limit,
                dead_letter: self.dead.path().to_path_buf(),
                per_run: false,
            }),
            (_, Some(limit)) if this_run > limit => Err(RunError::TooManyRejected {
                rejected: this_run,
                limit,
                dead_letter: self.dead.path().to_path_buf(),
                per_run: true,
            }),
            _ => Ok(()),
        }
    }

    fn complete(&mut self, op: Op, result: BatchResult) -> Result<(), RunError> {
        self.stats.add_applied(op, result.applied.len() as u64);
        self.acked_since_commit += (result.applied.len() + result.rejected.len()) as u64;
        for rec in &result.applied {
            self.tracker.applied(&rec.origin)?;
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
                file: self.files[rec.origin.file].source.path.display().to_string(),
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

#[cfg(test)]
mod tests;
