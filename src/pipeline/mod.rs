//! The pipeline: wires reader → schema → batcher → limiter → sender → tracker/dead-letter.
//!
//! Owns: the `run` entry point and its wiring (state directory, plan, reader thread, sender,
//! coordinator, in that order), and the types a run reports with (`RunOptions`, `RunError`,
//! `RunReport`). The jobs live in their own files: `plan` (files against the checkpoint), `read`
//! (the reader thread), `coordinator` (dispatch, acknowledgements, dead letters, commits, the stop
//! grace period), `validate` and `status`.
//! Never: shapes requests (batch), talks HTTP (client), decides validity (schema), or installs
//! signal handlers: a stop arrives as the `shutdown` token of [`RunOptions`]. Memory is bounded:
//! the channel, the batcher's queues and the in-flight window are all capped.

mod coordinator;
mod plan;
mod read;
mod status;
mod validate;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointError, Store};
use crate::client::{Flow, Locator, PackedCheck, SendError, Sender, Target};
use crate::config::{ApiVersion, Config, ConfigError, Credentials, VectorEncoding};
use crate::deadletter::DeadLetter;
use crate::limit::{ConcurrencyController, RateController};
use crate::report::{Progress, Stats, Summary};
use crate::schema::Schema;
use crate::source::ReadError;

pub use coordinator::SendBatches;
pub use plan::{FilePlan, RunPlan, SourceFile, plan_files, source_files, watched_files};
pub use status::{FileStatus, SERVICE_FILE, ServiceFile, ShardStatus, StatusReport, status};
pub use validate::{ValidateReport, validate};

use coordinator::{Coordinator, Settings};
pub use read::Shard;
use read::{CHANNEL_ROWS, read_all};

/// Why a run stopped early. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Source(Box<ReadError>),
    #[error("{0}")]
    Send(#[from] SendError),
    #[error(
        "{rejected} rows were rejected {}, more than {} = {limit}; see {dead_letter}",
        if *.per_run { "by this run" } else { "in this backfill" },
        if *.per_run { "max_rejected_rows_per_run" } else { "max_rejected_rows" }
    )]
    TooManyRejected {
        rejected: u64,
        limit: u64,
        dead_letter: PathBuf,
        /// The per-run limit (`max_rejected_rows_per_run`), not the backfill's.
        per_run: bool,
    },
    #[error("state directory {dir}: {source}")]
    State { dir: PathBuf, source: std::io::Error },
    #[error("cannot start the emulator: {0}")]
    Emulator(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("stopped by a signal; progress is checkpointed, run the same command again to continue")]
    Interrupted,
    #[error(
        "internal accounting error: {0}; the checkpoint keeps unacknowledged rows ahead of its position. Please report this"
    )]
    Accounting(#[from] crate::ack::AckError),
}

impl From<ReadError> for RunError {
    fn from(e: ReadError) -> Self {
        RunError::Source(Box::new(e))
    }
}

/// Exit code of an unusable config or credentials (sysexits' EX_CONFIG, as Vector's `validate`
/// uses): running the same command again cannot help, so a Job should fail at once.
pub const EX_CONFIG: u8 = 78;
/// Exit code of a run stopped by a signal (sysexits' EX_TEMPFAIL): the checkpoint is consistent,
/// the same command continues; an evicted pod is not a failed backfill.
pub const EX_STOPPED: u8 = 75;

impl RunError {
    /// The process exit code: 2 too many rejected rows, 78 an unusable config or credentials, 75
    /// stopped by a signal, 1 everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::TooManyRejected { .. } => 2,
            RunError::Config(_) | RunError::Emulator(_) => EX_CONFIG,
            RunError::Interrupted => EX_STOPPED,
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
    /// Cancelled to stop the run: requests in flight finish (for up to 10 s), what was
    /// acknowledged is committed, and the run ends with [`RunError::Interrupted`].
    pub shutdown: CancellationToken,
    /// Set the previous checkpoint and dead-letter file aside and start from the beginning.
    pub start_over: bool,
    /// The data plane to talk to; `None` = `[target] endpoint` with the credentials found by
    /// `Credentials::load`. Required for `target.emulator = true` (the caller starts it).
    pub endpoint: Option<Endpoint>,
    /// `run --shard I/N`: this process sends the rows whose primary key hashes to shard I (its
    /// checkpoint and dead letters are the caller's business: `main` gives it its own state dir).
    pub shard: Option<Shard>,
}

/// A VikingDB data plane and the credentials that reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://host[:port]`.
    pub url: String,
    pub credentials: Credentials,
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
    run_with(config, options, stats, started).await
}

/// [`run`] with counters the caller also reads (`--listen`'s `/metrics`).
pub async fn run_with(config: Config, options: RunOptions, stats: Arc<Stats>, started: Instant) -> RunReport {
    let dead_letter_path = config.state.dir.join(crate::deadletter::FILE_NAME);
    let result = async {
        let engine = Engine::connect(&config, &options, stats.clone()).map_err(|e| (0, e))?;
        let (files, mappings) = source_files(&config).map_err(|e| (0, e))?;
        let first = PassStart {
            start_over: options.start_over,
            forget_previous: config.target.emulator,
            expect_commit: 0,
        };
        engine.pass(&config, &options, files, mappings, first).await
    }
    .await;
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

/// The state directory of one shard, under `[state] dir`: `shard-I-of-N`.
pub fn shard_dir(shard: Shard) -> String {
    format!("shard-{}-of-{}", shard.index, shard.count)
}

/// How a pass treats the state directory's previous checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassStart {
    /// Set the checkpoint and dead-letter file aside first (`--start-over`).
    pub start_over: bool,
    /// Ignore the previous checkpoint (an in-process emulator starts empty).
    pub forget_previous: bool,
    /// The checkpoint must be at least this commit (`serve`: what its last pass committed). A
    /// lower one means the state directory was emptied or replaced between passes, and a pass
    /// from it would send every file again.
    pub expect_commit: u64,
}

/// What a run or a service builds once: the sender (its HTTP client and flow controllers) and
/// the counters. Each pass over files reuses it, so the controllers keep what they learned.
pub struct Engine {
    sender: Arc<Sender>,
    stats: Arc<Stats>,
    /// `vector_encoding = "auto"`'s verdict, once a check settled it (for the process: `serve`
    /// checks once, not every pass).
    vectors: std::sync::Mutex<Option<VectorEncoding>>,
}

impl Engine {
    /// Credentials, the flow controllers and the HTTP client, from the config.
    pub fn connect(config: &Config, options: &RunOptions, stats: Arc<Stats>) -> Result<Engine, RunError> {
        let (endpoint, credentials) = if let Some(e) = &options.endpoint {
            (e.url.clone(), e.credentials.clone())
        } else if config.target.emulator {
            let why = "target.emulator = true needs the emulator's endpoint in RunOptions (the binary starts it)";
            return Err(RunError::Emulator(why.into()));
        } else {
            let creds = Credentials::load(config)?;
            (config.target.endpoint.clone().unwrap_or_default(), creds)
        };
        let max_request_rows = if config.collection.vectorize {
            1
        } else {
            config.rate.batch_rows
        };
        let flow = Flow {
            rate: Arc::new(RateController::new(config.rate.rows_per_second, max_request_rows)),
            async_rate: Arc::new(RateController::new(config.rate.async_rows_per_second, max_request_rows)),
            concurrency: Arc::new(ConcurrencyController::new(
                config.rate.concurrency.fixed(),
                config.rate.max_concurrency,
            )),
        };
        let target = Target {
            endpoint,
            region: config.target.region.clone(),
            api: config.target.api,
            locator: locator(config),
            ignore_unknown_fields: config.collection.ignore_unknown_fields,
            request_timeout: config.request_timeout(),
            connect_timeout: config.connect_timeout(),
            max_concurrency: config.rate.concurrency.fixed().unwrap_or(config.rate.max_concurrency),
            async_upsert: config.collection.async_upsert,
        };
        let sender = Arc::new(Sender::new(
            target,
            credentials,
            flow,
            config.retry.clone(),
            stats.clone(),
        )?);
        Ok(Engine {
            sender,
            stats,
            vectors: std::sync::Mutex::new(None),
        })
    }

    /// The counters every pass bumps.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Whether the target answers HTTP (see [`Sender::ping`]).
    pub async fn ping(&self) -> Result<u16, String> {
        self.sender.ping().await
    }

    /// The wire form of this pass's vectors (see [`VectorEncoding`]). `"auto"` on V2 checks once
    /// a process, with the first row the pass will send as an upsert with a vector held as `f32`s
    /// (a Parquet list, a short JSONL array) whose key no earlier row of the pass touches (see
    /// [`read::first_packed`]): that row goes packed, is fetched back and compared bit for bit,
    /// and is sent again as numbers at once unless the match was exact (the pass sends it again
    /// in its place too). Exact: packed from then on. Other values, a packed vector refused, an
    /// answer that cannot tell: arrays from then on. No such row, or a check that could not
    /// finish: arrays for this pass, and a later pass looks again.
    async fn settle_vectors(
        &self,
        config: &Config,
        files: &Arc<[FilePlan]>,
        mappings: &[crate::schema::SourceMapping],
        shard: Option<Shard>,
        shutdown: &CancellationToken,
    ) -> VectorEncoding {
        let c = &config.collection;
        match c.vector_encoding {
            VectorEncoding::Auto if config.target.api == ApiVersion::V2 && !c.vectorize => {}
            VectorEncoding::Auto => return VectorEncoding::Array,
            settled => return settled,
        }
        if let Some(settled) = *self.vectors.lock().unwrap_or_else(|e| e.into_inner()) {
            return settled;
        }
        let arrays = Schema::from_config(c);
        let mut packs = arrays.clone();
        packs.vector_encoding = VectorEncoding::Base64;
        let (files, mappings) = (files.clone(), mappings.to_vec());
        let found = match tokio::task::spawn_blocking(move || {
            read::first_packed(&files, &mappings, &arrays, &packs, shard)
        })
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "vector_encoding auto: looking for a row to check with failed; vectors go as arrays");
                None
            }
        };
        let Some(probe) = found else {
            return VectorEncoding::Array;
        };
        let check = tokio::select! {
            check = self.sender.check_packed(&probe.packed, &probe.arrays, &probe.field, &probe.values) => check,
            () = shutdown.cancelled() => PackedCheck::Failed("a stop was requested".into()),
        };
        let settled = if check == PackedCheck::Exact {
            tracing::info!(row = %probe.place, "vector_encoding auto: {check}; vectors go packed (base64)");
            VectorEncoding::Base64
        } else {
            tracing::warn!(row = %probe.place, "vector_encoding auto: {check}; vectors go as arrays of numbers");
            VectorEncoding::Array
        };
        if check.settles() {
            *self.vectors.lock().unwrap_or_else(|e| e.into_inner()) = Some(settled);
        }
        *self.stats.vectors.lock().unwrap_or_else(|e| e.into_inner()) = Some(match settled {
            VectorEncoding::Base64 => format!("packed (base64): {check} ({})", probe.place),
            _ => format!("arrays: {check} ({})", probe.place),
        });
        settled
    }

    /// One pass: `files` set against the state directory's checkpoint, read to their end (or
    /// their last complete line), every row acknowledged, committed. Files of the checkpoint
    /// that are not in `files` are carried over unchanged.
    pub async fn pass(
        &self,
        config: &Config,
        options: &RunOptions,
        files: Vec<SourceFile>,
        mappings: Vec<crate::schema::SourceMapping>,
        start: PassStart,
    ) -> Result<Unfinished, (Unfinished, RunError)> {
        let early = |e: RunError| (0, e);
        let stats = &self.stats;
        let (store, previous) = if start.start_over {
            Store::open_set_aside(&config.state.dir, &[crate::deadletter::FILE_NAME])
        } else {
            Store::open(&config.state.dir)
        }
        .map_err(|e| early(e.into()))?;
        let found = previous.as_ref().map_or(0, |c| c.seq);
        if found < start.expect_commit {
            return Err(early(RunError::Checkpoint(CheckpointError::Replaced {
                dir: config.state.dir.clone(),
                what: format!(
                    "emptied or replaced between two passes of `serve` (its checkpoint went back from commit #{} to {})",
                    start.expect_commit,
                    if found == 0 {
                        "none".to_string()
                    } else {
                        format!("#{found}")
                    }
                ),
            })));
        }
        let previous = match previous {
            Some(_) if start.forget_previous => {
                tracing::info!("target.emulator: the emulator starts empty, so the previous checkpoint is ignored");
                None
            }
            p => p,
        };
        let RunPlan { files, carried } = plan_files(files, previous.as_ref(), config.state.on_change).map_err(early)?;
        let files: Arc<[FilePlan]> = files.into();
        let resumed: u64 = files.iter().map(FilePlan::resumed_rows).sum();
        stats.rows_resumed.store(resumed, Relaxed);
        if previous.is_some() && !config.follow {
            let skipped = files.iter().filter(|f| f.skip).count();
            tracing::info!(
                rows_done = resumed,
                files_done = skipped,
                "resuming from the checkpoint"
            );
        }
        let state_err = |source| {
            early(RunError::State {
                dir: config.state.dir.clone(),
                source,
            })
        };
        let dead = DeadLetter::open(&config.state.dir, previous.as_ref().map_or(0, |c| c.dead_letter_len))
            .map_err(state_err)?;
        let mut schema = Schema::from_config(&config.collection);
        schema.vector_encoding = self
            .settle_vectors(config, &files, &mappings, options.shard, &options.shutdown)
            .await;
        let total_bytes: u64 = files.iter().filter(|f| !f.skip).map(|f| f.fingerprint.size).sum();
        stats.bytes_total.fetch_add(total_bytes, Relaxed);
        let progress = Progress::new(total_bytes, options.progress);
        if !config.follow {
            tracing::info!(files = files.len(), bytes = total_bytes, "starting");
        }

        let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
        let shard = options.shard;
        let threads = config.read.typing_threads();
        let reader_stats = stats.clone();
        let reader_files = files.clone();
        let reader = std::thread::Builder::new()
            .name("vikingsync-reader".into())
            .spawn(move || read_all(reader_files, mappings, schema, tx, reader_stats, shard, threads))
            .map_err(state_err)?;

        let mut coordinator = Coordinator::new(
            Settings::from_config(config),
            files,
            carried,
            store,
            dead,
            self.sender.clone(),
            stats.clone(),
            options.shutdown.clone(),
        );
        let outcome = coordinator.drive(rx, &progress).await;
        progress.finish();
        // Whatever stopped the pass, abandon what is still in flight (those rows stay ahead of
        // the checkpoint) and commit what was acknowledged.
        let (unfinished, committed) = coordinator.finish();
        let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        // The state directory's lock goes with the coordinator, after the reader has stopped.
        drop(coordinator);
        match (outcome, committed) {
            (Ok(()), Ok(())) => Ok(unfinished),
            (Err(e), _) => Err((unfinished, e)),
            (Ok(()), Err(e)) => Err((unfinished, e)),
        }
    }
}
