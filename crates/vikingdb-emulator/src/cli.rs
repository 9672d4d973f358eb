//! The `vikingsync emulator` subcommand: flags, the collections file, env keys, serving until
//! shutdown.
//!
//! Owns: turning command-line flags, the `--collections` file and `VIKINGDB_AK`/`VIKINGDB_SK`
//! into an [`EmulatorConfig`], and the serve-until-shutdown loop (the binary owns the signals).
//! Never: prints a secret (only the access key ids), or starts anything but the emulator.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{AccessKey, EmulatorConfig, UpdateMissing};

/// Serve a local VikingDB data plane (V1 and V2) with injectable faults.
///
/// The first line on stdout is `listening on http://IP:PORT`. Keys come from the collections
/// file and from `VIKINGDB_AK` / `VIKINGDB_SK` (+ optional `VIKINGDB_SESSION_TOKEN`); with no
/// key at all, authentication is disabled. `/admin/stats`, `/admin/dump?collection=NAME` and
/// `PUT /admin/faults` are unauthenticated: bind to loopback.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The collections file (TOML: [[collections]], [[keys]], api_keys, [faults], seed, ...).
    #[arg(long, value_name = "FILE")]
    pub collections: PathBuf,
    /// Seed of the fault RNG (overrides the file).
    #[arg(long)]
    pub seed: Option<u64>,
    /// What an update of a missing key does (overrides the file).
    #[arg(long, value_enum)]
    pub update_missing: Option<UpdateMissing>,
    /// P(500 without applying) per write request.
    #[arg(long, value_name = "P")]
    pub error_before: Option<f64>,
    /// P(apply, then 500) per write request.
    #[arg(long, value_name = "P")]
    pub error_after: Option<f64>,
    /// P(connection closed without an answer, before or after applying) per write request.
    #[arg(long, value_name = "P")]
    pub drop_connection: Option<f64>,
    /// Delay added to every data-plane request (ms).
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// Extra uniform random delay 0..=MS on every data-plane request.
    #[arg(long, value_name = "MS")]
    pub jitter_ms: Option<u64>,
    /// P(extra --slow-ms delay) per write request.
    #[arg(long, value_name = "P")]
    pub slow: Option<f64>,
    /// The extra delay of a slow request (ms).
    #[arg(long, value_name = "MS")]
    pub slow_ms: Option<u64>,
}

impl EmulatorArgs {
    /// The config: the file, then the env key, then the flags.
    pub(super) fn config(&self) -> anyhow::Result<EmulatorConfig> {
        let text = std::fs::read_to_string(&self.collections)
            .with_context(|| format!("cannot read {}", self.collections.display()))?;
        let mut config =
            EmulatorConfig::from_toml_str(&text).with_context(|| format!("in {}", self.collections.display()))?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (env("VIKINGDB_AK"), env("VIKINGDB_SK")) {
            (Some(access_key), Some(secret_key)) => config.keys.push(AccessKey {
                access_key,
                secret_key,
                session_token: env("VIKINGDB_SESSION_TOKEN"),
            }),
            (None, None) => {}
            _ => anyhow::bail!("set both VIKINGDB_AK and VIKINGDB_SK, or neither"),
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(mode) = self.update_missing {
            config.update_missing = mode;
        }
        let f = &mut config.faults;
        let overrides = [
            (&mut f.error_before, self.error_before),
            (&mut f.error_after, self.error_after),
            (&mut f.drop_connection, self.drop_connection),
            (&mut f.slow, self.slow),
        ];
        for (slot, value) in overrides {
            if let Some(v) = value {
                *slot = v;
            }
        }
        for (slot, value) in [
            (&mut f.latency_ms, self.latency_ms),
            (&mut f.jitter_ms, self.jitter_ms),
            (&mut f.slow_ms, self.slow_ms),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        config.check().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

/// Runs the emulator until `shutdown` completes (the binary completes it on SIGINT or SIGTERM).
pub async fn run_cli(args: EmulatorArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config = args.config()?;
    if config.keys.is_empty() && config.api_keys.is_empty() {
        tracing::warn!("no keys configured: authentication is disabled");
    } else {
        let access_keys: Vec<&str> = config.keys.iter().map(|k| k.access_key.as_str()).collect();
        tracing::info!(?access_keys, api_keys = config.api_keys.len(), "authentication enabled");
    }
    let names: Vec<String> = config.collections.iter().map(|c| c.name.clone()).collect();
    let emulator = super::start(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", emulator.endpoint())?;
        out.flush()?;
    }
    tracing::info!(collections = ?names, "emulator serving; stop with Ctrl-C");
    shutdown.await;
    tracing::info!(stats = ?emulator.stats(), "emulator stopping");
    emulator.shutdown().await;
    Ok(())
}
