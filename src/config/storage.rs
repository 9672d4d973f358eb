//! `[storage]` and the AWS environment → the settings of the object storage clients
//! (`s3://` and `tos://` sources).
//!
//! Owns: checking `[storage]`, the precedence of its keys over the environment, which keys an
//! object source is read with, and the TOS defaults (regional S3 endpoint, virtual-hosted
//! addressing, the Volcengine AK/SK). Never: shows a secret (errors name the variable or the
//! file), or lets object_store fall back to the instance metadata service: with no keys and no
//! web identity or container credentials, the config is unusable (exit 78) before any request.
//!
//! Precedence, highest first:
//! - endpoint: `[storage] endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`;
//!   then s3:// → AWS's regional endpoint, tos:// → `https://{bucket}.tos-s3-{region}.volces.com`.
//! - region: `[storage] region`, `AWS_REGION`, `AWS_DEFAULT_REGION`; then s3:// → `us-east-1`,
//!   tos:// → `[target] region`.
//! - addressing: `[storage] addressing`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`; then path style with
//!   an endpoint, virtual-hosted without one (TOS accepts only virtual-hosted).
//! - allow_http: `[storage] allow_http`, `AWS_ALLOW_HTTP`; then false.
//! - keys: `[storage]` key files, `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+
//!   `AWS_SESSION_TOKEN`); then tos:// only: the target's Volcengine AK/SK (`[auth]` files,
//!   `VIKINGDB_AK`/`VIKINGDB_SK`, `VOLC_ACCESSKEY`/`VOLC_SECRETKEY`); then s3:// only: a web
//!   identity token or the container credentials endpoint, if their variables are set.

use std::sync::Arc;

use super::{Config, ConfigError, Credentials, Secret, check_secs, limits};
use crate::source::object::{self, Addressing, Scheme, Storage, StorageKeys, StorageSettings};

impl Config {
    /// Checks `[storage]` (its endpoint's form and its timeout); run by `Config::check`.
    pub(super) fn check_storage(&self) -> Result<(), String> {
        if let Some(ep) = &self.storage.endpoint {
            limits::check_endpoint(ep).map_err(|e| e.replacen("[target] endpoint", "[storage] endpoint", 1))?;
            if ep.starts_with("http://") && self.storage.allow_http != Some(true) {
                return Err(format!(
                    "[storage] endpoint `{ep}` is plain http: set [storage] allow_http = true to use it \
                     (keys and data then cross the network unencrypted)"
                ));
            }
        }
        if let Some(t) = self.storage.request_timeout {
            check_secs("[storage] request_timeout", t, limits::TIMEOUT)?;
        }
        for (i, s) in self.sources.iter().enumerate() {
            if object::is_object_url(&s.path) {
                object::ObjectUrl::parse(&s.path).map_err(|e| format!("[[sources]] #{}: {e}", i + 1))?;
            }
        }
        Ok(())
    }

    /// The object storage clients of this config's `s3://` and `tos://` sources, built on first
    /// use from `[storage]` and the environment; an unusable setting is a `ConfigError`.
    pub fn object_storage(&self) -> Result<Arc<Storage>, ConfigError> {
        if let Some(s) = self.object_storage.get() {
            return Ok(s.clone());
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let uses = |scheme: &str| self.sources.iter().any(|s| s.path.starts_with(scheme));
        let s3 = if uses("s3://") {
            Some(self.storage_settings(Scheme::S3, &env)?)
        } else {
            None
        };
        let tos = if uses("tos://") {
            Some(self.storage_settings(Scheme::Tos, &env)?)
        } else {
            None
        };
        let storage = Storage::new(s3, tos)
            .map_err(|e| ConfigError::Credentials(format!("cannot start the object storage client: {e}")))?;
        Ok(self.object_storage.get_or_init(|| storage).clone())
    }

    /// The settings of one scheme, with `env` standing in for the environment.
    pub fn storage_settings(
        &self,
        scheme: Scheme,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StorageSettings, ConfigError> {
        let st = &self.storage;
        let invalid = |message: String| ConfigError::Credentials(message);
        let endpoint = match &st.endpoint {
            Some(e) => Some(e.clone()),
            None => {
                let from_env = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                    .iter()
                    .find_map(|n| env(n).map(|v| (*n, v)));
                match from_env {
                    Some((name, v)) => {
                        limits::check_endpoint(&v).map_err(|e| {
                            invalid(e.replacen("[target] endpoint", &format!("the environment variable {name}"), 1))
                        })?;
                        Some(v)
                    }
                    None => None,
                }
            }
        };
        let truthy = |v: String| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
        let allow_http = st
            .allow_http
            .unwrap_or_else(|| env("AWS_ALLOW_HTTP").is_some_and(truthy));
        if let Some(e) = &endpoint
            && e.starts_with("http://")
            && !allow_http
        {
            return Err(invalid(format!(
                "the object storage endpoint `{e}` is plain http: set AWS_ALLOW_HTTP=true or [storage] \
                 allow_http = true to use it"
            )));
        }
        let region = st
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| match scheme {
                Scheme::S3 => "us-east-1".to_string(),
                Scheme::Tos => self.target.region.clone(),
            });
        let addressing = st
            .addressing
            .unwrap_or_else(|| match env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").map(truthy) {
                Some(true) => Addressing::Virtual,
                Some(false) => Addressing::Path,
                None if endpoint.is_some() => Addressing::Path,
                None => Addressing::Virtual,
            });
        let keys = self.storage_keys(scheme, env)?;
        if keys.is_none() && scheme == Scheme::S3 {
            let delegated = [
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .any(|n| env(n).is_some());
            if !delegated {
                return Err(invalid(
                    "no keys for the s3:// sources: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
                     AWS_SESSION_TOKEN for temporary keys), name files in [storage] access_key_file / \
                     secret_key_file, or run with a web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
                        .into(),
                ));
            }
        }
        Ok(StorageSettings {
            endpoint,
            region,
            addressing,
            allow_http,
            keys,
            request_timeout: st.request_timeout.unwrap_or(60.0),
            connect_timeout: self.target.connect_timeout,
        })
    }

    fn storage_keys(
        &self,
        scheme: Scheme,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<StorageKeys>, ConfigError> {
        let st = &self.storage;
        let read = |key: &str, p: &std::path::PathBuf| -> Result<String, ConfigError> {
            let full = self.base_dir.join(p);
            let what = format!("the [storage] {key} {}", full.display());
            let text = std::fs::read_to_string(&full)
                .map_err(|e| ConfigError::Credentials(format!("cannot read {what}: {e}")))?;
            super::credentials::clean_credential(&what, &text)
        };
        match (&st.access_key_file, &st.secret_key_file) {
            (Some(a), Some(s)) => {
                let token = match &st.session_token_file {
                    Some(t) => Some(Secret::new(read("session_token_file", t)?)),
                    None => None,
                };
                return Ok(Some(StorageKeys {
                    access_key: read("access_key_file", a)?,
                    secret_key: Secret::new(read("secret_key_file", s)?),
                    session_token: token,
                    origin: "the [storage] key files".into(),
                }));
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Credentials(
                    "[storage] needs both access_key_file and secret_key_file, or neither".into(),
                ));
            }
        }
        let env_key = |name: &str| -> Result<Option<String>, ConfigError> {
            env(name)
                .map(|v| super::credentials::clean_credential(&format!("the environment variable {name}"), &v))
                .transpose()
        };
        match (env_key("AWS_ACCESS_KEY_ID")?, env_key("AWS_SECRET_ACCESS_KEY")?) {
            (Some(access_key), Some(secret)) => {
                return Ok(Some(StorageKeys {
                    access_key,
                    secret_key: Secret::new(secret),
                    session_token: env_key("AWS_SESSION_TOKEN")?.map(Secret::new),
                    origin: "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".into(),
                }));
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Credentials(
                    "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither".into(),
                ));
            }
        }
        if scheme == Scheme::Tos {
            return match Credentials::load_with(self, env) {
                Ok(Credentials::Signed {
                    access_key,
                    secret_key,
                    session_token,
                }) => Ok(Some(StorageKeys {
                    access_key,
                    secret_key,
                    session_token,
                    origin: "the Volcengine AK/SK of [auth] / VIKINGDB_AK".into(),
                })),
                Ok(Credentials::ApiKey(_)) | Err(_) => Err(ConfigError::Credentials(
                    "no keys for the tos:// sources: set VIKINGDB_AK and VIKINGDB_SK (or VOLC_ACCESSKEY / \
                     VOLC_SECRETKEY, or [auth] files; an API key cannot sign TOS requests), or AWS_ACCESS_KEY_ID \
                     and AWS_SECRET_ACCESS_KEY, or [storage] access_key_file / secret_key_file"
                        .into(),
                )),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;

    fn config(source: &str, storage: &str) -> Config {
        let text = format!(
            "[target]\nendpoint = \"https://api-vikingdb.vikingdb.cn-shanghai.volces.com\"\nregion = \"cn-shanghai\"\n\
             [collection]\nname = \"c\"\nprimary_key = \"id\"\n[collection.fields]\nid = \"string\"\n\
             [[sources]]\npath = \"{source}\"\nop = \"upsert\"\n{storage}"
        );
        Config::parse(&text, Path::new("t.toml"), PathBuf::from("/cfg")).expect("config")
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn s3_takes_the_aws_environment() {
        let c = config("s3://b-1/x/*.csv", "");
        let s = c
            .storage_settings(
                Scheme::S3,
                &env(&[
                    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                    ("AWS_ALLOW_HTTP", "true"),
                    ("AWS_REGION", "eu-west-1"),
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "SECRET-VALUE"),
                    ("AWS_SESSION_TOKEN", "TOKEN-VALUE"),
                ]),
            )
            .expect("settings");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s.region.as_str(), s.addressing, s.allow_http),
            ("eu-west-1", Addressing::Path, true)
        );
        let keys = s.keys.as_ref().expect("keys");
        assert_eq!(keys.access_key, "AKID");
        assert_eq!(keys.secret_key.expose(), "SECRET-VALUE");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("SECRET-VALUE") && !shown.contains("TOKEN-VALUE"),
            "{shown}"
        );
    }

    #[test]
    fn the_storage_table_overrides_the_environment() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ak"), "AKFILE\n").expect("ak");
        std::fs::write(dir.path().join("sk"), "SKFILE\n").expect("sk");
        let mut c = config(
            "s3://b-1/x/*.csv",
            "[storage]\nendpoint = \"https://minio.internal:9000\"\nregion = \"r1\"\naddressing = \"virtual\"\n\
             access_key_file = \"ak\"\nsecret_key_file = \"sk\"\n",
        );
        c.base_dir = dir.path().to_path_buf();
        let s = c
            .storage_settings(
                Scheme::S3,
                &env(&[
                    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                    ("AWS_REGION", "eu-west-1"),
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "SECRET"),
                ]),
            )
            .expect("settings");
        assert_eq!(s.endpoint.as_deref(), Some("https://minio.internal:9000"));
        assert_eq!((s.region.as_str(), s.addressing), ("r1", Addressing::Virtual));
        let keys = s.keys.clone().expect("keys");
        assert_eq!(
            (keys.access_key.as_str(), keys.secret_key.expose()),
            ("AKFILE", "SKFILE")
        );
        assert_eq!(
            s.bucket_endpoint(Scheme::S3, "b-1").as_deref(),
            Some("https://b-1.minio.internal:9000")
        );
    }

    #[test]
    fn tos_defaults_to_its_regional_endpoint_and_the_volcengine_keys() {
        let c = config("tos://bkt/x/*.jsonl", "");
        let s = c
            .storage_settings(
                Scheme::Tos,
                &env(&[("VIKINGDB_AK", "VOLCAK"), ("VIKINGDB_SK", "VOLCSK")]),
            )
            .expect("settings");
        assert_eq!((s.endpoint.as_deref(), s.region.as_str()), (None, "cn-shanghai"));
        assert_eq!(s.addressing, Addressing::Virtual);
        assert_eq!(s.keys.as_ref().expect("keys").access_key, "VOLCAK");
        assert_eq!(
            s.bucket_endpoint(Scheme::Tos, "bkt").as_deref(),
            Some("https://bkt.tos-s3-cn-shanghai.volces.com")
        );
        // AWS keys, when set, come first.
        let s = c
            .storage_settings(
                Scheme::Tos,
                &env(&[
                    ("VIKINGDB_AK", "VOLCAK"),
                    ("VIKINGDB_SK", "VOLCSK"),
                    ("AWS_ACCESS_KEY_ID", "AWSAK"),
                    ("AWS_SECRET_ACCESS_KEY", "AWSSK"),
                ]),
            )
            .expect("settings");
        assert_eq!(s.keys.expect("keys").access_key, "AWSAK");
        // No keys at all: an error that says what to set.
        let err = c.storage_settings(Scheme::Tos, &env(&[])).expect_err("no keys");
        assert!(err.to_string().contains("VIKINGDB_AK"), "{err}");
    }

    #[test]
    fn s3_without_keys_is_a_config_error_unless_a_web_identity_is_there() {
        let c = config("s3://b-1/x/*.csv", "");
        let err = c.storage_settings(Scheme::S3, &env(&[])).expect_err("no keys");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let half = c
            .storage_settings(Scheme::S3, &env(&[("AWS_ACCESS_KEY_ID", "AKID")]))
            .expect_err("half a pair");
        assert!(half.to_string().contains("both"), "{half}");
        let s = c
            .storage_settings(Scheme::S3, &env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]))
            .expect("delegated");
        assert!(s.keys.is_none());
    }

    #[test]
    fn plain_http_needs_allow_http_and_bad_tables_are_refused() {
        let c = config("s3://b-1/x/*.csv", "");
        let keys = [("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")];
        let mut with_http = keys.to_vec();
        with_http.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"));
        let err = c.storage_settings(Scheme::S3, &env(&with_http)).expect_err("http");
        assert!(err.to_string().contains("AWS_ALLOW_HTTP"), "{err}");
        let parse = |storage: &str| {
            let text = format!(
                "[target]\nendpoint = \"https://e.example\"\n[collection]\nname = \"c\"\nprimary_key = \"id\"\n\
                 [collection.fields]\nid = \"string\"\n[[sources]]\npath = \"s3://b-1/x.csv\"\nop = \"upsert\"\n{storage}"
            );
            Config::parse(&text, Path::new("t.toml"), PathBuf::from("/cfg")).map(|_| ())
        };
        assert!(parse("[storage]\nendpoint = \"http://h:1\"\n").is_err());
        assert!(parse("[storage]\nendpoint = \"http://h:1\"\nallow_http = true\n").is_ok());
        assert!(parse("[storage]\nendpont = \"https://h\"\n").is_err(), "unknown key");
        assert!(parse("[storage]\naddressing = \"sideways\"\n").is_err());
        assert!(parse("[storage]\nrequest_timeout = -1\n").is_err());
        assert!(parse("[storage]\nendpoint = \"ftp://h\"\n").is_err());
        let bad_url = "[target]\nendpoint = \"https://e.example\"\n[collection]\nname = \"c\"\nprimary_key = \"id\"\n\
                       [collection.fields]\nid = \"string\"\n[[sources]]\npath = \"s3://B/x.csv\"\nop = \"upsert\"\n";
        let err = Config::parse(bad_url, Path::new("t.toml"), PathBuf::from("/cfg")).expect_err("bucket");
        assert!(err.to_string().contains("[[sources]] #1"), "{err}");
    }
}
