//! `target.emulator = true`: the in-process VikingDB emulator the demo and tests sync into.
//!
//! Owns: turning the config's `[collection]`, `[rate]` and opaque `[emulator_faults]` table into
//! an emulator, starting it on a loopback port with a one-off key, and handing the pipeline the
//! endpoint and credentials that reach it.
//! Never: lives in the library: only the binary (the composition root) knows both the product
//! and the emulator.

use vikingdb_emulator::{AccessKey, CollectionSpec, Emulator, EmulatorConfig, FaultConfig};
use vikingsync::config::{Config, Credentials, Secret};
use vikingsync::pipeline::Endpoint;

/// `[emulator_faults]` delays: at most 1 hour (documented in docs/config.md, "Allowed ranges").
const MAX_FAULT_DELAY_MS: u64 = 3_600_000;

const ACCESS_KEY: &str = "AKLOCALEMULATOR";

/// The config's `[emulator_faults]` as the emulator's faults, checked: unknown keys, a
/// probability outside 0..=1 and a delay over 1 hour are errors that name the key.
pub fn faults(config: &Config) -> Result<Option<FaultConfig>, String> {
    let Some(table) = &config.emulator_faults else {
        return Ok(None);
    };
    let faults: FaultConfig = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e| format!("[emulator_faults]: {}", e.to_string().trim()))?;
    faults.check().map_err(|e| format!("[emulator_faults] {e}"))?;
    for (key, ms) in [
        ("latency_ms", faults.latency_ms),
        ("jitter_ms", faults.jitter_ms),
        ("slow_ms", faults.slow_ms),
    ] {
        if ms > MAX_FAULT_DELAY_MS {
            return Err(format!(
                "[emulator_faults] {key} = {ms} is out of range: it must be from 0 to {MAX_FAULT_DELAY_MS}"
            ));
        }
    }
    Ok(Some(faults))
}

/// A started emulator and where the pipeline reaches it.
pub struct Local {
    pub emulator: Emulator,
    pub endpoint: Endpoint,
}

/// Starts the emulator when the config asks for one (`target.emulator = true`), else `None`.
pub async fn start(config: &Config) -> Result<Option<Local>, String> {
    let faults = faults(config)?;
    if !config.target.emulator {
        return Ok(None);
    }
    let c = &config.collection;
    let name = c
        .name
        .clone()
        .or_else(|| c.resource_id.clone())
        .or_else(|| c.alias.clone())
        .unwrap_or_default();
    let secret: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..32).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
    };
    let spec = CollectionSpec {
        name: name.clone(),
        primary_key: c.primary_key.clone(),
        fields: c.fields.clone(),
        dim: c.dim,
        vectorize: c.vectorize,
        quota_rows_per_second: config.rate.rows_per_second,
        resource_id: c.resource_id.clone(),
        alias: c.alias.clone(),
    };
    let emu_config = EmulatorConfig {
        collections: vec![spec],
        keys: vec![AccessKey {
            access_key: ACCESS_KEY.into(),
            secret_key: secret.clone(),
            session_token: None,
        }],
        faults: faults.unwrap_or_default(),
        ..EmulatorConfig::default()
    };
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let emulator = vikingdb_emulator::start(emu_config, listen)
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    tracing::info!(endpoint = %emulator.endpoint(), collection = %name, "started the in-process emulator");
    let endpoint = Endpoint {
        url: emulator.endpoint(),
        credentials: Credentials::Signed {
            access_key: ACCESS_KEY.into(),
            secret_key: Secret::new(secret),
            session_token: None,
        },
    };
    Ok(Some(Local { emulator, endpoint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMULATED: &str = r#"
[target]
emulator = true
[collection]
name = "c"
primary_key = "id"
[collection.fields]
id = "string"
[[sources]]
path = "x.csv"
op = "upsert"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("sync.toml"), ".".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn faults_are_parsed_and_range_checked_naming_the_key() {
        let ok = parse(&format!(
            "{EMULATED}\n[emulator_faults]\nerror_before = 0.5\nslow_ms = 3600000\n"
        ))
        .expect("parses");
        let f = faults(&ok).expect("valid").expect("present");
        assert_eq!((f.error_before, f.slow_ms), (0.5, 3_600_000));
        assert_eq!(faults(&parse(EMULATED).expect("parses")), Ok(None));
        for (key, bad) in [
            ("jitter_ms", "3600001"),
            ("slow_ms", "9223372036854775807"),
            ("latency_ms", "-1"),
            ("error_before", "nan"),
            ("slow", "2"),
            ("no_such_fault", "1"),
        ] {
            let text = format!("{EMULATED}\n[emulator_faults]\n{key} = {bad}\n");
            let err = parse(&text).and_then(|c| faults(&c).map(|_| ())).expect_err(key);
            assert!(
                err.contains("[emulator_faults]") && err.contains(key),
                "{key} = {bad}: {err}"
            );
        }
    }
}
