//! The `vikingsync` command line: `run`, `serve`, `validate`, `status`, `emulator`.
//!
//! Owns: argument parsing, logging setup, exit codes and what is printed at the end, and the
//! process's signal handling: the first SIGINT/SIGTERM cancels one shutdown token that `run`,
//! `serve` and `emulator` react to (drain, commit); a second one exits at once (75), the
//! checkpoint consistent because every commit is an atomic rename.
//! Never: holds pipeline logic; it calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use tokio_util::sync::CancellationToken;

mod demo;

use std::sync::Arc;

use vikingsync::config::Config;
use vikingsync::pipeline::{self, RunOptions};
use vikingsync::report::Stats;
use vikingsync::service::{self, ServiceState};

/// Keeps Volcengine VikingDB collections in step with CSV, JSONL and Parquet files.
#[derive(Parser, Debug)]
#[command(name = "vikingsync", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// Log level filter (also RUST_LOG), e.g. `info` or `vikingsync=debug`.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One-shot backfill: push every row of the sources to the collection, then exit.
    ///
    /// Exit codes: 0 the run completed (rejected rows, if any, are in the dead-letter file);
    /// 2 rejected rows exceeded max_rejected_rows(_per_run) and the run stopped; 75 stopped by a
    /// signal (checkpointed: run again to continue); 78 unusable config or credentials; 1 any
    /// other failure.
    Run {
        /// The TOML config (see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Never draw the progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        no_progress: bool,
        /// Set the checkpoint and the dead-letter file aside (renamed, nothing deleted) and send
        /// every file again from the start. For a state directory that cannot be resumed, e.g. a
        /// dead-letter file shorter than its checkpoint says.
        #[arg(long)]
        start_over: bool,
        /// Also serve /healthz, /readyz and /metrics on this address while the run lasts.
        #[arg(long)]
        listen: Option<String>,
        /// `I/N` (0-based): one of N processes of a sharded backfill. Each sends the rows whose
        /// primary key hashes to I (every op of a key in one shard, in file order) and keeps its
        /// checkpoint and dead letters in `[state] dir`/shard-I-of-N. A Kubernetes Indexed Job
        /// passes its completion index.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<pipeline::Shard>,
    },
    /// Long-running service: watch the sources' directories, sync each file as it arrives and
    /// follow CSV/JSONL files that grow; /healthz, /readyz and /metrics over HTTP.
    ///
    /// Exit codes: 0 stopped by SIGTERM/SIGINT after draining and committing; 2 rejected rows
    /// exceeded max_rejected_rows; 78 unusable config or credentials; 1 any other failure (75: a second signal, no drain).
    Serve {
        /// The TOML config (see docs/config.md): the same as `run`'s.
        #[arg(long, short)]
        config: PathBuf,
        /// Address of the HTTP endpoints (default `[serve] listen`, 127.0.0.1:9898). The bound
        /// address is printed on stdout as `listening on http://ADDR`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Check the config and read the sources; report rows that would be rejected. Sends nothing.
    ///
    /// Exit codes: 0 every row is valid; 2 some rows would be rejected; 1 the config or a file is unusable.
    Validate {
        /// The TOML config (see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Read at most N rows of each file.
        #[arg(long)]
        sample: Option<u64>,
    },
    /// Show per-file progress from the checkpoint: rows done, applied, rejected, last commit.
    Status {
        /// The TOML config (see docs/config.md).
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    Emulator(vikingdb_emulator::EmulatorArgs),
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: a pipe or a pod's log gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Exit code of an unusable config (sysexits' EX_CONFIG, as Vector's `validate` uses): retrying
/// the same command cannot help.
const EX_CONFIG: u8 = pipeline::EX_CONFIG;
/// Exit code of a command line that does not parse (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            // --help and --version print to stdout and succeed.
            return if usage {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run {
                config,
                no_progress,
                start_over,
                listen,
                shard,
            } => run(config, no_progress, start_over, listen, shard, cancel_on_signal()).await,
            Command::Serve { config, listen } => serve(config, listen, cancel_on_signal()).await,
            Command::Validate { config, sample } => validate(config, sample),
            Command::Status { config, json } => status(config, json),
            Command::Emulator(args) => {
                match vikingdb_emulator::run_cli(args, cancel_on_signal().cancelled_owned()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(1)
                    }
                }
            }
        }
    })
}

/// A token cancelled by the first SIGINT or SIGTERM. Installed only for the commands that stop
/// gracefully (`run`, `emulator`): once installed, a signal no longer ends the process by itself.
fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        match wait_for_signal().await {
            Ok(()) => cancel.cancel(),
            Err(e) => {
                tracing::error!("cannot watch for SIGINT/SIGTERM, so a signal cannot stop gracefully: {e}");
                return;
            }
        }
        // A second signal: stop now. Every commit is an atomic rename, so the checkpoint on disk
        // is the last complete one; what was in flight is sent again by the next run.
        if wait_for_signal().await.is_ok() {
            eprintln!("second signal: exiting now without draining; the checkpoint is consistent");
            std::process::exit(i32::from(pipeline::EX_STOPPED));
        }
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        Err(_) => tokio::signal::ctrl_c().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

/// The config at `path`, or the exit code of an unusable one (its error printed).
fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// `I/N` with 0 ≤ I < N ≤ 10,000.
fn parse_shard(text: &str) -> Result<pipeline::Shard, String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not I/N (e.g. 0/3: the first of three shards)"))?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("shard index `{i}` is not a number"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("shard count `{n}` is not a number"))?;
    if count == 0 || count > 10_000 {
        return Err(format!("shard count {count} must be from 1 to 10000"));
    }
    if index >= count {
        return Err(format!(
            "shard index {index} must be below the count {count} (indexes start at 0)"
        ));
    }
    Ok(pipeline::Shard { index, count })
}

/// Starts the HTTP endpoints and prints the bound address on stdout.
async fn endpoints(addr: &str, state: Arc<ServiceState>, stop: CancellationToken) -> Result<(), String> {
    match service::http::start(addr, state, stop).await {
        Ok(bound) => {
            println!("listening on http://{bound}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            tracing::info!(%bound, "HTTP endpoints: /healthz /readyz /metrics");
            Ok(())
        }
        Err(e) => Err(format!("cannot listen on {addr}: {e}")),
    }
}

async fn serve(path: PathBuf, listen: Option<String>, shutdown: CancellationToken) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let local = match demo::start(&config).await {
        Ok(local) => local,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let endpoint = local.as_ref().map(|l| l.endpoint.clone());
    let options = RunOptions {
        progress: false,
        start_over: false,
        shutdown: shutdown.clone(),
        endpoint,
        shard: None,
    };
    let stats = Arc::new(Stats::default());
    let engine = match pipeline::Engine::connect(&config, &options, stats.clone()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let stall = config.retry.max_elapsed().max(std::time::Duration::from_secs(60));
    let state = Arc::new(ServiceState::new(stats.clone(), stall, false));
    let http_stop = CancellationToken::new();
    let addr = listen.unwrap_or_else(|| config.serve.listen.clone());
    if let Err(e) = endpoints(&addr, state.clone(), http_stop.clone()).await {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let log_stop = CancellationToken::new();
    service::spawn_progress_log(stats.clone(), PROGRESS_EVERY, false, log_stop.clone());
    let result = service::serve(config, options, engine, state).await;
    log_stop.cancel();
    http_stop.cancel();
    if let Some(local) = local {
        local.emulator.shutdown().await;
    }
    let s = stats.snapshot(std::time::Duration::ZERO);
    tracing::info!(
        rows_read = s.rows_read,
        applied = s.applied,
        rejected = s.rejected,
        requests = s.requests,
        retries = s.retries,
        throttles = s.throttles,
        "summary"
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// How often `run` (when stderr is not a terminal) and `serve` log a progress line.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(
    path: PathBuf,
    no_progress: bool,
    start_over: bool,
    listen: Option<String>,
    shard: Option<pipeline::Shard>,
    shutdown: CancellationToken,
) -> ExitCode {
    let started = std::time::Instant::now();
    let mut config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(sh) = shard {
        config.state.dir = config.state.dir.join(pipeline::shard_dir(sh));
    }
    let progress = !no_progress && std::io::stderr().is_terminal();
    let stats = Arc::new(Stats::default());
    let side_stop = CancellationToken::new();
    if let Some(addr) = &listen {
        let state = Arc::new(ServiceState::new(stats.clone(), config.retry.max_elapsed(), true));
        if let Err(e) = endpoints(addr, state, side_stop.clone()).await {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    if !std::io::stderr().is_terminal() {
        service::spawn_progress_log(stats.clone(), PROGRESS_EVERY, true, side_stop.clone());
    }
    let local = match demo::start(&config).await {
        Ok(local) => local,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let endpoint = local.as_ref().map(|l| l.endpoint.clone());
    let report = pipeline::run_with(
        config,
        RunOptions {
            progress,
            start_over,
            shutdown,
            endpoint,
            shard,
        },
        stats,
        started,
    )
    .await;
    side_stop.cancel();
    if let Some(local) = local {
        local.emulator.shutdown().await;
    }
    let s = &report.summary;
    tracing::info!(
        rows_read = s.rows_read,
        applied = s.applied,
        applied_upsert = s.applied_upsert,
        applied_update = s.applied_update,
        applied_delete = s.applied_delete,
        rejected = s.rejected,
        requests = s.requests,
        retries = s.retries,
        throttles = s.throttles,
        elapsed_secs = s.elapsed_secs,
        rows_per_second = s.rows_per_second,
        rate_cuts = s.rate_cuts,
        rate_now = s.rate_now,
        concurrency_now = s.concurrency_now,
        concurrency_peak = s.concurrency_peak,
        vectors = s.vectors.as_deref(),
        unfinished = report.unfinished,
        "summary"
    );
    println!("{}", s.render());
    if s.rejected > 0 {
        println!("dead letters   {}", report.dead_letter.display());
    }
    match report.error {
        None if s.balanced() => ExitCode::SUCCESS,
        None => {
            eprintln!("error: the run finished but read != applied + rejected; this is a bug, please report it");
            ExitCode::from(1)
        }
        Some(e) => {
            if report.unfinished > 0 {
                println!(
                    "unfinished     {} rows (not acknowledged when the run stopped)",
                    report.unfinished
                );
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn validate(path: PathBuf, sample: Option<u64>) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = demo::faults(&config) {
        eprintln!("error: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    match pipeline::validate(&config, sample) {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        Ok(report) => {
            for e in report.rejected.iter().take(50) {
                println!("{}: row {}: {}", e.file, e.row, e.error);
            }
            if report.rejected.len() > 50 {
                println!("… and {} more", report.rejected.len() - 50);
            }
            println!(
                "config ok; {} files, {} rows read, {} would be rejected",
                report.files,
                report.rows,
                report.rejected.len()
            );
            if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn status(path: PathBuf, json: bool) -> ExitCode {
    let config = match load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match pipeline::status(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
        return ExitCode::SUCCESS;
    }
    println!("state dir      {}", report.state_dir.display());
    match &report.running_pid {
        Some(pid) if !pid.is_empty() => println!("running        yes (pid {pid})"),
        Some(_) => println!("running        yes"),
        None => println!("running        no"),
    }
    match &report.last_commit {
        Some(t) => println!("last commit    {t} (commit #{})", report.commits),
        None => println!("last commit    none (no checkpoint yet)"),
    }
    println!("dead letters   {}", report.dead_letter_entries);
    if !report.shards.is_empty() {
        println!();
        println!(
            "{:<16} {:>7} {:>12} {:>10} {:>9}  last commit",
            "shard", "files", "rows passed", "applied", "rejected"
        );
        let (mut applied, mut rejected) = (0, 0);
        for sh in &report.shards {
            applied += sh.applied;
            rejected += sh.rejected;
            println!(
                "{:<16} {:>3}/{:<3} {:>12} {:>10} {:>9}  {}{}",
                sh.name,
                sh.files_done,
                sh.files,
                sh.rows_passed,
                sh.applied,
                sh.rejected,
                sh.last_commit.as_deref().unwrap_or("none"),
                if sh.running_pid.is_some() { " (running)" } else { "" }
            );
        }
        println!("{:<16} {:>7} {:>12} {:>10} {:>9}", "total", "", "", applied, rejected);
    }
    if !report.service.is_empty() {
        println!();
        println!("service files (serve)");
        for f in &report.service {
            match &f.error {
                Some(e) => println!("{:<8} {}  ({e})", f.state, f.path.display()),
                None => println!("{:<8} {}", f.state, f.path.display()),
            }
        }
    }
    println!();
    println!(
        "{:<6} {:>10} {:>10} {:>9} {:>7}  {:<18} file",
        "state", "rows done", "applied", "rejected", "bytes%", "standing"
    );
    for f in &report.files {
        let pct = match f.bytes_done {
            Some(b) if f.size > 0 => format!("{:.0}%", b as f64 * 100.0 / f.size as f64),
            _ if f.done => "100%".to_string(),
            _ => "-".to_string(),
        };
        println!(
            "{:<6} {:>10} {:>10} {:>9} {:>7}  {:<18} {}",
            if f.done {
                "done"
            } else if f.rows_done > 0 {
                "part"
            } else {
                "todo"
            },
            f.rows_done,
            f.applied,
            f.rejected,
            pct,
            f.standing,
            f.path.display()
        );
    }
    ExitCode::SUCCESS
}
