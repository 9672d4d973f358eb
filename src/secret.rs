//! A secret string (a secret key, a session token, an API key): shown by neither `Debug` nor
//! `Display`.
//!
//! Owns: holding a secret and handing it out for signing. Never: prints, logs or serialises it.
//! A leaf: it imports nothing of the crate, so that every stage that carries a secret (the
//! config, object storage's keys) can use it without importing another.

use std::fmt;

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
