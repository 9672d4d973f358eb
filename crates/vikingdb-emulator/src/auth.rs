//! Verification of incoming requests: SignerV4 (recomputed with `vikingdb_types::sign`, the very
//! code vikingsync signs with) and V2 bearer API keys.
//!
//! Owns: deciding whether a request is authentic, and why not.
//! Never: signs anything itself, logs or echoes a secret, a token, an API key or a signature, or
//! reads the body beyond hashing it.

use std::time::Duration;

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::AccessKey;
use vikingdb_types::sign::{
    SigningInput, decode_path, parse_authorization, parse_query, sdk_spelling, sha256_hex, signature, signatures_match,
};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// 401: no, garbled or wrong credentials.
    Unauthorized(String),
    /// 403: credentials valid in form but for the other API's service.
    Forbidden(String),
}

/// The keys a request may be signed with.
pub(crate) struct Verifier<'a> {
    pub keys: &'a [AccessKey],
    pub api_keys: &'a [String],
    pub max_clock_skew: Duration,
}

/// The parts of a request a signature covers.
pub(crate) struct Incoming<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn unauthorized<T>(why: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError::Unauthorized(why.into()))
}

impl Verifier<'_> {
    /// Authentication is disabled when no key of either kind is configured.
    pub fn enabled(&self) -> bool {
        !(self.keys.is_empty() && self.api_keys.is_empty())
    }

    /// Checks `req` for `service` (`air` for V1, `vikingdb` for V2); `allow_bearer` admits
    /// `Authorization: Bearer <api_key>` (V2 only).
    pub fn verify(
        &self,
        req: &Incoming<'_>,
        service: &str,
        allow_bearer: bool,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(auth) = req.headers.get("authorization") else {
            return unauthorized("missing Authorization header");
        };
        let Ok(auth) = auth.to_str() else {
            return unauthorized("the Authorization header is not ASCII");
        };
        if let Some(token) = auth.strip_prefix("Bearer ") {
            if !allow_bearer {
                return unauthorized("API keys are accepted on the V2 data plane only");
            }
            let token = token.trim();
            return if self.api_keys.iter().any(|k| signatures_match(k, token)) {
                Ok(())
            } else {
                unauthorized("unknown API key")
            };
        }
        let Some(parsed) = parse_authorization(auth) else {
            return unauthorized(
                "malformed Authorization header (expected HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...)",
            );
        };
        let Some(key) = self.keys.iter().find(|k| k.access_key == parsed.access_key) else {
            return unauthorized(format!("unknown access key `{}`", parsed.access_key));
        };
        if parsed.service != service {
            return Err(AuthError::Forbidden(format!(
                "the credential scope names service `{}`; this API is signed with service `{service}`",
                parsed.service
            )));
        }
        let x_date =
            header(req.headers, "x-date")?.ok_or_else(|| AuthError::Unauthorized("missing X-Date header".into()))?;
        let Ok(signed_at) = NaiveDateTime::parse_from_str(x_date, "%Y%m%dT%H%M%SZ") else {
            return unauthorized(format!("X-Date `{x_date}` is not of the form yyyymmddThhmmssZ"));
        };
        let skew = (now - signed_at.and_utc()).abs();
        if skew.to_std().map_or(true, |s| s > self.max_clock_skew) {
            return unauthorized(format!(
                "X-Date `{x_date}` is {}s away from the server clock (max {}s)",
                skew.num_seconds().abs(),
                self.max_clock_skew.as_secs()
            ));
        }
        if parsed.date != x_date.get(..8).unwrap_or_default() {
            return unauthorized("the credential scope date does not match X-Date");
        }
        if !parsed.signed_headers.iter().any(|h| h == "x-date") {
            return unauthorized("X-Date must be signed");
        }
        let body_hash = sha256_hex(req.body);
        match header(req.headers, "x-content-sha256")? {
            None => return unauthorized("missing X-Content-Sha256 header"),
            Some(h) if h != body_hash => {
                return unauthorized("X-Content-Sha256 does not match the body");
            }
            Some(_) => {}
        }
        if let Some(token) = &key.session_token {
            match header(req.headers, "x-security-token")? {
                Some(t) if signatures_match(token, t) => {}
                _ => return unauthorized("missing or wrong X-Security-Token"),
            }
            if !parsed.signed_headers.iter().any(|h| h == "x-security-token") {
                return unauthorized("X-Security-Token must be signed");
            }
        }
        // The signer matches header names case-sensitively (`Host`, `X-...`), so hand it the
        // names in the SDK's spelling; hyper has lowercased them.
        let mut names = Vec::with_capacity(parsed.signed_headers.len());
        for name in &parsed.signed_headers {
            let Some(canonical) = sdk_spelling(name) else {
                return unauthorized(format!("header `{name}` cannot be signed"));
            };
            let Some(value) = header(req.headers, name)? else {
                return unauthorized(format!("signed header `{name}` is missing"));
            };
            names.push((canonical, value));
        }
        let headers: Vec<(&str, &str)> = names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let path = decode_path(req.path);
        let query = parse_query(req.query.unwrap_or_default());
        let input = SigningInput {
            method: req.method,
            path: &path,
            query: &query,
            headers: &headers,
            body_sha256: &body_hash,
        };
        let (expected, signed) = signature(&key.secret_key, x_date, &parsed.region, service, &input);
        if signed != parsed.signed_headers.join(";") {
            return unauthorized("SignedHeaders must be sorted, lowercase and without duplicates");
        }
        if !signatures_match(&expected, &parsed.signature) {
            return unauthorized("signature mismatch");
        }
        Ok(())
    }
}

/// The value of header `name`, `None` if absent, 401 if not ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| AuthError::Unauthorized(format!("header `{name}` is not ASCII"))),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        access_key: String,
        secret_key: String,
        service: String,
        session_token: String,
        method: String,
        host_header: String,
        path: String,
        query: serde_json::Map<String, serde_json::Value>,
        content_type: String,
        x_date: String,
        body: String,
        x_content_sha256: String,
        authorization: String,
    }

    /// Every official SDK signing vector verifies, and a one-character change does not.
    #[test]
    fn accepts_the_official_signing_vectors() {
        let text = include_str!("../../../tests/fixtures/signing-vectors.json");
        let vectors: Vec<Vector> = serde_json::from_str(text).expect("fixture parses");
        for v in vectors {
            let key = AccessKey {
                access_key: v.access_key.clone(),
                secret_key: v.secret_key.clone(),
                session_token: (!v.session_token.is_empty()).then(|| v.session_token.clone()),
            };
            let keys = [key];
            let verifier = Verifier {
                keys: &keys,
                api_keys: &[],
                max_clock_skew: Duration::from_secs(60),
            };
            let mut headers = HeaderMap::new();
            let mut put = |name: &'static str, value: &str| {
                headers.insert(name, value.parse().expect("header value"));
            };
            put("content-type", &v.content_type);
            put("host", &v.host_header);
            put("x-date", &v.x_date);
            put("x-content-sha256", &v.x_content_sha256);
            put("accept", "application/json");
            if !v.session_token.is_empty() {
                put("x-security-token", &v.session_token);
            }
            // Sent the way the SDK sends a query: urlencoded, space as `+`.
            let query: Vec<String> = v
                .query
                .iter()
                .map(|(k, val)| {
                    let val = val.as_str().unwrap_or_default();
                    format!("{k}={}", val.replace(' ', "+").replace('/', "%2F"))
                })
                .collect();
            let query = query.join("&");
            let now = NaiveDateTime::parse_from_str(&v.x_date, "%Y%m%dT%H%M%SZ")
                .expect("x-date")
                .and_utc();
            let check = |headers: &HeaderMap, body: &str| {
                let req = Incoming {
                    method: &v.method,
                    path: &v.path,
                    query: (!query.is_empty()).then_some(query.as_str()),
                    headers,
                    body: body.as_bytes(),
                };
                verifier.verify(&req, &v.service, false, now)
            };
            let mut signed = headers.clone();
            signed.insert("authorization", v.authorization.parse().expect("auth"));
            assert_eq!(check(&signed, &v.body), Ok(()), "{}", v.name);
            let bad = v.authorization.replace("Signature=", "Signature=0");
            signed.insert("authorization", bad[..bad.len() - 1].parse().expect("auth"));
            assert!(check(&signed, &v.body).is_err(), "{}", v.name);
        }
    }
}
