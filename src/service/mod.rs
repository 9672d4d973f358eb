//! The long-running service (`vikingsync serve`): watches the sources' directories, takes each
//! file once it is complete, follows CSV/JSONL files that grow, and syncs in passes.
//!
//! Owns: discovery (file-system events from `notify` as a trigger, a periodic listing as the
//! source of truth), when a file is complete (renamed into place, or unchanged for `settle`),
//! arrival order, the file table (pending, active, done, failed) that `/metrics`, `status` and
//! the logs show, isolating a bad file so the others keep flowing, readiness, and the periodic
//! progress line of `run` and `serve`. Each pass is the pipeline's own (`Engine::pass`), so the
//! checkpoints are `run`'s and the two can take turns on one state directory.
//! Never: reads rows, sends, or writes the checkpoint itself (the pipeline does), installs
//! signal handlers (a stop arrives as the shutdown token), or imports the emulator.

pub mod http;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::CheckpointError;
use crate::config::Config;
use crate::pipeline::{Engine, PassStart, RunError, RunOptions, SourceFile, watched_files};
use crate::report::Stats;
use crate::schema::SourceMapping;
use crate::source::{self, ReadError};

/// Where a file of the service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Seen, not complete yet (still being written, or waiting for `settle`).
    Pending,
    /// In the current pass.
    Active,
    /// Every row read so far is acknowledged and committed.
    Done,
    /// Cannot be read (or changed under its checkpoint): left aside until it changes.
    Failed,
}

impl FileState {
    pub fn label(self) -> &'static str {
        match self {
            FileState::Pending => "pending",
            FileState::Active => "active",
            FileState::Done => "done",
            FileState::Failed => "failed",
        }
    }
}

/// One file the service knows.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub path: PathBuf,
    pub state: FileState,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    seen: Observed,
    /// Order of arrival.
    #[serde(skip)]
    arrival: u64,
    /// Renamed into place (complete at once) rather than written in place.
    #[serde(skip)]
    renamed: bool,
    /// Taken once: later growth is followed at once, with no settle wait.
    #[serde(skip)]
    taken: bool,
}

/// A file's size and modification time, and since when they have not changed.
#[derive(Debug, Clone, Copy)]
struct Observed {
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

/// What the endpoints read: the counters, the file table, readiness.
#[derive(Debug)]
pub struct ServiceState {
    pub stats: Arc<Stats>,
    files: Mutex<BTreeMap<PathBuf, FileEntry>>,
    /// The target answered (a ping at start, or any request since).
    reached: AtomicBool,
    /// Why the last pass failed, while it has not succeeded since.
    trouble: Mutex<Option<String>>,
    /// Rows finished (applied + rejected) at the last look, and when they last moved.
    progress_mark: Mutex<(u64, Instant)>,
    stall_after: Duration,
    /// `run --listen`: no file table, the files' counts come from the counters.
    one_shot: bool,
}

impl ServiceState {
    pub fn new(stats: Arc<Stats>, stall_after: Duration, one_shot: bool) -> ServiceState {
        ServiceState {
            stats,
            files: Mutex::new(BTreeMap::new()),
            reached: AtomicBool::new(one_shot),
            trouble: Mutex::new(None),
            progress_mark: Mutex::new((0, Instant::now())),
            stall_after,
            one_shot,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, FileEntry>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files by state: pending, active, done, failed.
    pub fn file_counts(&self) -> [u64; 4] {
        if self.one_shot {
            return [0, 0, self.stats.files_done.load(Relaxed), 0];
        }
        let mut n = [0u64; 4];
        for f in self.table().values() {
            n[f.state as usize] += 1;
        }
        n
    }

    /// The file table, for `status` and the state file.
    pub fn files(&self) -> Vec<FileEntry> {
        self.table().values().cloned().collect()
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.reached.load(Relaxed) {
            return Some("the target has not answered yet".into());
        }
        if let Some(t) = self.trouble.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(t);
        }
        let finished = self.stats.applied() + self.stats.rejected.load(Relaxed);
        let read = self.stats.rows_read.load(Relaxed);
        let mut mark = self.progress_mark.lock().unwrap_or_else(|e| e.into_inner());
        if finished != mark.0 {
            *mark = (finished, Instant::now());
        }
        if read > finished && mark.1.elapsed() > self.stall_after {
            return Some(format!(
                "stalled: {} rows read are waiting and none was acknowledged for {} s",
                read - finished,
                mark.1.elapsed().as_secs()
            ));
        }
        None
    }
}

/// The file the service keeps its file table in, beside the checkpoint (for `status`).
pub use crate::pipeline::SERVICE_FILE as STATE_FILE;

/// Runs the service until `options.shutdown` is cancelled. `Ok` after a clean stop.
pub async fn serve(
    config: Config,
    options: RunOptions,
    engine: Engine,
    state: Arc<ServiceState>,
) -> Result<(), RunError> {
    let mut config = config;
    config.follow = true;
    let serve = config.serve.clone();
    match engine.ping().await {
        Ok(_) => state.reached.store(true, Relaxed),
        Err(e) => tracing::warn!("the target does not answer yet: {e}"),
    }
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let renamed: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
    let _watcher = watch(&config, wake_tx, renamed.clone());
    let shutdown = options.shutdown.clone();
    let mut first = PassStart {
        start_over: options.start_over,
        forget_previous: config.target.emulator,
        expect_commit: 0,
    };
    // One mapping per `[[sources]]` entry: they do not change with the files.
    let mappings: Vec<_> = config.sources.iter().map(SourceMapping::from_config).collect();
    let mut arrivals = 0u64;
    let mut last_pass: Option<Vec<(PathBuf, u64, Option<SystemTime>)>> = None;
    let mut retry_at: Option<Instant> = None;
    tracing::info!(
        sources = config.sources.len(),
        settle_secs = serve.settle,
        rescan_secs = serve.rescan,
        "serving: watching the sources' directories"
    );
    loop {
        let ready = refresh(&config, &state, &renamed, &mut arrivals)?;
        let snapshot: Vec<_> = ready.iter().map(|f| observed(&f.canonical)).collect();
        let changed = last_pass.as_ref() != Some(&snapshot);
        let waiting = retry_at.is_some_and(|t| Instant::now() < t);
        if !ready.is_empty() && changed && !waiting {
            set_states(&state, &ready, FileState::Active, None);
            let outcome = engine
                .pass(&config, &options, ready.clone(), mappings.clone(), first)
                .await;
            // The next pass must find at least what this one committed.
            first = PassStart {
                expect_commit: state.stats.checkpoint_seq.load(Relaxed).max(first.expect_commit),
                ..PassStart::default()
            };
            match outcome {
                Ok(_) => {
                    state.reached.store(true, Relaxed);
                    *state.trouble.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    set_states(&state, &ready, FileState::Done, None);
                    last_pass = Some(snapshot);
                    retry_at = None;
                }
                Err((_, RunError::Interrupted)) => break,
                Err((_, e)) => match failed_file(&e).filter(|file| {
                    // Only a file of this pass can be set aside; anything else would fail the
                    // next pass the same way, at once, forever.
                    ready.iter().any(|f| &f.path == file || &f.canonical == file)
                }) {
                    Some(file) => {
                        // One bad file: set it aside, the others go on at once.
                        let why = e.to_string();
                        tracing::error!(file = %file.display(), error = %why, "file failed");
                        let bad: Vec<SourceFile> = ready
                            .iter()
                            .filter(|f| f.path == file || f.canonical == file)
                            .cloned()
                            .collect();
                        set_states(&state, &bad, FileState::Failed, Some(why));
                        let rest: Vec<SourceFile> = ready
                            .into_iter()
                            .filter(|f| f.path != file && f.canonical != file)
                            .collect();
                        set_states(&state, &rest, FileState::Pending, None);
                        last_pass = None;
                        write_state_file(&config, &state);
                        continue;
                    }
                    None if fatal(&e) => return Err(e),
                    None => {
                        // The target or the network: keep the files, report unready, try again.
                        tracing::error!(error = %e, "pass failed; trying again in 5 s");
                        state.reached.store(true, Relaxed);
                        *state.trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        set_states(&state, &ready, FileState::Pending, None);
                        last_pass = None;
                        retry_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                },
            }
            write_state_file(&config, &state);
            if shutdown.is_cancelled() {
                break;
            }
        }
        // Wait for an event, the next listing, or the stop.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = wake_rx.recv() => {
                // Let a burst of writes settle into one pass.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(serve.linger()) => {}
                }
            }
            _ = tokio::time::sleep(poll_interval(&config)) => {}
        }
    }
    write_state_file(&config, &state);
    tracing::info!("stopped: every acknowledged row is committed");
    Ok(())
}

/// How often the loop looks again without an event: the rescan interval, but often enough to
/// see a file settle on time.
fn poll_interval(config: &Config) -> Duration {
    config
        .serve
        .rescan()
        .min(config.serve.settle() / 2)
        .max(Duration::from_millis(10))
}

/// A number below 1e9 that changes with an object's ETag: a rewrite within the same second still
/// looks like a move.
fn etag_tag(etag: Option<&str>) -> u64 {
    etag.map_or(0, |e| {
        e.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 1_000_000_000
    })
}

fn observed(path: &Path) -> (PathBuf, u64, Option<SystemTime>) {
    match std::fs::metadata(path) {
        Ok(m) => (path.to_path_buf(), m.len(), m.modified().ok()),
        Err(_) => (path.to_path_buf(), 0, None),
    }
}

/// Lists the sources, updates the file table, and returns the files ready for a pass, in order
/// of arrival.
fn refresh(
    config: &Config,
    state: &ServiceState,
    renamed: &Mutex<HashSet<PathBuf>>,
    arrivals: &mut u64,
) -> Result<Vec<SourceFile>, RunError> {
    let (files, _) = watched_files(config)?;
    let settle = config.serve.settle();
    let now = Instant::now();
    let renamed: HashSet<PathBuf> = std::mem::take(&mut *renamed.lock().unwrap_or_else(|e| e.into_inner()));
    let mut table = state.table();
    let mut ready = Vec::new();
    for file in files {
        let (size, modified, was_renamed) = match &file.options.object {
            // An object appears whole (an upload completes atomically): complete when listed.
            // A rewrite (a new ETag, perhaps the same size) counts as a move.
            Some(o) => (
                o.size,
                Some(
                    SystemTime::UNIX_EPOCH
                        + Duration::from_secs(o.modified.unwrap_or(0))
                        + Duration::from_nanos(etag_tag(o.etag.as_deref())),
                ),
                true,
            ),
            None => {
                let (_, size, modified) = observed(&file.canonical);
                (
                    size,
                    modified,
                    renamed.contains(&file.path) || renamed.contains(&file.canonical),
                )
            }
        };
        let entry = table.entry(file.canonical.clone()).or_insert_with(|| {
            *arrivals += 1;
            FileEntry {
                path: file.path.clone(),
                state: FileState::Pending,
                error: None,
                seen: Observed {
                    size,
                    modified,
                    since: now,
                },
                arrival: *arrivals,
                renamed: false,
                taken: false,
            }
        });
        entry.renamed |= was_renamed;
        let moved = entry.seen.size != size || entry.seen.modified != modified;
        if moved {
            entry.seen = Observed {
                size,
                modified,
                since: now,
            };
            if entry.state == FileState::Failed {
                // Changed since it failed: try it again.
                entry.state = FileState::Pending;
                entry.error = None;
                entry.taken = false;
            }
        }
        if entry.state == FileState::Failed {
            continue;
        }
        let complete = entry.taken || entry.renamed || now.duration_since(entry.seen.since) >= settle;
        if complete {
            entry.taken = true;
            ready.push((entry.arrival, file));
        }
    }
    ready.sort_by_key(|(arrival, _)| *arrival);
    Ok(ready.into_iter().map(|(_, f)| f).collect())
}

fn set_states(state: &ServiceState, files: &[SourceFile], to: FileState, error: Option<String>) {
    let mut table = state.table();
    for f in files {
        if let Some(e) = table.get_mut(&f.canonical) {
            e.state = to;
            e.error = error.clone();
        }
    }
}

/// The file a pass error is about, when it is about one file.
fn failed_file(e: &RunError) -> Option<PathBuf> {
    match e {
        RunError::Source(r) => match r.as_ref() {
            ReadError::File { file, .. } => Some(file.clone()),
            ReadError::Row { .. } => None,
        },
        RunError::Checkpoint(CheckpointError::Changed { file, .. }) => Some(file.clone()),
        _ => None,
    }
}

/// Errors a later pass cannot fix: the service stops. A state directory locked by a `run` is
/// not one of them: `serve` waits for its turn (it holds the lock only during a pass).
fn fatal(e: &RunError) -> bool {
    match e {
        RunError::Checkpoint(CheckpointError::Locked { .. }) => false,
        RunError::Config(_)
        | RunError::TooManyRejected { .. }
        | RunError::State { .. }
        | RunError::Checkpoint(_)
        | RunError::Accounting(_)
        | RunError::Emulator(_) => true,
        _ => false,
    }
}

/// Keeps the file table beside the checkpoint, for `status` (best effort: a failure is logged).
fn write_state_file(config: &Config, state: &ServiceState) {
    let path = config.state.dir.join(STATE_FILE);
    let body = match serde_json::to_vec_pretty(&state.files()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("cannot encode {}: {e}", path.display());
            return;
        }
    };
    let tmp = config.state.dir.join(format!(".{STATE_FILE}.tmp"));
    if let Err(e) = std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, &path)) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Starts a watcher on every source's directory; events wake the loop, renames into place are
/// remembered. `None` (and a warning) when the platform or the directory refuses: the periodic
/// listing still finds every file.
fn watch(
    config: &Config,
    wake: mpsc::Sender<()>,
    renamed: Arc<Mutex<HashSet<PathBuf>>>,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{ModifyKind, RenameMode};
    use notify::{EventKind, RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if let EventKind::Modify(ModifyKind::Name(mode)) = event.kind {
            let to = match mode {
                RenameMode::To => event.paths.first(),
                RenameMode::Both => event.paths.get(1),
                _ => None,
            };
            if let Some(p) = to {
                renamed.lock().unwrap_or_else(|e| e.into_inner()).insert(p.clone());
            }
        }
        let _ = wake.try_send(());
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch the file system ({e}); listing every {:?} instead",
                config.serve.rescan()
            );
            return None;
        }
    };
    // Buckets have no change events: the periodic listing (`[serve] rescan`) finds new objects.
    let mut dirs: Vec<PathBuf> = config
        .sources
        .iter()
        .filter(|s| !source::object::is_object_url(&s.path))
        .map(|s| source::watch_dir(&s.path, &config.base_dir))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch ({e}); the periodic listing covers it");
        }
    }
    Some(watcher)
}

/// Logs a progress line every `every` until `stop` (for pods: stderr is not a terminal). `eta`:
/// a one-shot run, which knows how many bytes it has to read.
pub fn spawn_progress_log(stats: Arc<Stats>, every: Duration, eta: bool, stop: CancellationToken) {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let applied = stats.applied();
            let rejected = stats.rejected.load(Relaxed);
            let finished = applied + rejected;
            let since = std::mem::replace(&mut last, finished);
            let rate = match stats.rate_now.load(Relaxed) {
                u64::MAX => None,
                r => Some(r),
            };
            let rows_per_second = (finished.saturating_sub(since)) as f64 / every.as_secs_f64();
            let eta_secs = eta
                .then(|| {
                    let total = stats.bytes_total.load(Relaxed) as f64;
                    let done = stats.bytes_read.load(Relaxed) as f64;
                    let elapsed = started.elapsed().as_secs_f64();
                    (done > 0.0 && total > done).then(|| (elapsed * (total - done) / done).round() as u64)
                })
                .flatten();
            tracing::info!(
                rows_read = stats.rows_read.load(Relaxed),
                applied,
                rejected,
                rows_per_second = rows_per_second.round() as u64,
                rate_limit = rate,
                in_flight = stats.in_flight.load(Relaxed),
                eta_secs,
                "progress"
            );
        }
    });
}
