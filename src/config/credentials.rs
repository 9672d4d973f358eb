//! Credentials: where they come from (environment, `[auth]` files), what makes one malformed,
//! and keeping them out of every `Debug` and message.
//!
//! Owns: loading and checking AK/SK, the STS token and the V2 API key. Never: prints a secret.

use std::fmt;
use std::path::PathBuf;

use super::{ApiVersion, Config, ConfigError, Secret};

/// How requests are authenticated.
#[derive(Clone)]
pub enum Credentials {
    /// SignerV4 with an access key pair and an optional STS session token.
    Signed {
        access_key: String,
        secret_key: Secret,
        session_token: Option<Secret>,
    },
    /// V2 API key: `Authorization: Bearer`.
    ApiKey(Secret),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Signed {
                access_key,
                session_token,
                ..
            } => f
                .debug_struct("Signed")
                .field("access_key", access_key)
                .field("secret_key", &"***")
                .field("session_token", &session_token.as_ref().map(|_| "***"))
                .finish(),
            Credentials::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

impl Credentials {
    /// Credentials from the config's files, else the environment (`VIKINGDB_AK`/`VIKINGDB_SK`,
    /// or the official SDK's `VOLC_ACCESSKEY`/`VOLC_SECRETKEY`; `VIKINGDB_SESSION_TOKEN` /
    /// `VOLC_SESSION_TOKEN`; `VIKINGDB_API_KEY` for V2).
    pub fn load(config: &Config) -> Result<Credentials, ConfigError> {
        // A variable that is set but not UTF-8 would otherwise read as unset.
        for name in CREDENTIAL_VARIABLES {
            if let Some(v) = std::env::var_os(name)
                && v.to_str().is_none()
            {
                return Err(ConfigError::Credentials(format!(
                    "the environment variable {name} is not valid UTF-8; set it to the credential as plain ASCII"
                )));
            }
        }
        Credentials::load_with(config, &|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`Credentials::load`], with `env` standing in for the environment. Every credential is
    /// trimmed of surrounding whitespace (a file's trailing newline) and must then be non-empty
    /// printable ASCII without spaces; an error names the variable or file, never the value.
    pub fn load_with(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Credentials, ConfigError> {
        let auth = &config.auth;
        let read = |key: &str, p: &PathBuf| -> Result<String, ConfigError> {
            let full = config.base_dir.join(p);
            let what = format!("the [auth] {key} {}", full.display());
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ConfigError::Credentials(if e.kind() == std::io::ErrorKind::InvalidData {
                    format!("{what} is not valid UTF-8; it must hold the credential as plain ASCII")
                } else {
                    format!("cannot read {what}: {e}")
                })
            })?;
            clean_credential(&what, &text)
        };
        // The first of `names` that is set (and not empty), checked.
        let from_env = |names: &[&str]| -> Result<Option<String>, ConfigError> {
            for name in names {
                if let Some(v) = env(name) {
                    let what = format!("the environment variable {name}");
                    return clean_credential(&what, &v).map(Some);
                }
            }
            Ok(None)
        };
        // An API key is a V2 feature: a configured file with v1 is an error; the environment
        // variable is simply not used for v1 (AK/SK are).
        let api_key = match (&auth.api_key_file, config.target.api) {
            (Some(_), ApiVersion::V1) => {
                return Err(ConfigError::Credentials(
                    "[auth] api_key_file works only with api = \"v2\"; v1 signs with AK/SK".into(),
                ));
            }
            (Some(p), ApiVersion::V2) => Some(read("api_key_file", p)?),
            (None, ApiVersion::V2) => from_env(&["VIKINGDB_API_KEY"])?,
            (None, ApiVersion::V1) => None,
        };
        if let Some(key) = api_key {
            return Ok(Credentials::ApiKey(Secret::new(key)));
        }
        let ak = match &auth.access_key_file {
            Some(p) => Some(read("access_key_file", p)?),
            None => from_env(&["VIKINGDB_AK", "VOLC_ACCESSKEY"])?,
        };
        let sk = match &auth.secret_key_file {
            Some(p) => Some(read("secret_key_file", p)?),
            None => from_env(&["VIKINGDB_SK", "VOLC_SECRETKEY"])?,
        };
        let token = match &auth.session_token_file {
            Some(p) => Some(read("session_token_file", p)?),
            None => from_env(&["VIKINGDB_SESSION_TOKEN", "VOLC_SESSION_TOKEN"])?,
        };
        match (ak, sk) {
            (Some(access_key), Some(secret_key)) => Ok(Credentials::Signed {
                access_key,
                secret_key: Secret::new(secret_key),
                session_token: token.map(Secret::new),
            }),
            _ => Err(ConfigError::Credentials(
                "no credentials: set VIKINGDB_AK and VIKINGDB_SK (or VOLC_ACCESSKEY/VOLC_SECRETKEY), \
                 name files in [auth], or set VIKINGDB_API_KEY (v2)"
                    .into(),
            )),
        }
    }
}

/// The environment variables credentials may come from.
const CREDENTIAL_VARIABLES: [&str; 7] = [
    "VIKINGDB_API_KEY",
    "VIKINGDB_AK",
    "VOLC_ACCESSKEY",
    "VIKINGDB_SK",
    "VOLC_SECRETKEY",
    "VIKINGDB_SESSION_TOKEN",
    "VOLC_SESSION_TOKEN",
];

/// Trims surrounding whitespace (a file's trailing newline, `\r\n` included) and checks what is
/// left goes into an HTTP header as it is: non-empty, printable ASCII, no space. `what` names the
/// source in errors; the value itself never appears in one.
pub(super) fn clean_credential(what: &str, raw: &str) -> Result<String, ConfigError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ConfigError::Credentials(format!(
            "{what} is empty{}; it must hold the credential",
            if raw.is_empty() { "" } else { " (only whitespace)" }
        )));
    }
    let trimmed = if value.len() == raw.len() {
        ""
    } else {
        ", counted after trimming surrounding whitespace"
    };
    if let Some((i, c)) = value.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
        let kind = if c.is_control() {
            format!("a control character (U+{:04X})", u32::from(c))
        } else if c.is_whitespace() {
            format!("whitespace (U+{:04X})", u32::from(c))
        } else {
            format!("a non-ASCII character (U+{:04X})", u32::from(c))
        };
        return Err(ConfigError::Credentials(format!(
            "{what} is malformed: {kind} at character {}{trimmed}; credentials are printable ASCII \
             without spaces, so check for a stray newline, a pasted quote or an invisible character",
            i + 1,
        )));
    }
    Ok(value.to_string())
}
