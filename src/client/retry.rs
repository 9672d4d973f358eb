//! Typed wire errors and the retry logic: what one attempt's failure was, and what to do about it.
//!
//! Owns: [`read`], which turns one HTTP response into success or a typed [`WireError`] (parsed
//! once: HTTP status, V1 numeric code, V2 string code, or "not a VikingDB answer"), and
//! [`decide`], which maps a `WireError` to an [`Action`] (retry, throttle, split, fatal) by
//! matching on its type and codes — the shape of Vector's `RetryLogic`. Every error keeps its
//! source (`reqwest::Error`, `serde_json::Error`).
//! Never: sends, sleeps, or matches words in server messages to decide.

use std::time::Duration;

use super::api::{Code, Envelope, EnvelopeError, Reply, ServerError, snippet};
use crate::config::ApiVersion;

/// How a request failed before any answer was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Timeout,
    Connect,
    /// The connection broke while the answer was being read.
    Body,
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timed out",
            TransportKind::Connect => "could not connect",
            TransportKind::Body => "connection dropped mid-response",
            TransportKind::Other => "transport error",
        })
    }
}

/// One failed attempt, typed. `endpoint` is `POST <url>`.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// No answer: a timeout, a refused or dropped connection.
    #[error("{endpoint}: {kind} ({})", chain(source))]
    Transport {
        endpoint: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// A 3xx. The data plane never redirects, so it is never followed.
    #[error(
        "{endpoint} answered HTTP {status}, a redirect to {}. The VikingDB data plane never redirects, so \
         redirects are not followed: set [target] endpoint to the data plane's own address (check http vs https, \
         the host and any proxy in between)",
        location.as_deref().map_or_else(|| "(no Location header)".to_string(), |l| format!("`{l}`"))
    )]
    Redirect {
        endpoint: String,
        status: u16,
        location: Option<String>,
    },
    /// A body that is not a VikingDB envelope: a proxy, a captive portal, a cut-off body.
    #[error("{endpoint} answered HTTP {status} with a body that is not a VikingDB answer ({snippet})")]
    NotAnAnswer {
        endpoint: String,
        status: u16,
        snippet: String,
        retry_after: Option<Duration>,
        request_id: Option<String>,
        #[source]
        source: EnvelopeError,
    },
    /// A body over the size a write answer can have; the rest was not read.
    #[error(
        "{endpoint} answered HTTP {status} with a body over {limit_kib} KiB, which is not a VikingDB write \
         answer; the rest was not read"
    )]
    Oversized {
        endpoint: String,
        status: u16,
        limit_kib: usize,
    },
    /// A VikingDB answer that is not a success.
    #[error("{endpoint}: {error}")]
    Server {
        endpoint: String,
        error: Box<ServerError>,
        code: Code,
        retry_after: Option<Duration>,
    },
}

/// A `reqwest::Error` with its sources, for messages.
fn chain(e: &reqwest::Error) -> String {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    detail
}

impl WireError {
    /// The HTTP status of the answer; `None` when there was none (transport).
    pub fn status(&self) -> Option<u16> {
        match self {
            WireError::Transport { .. } => None,
            WireError::Redirect { status, .. }
            | WireError::NotAnAnswer { status, .. }
            | WireError::Oversized { status, .. } => Some(*status),
            WireError::Server { error, .. } => Some(error.status),
        }
    }

    /// A transport failure, kind read off the error.
    pub fn transport(endpoint: &str, source: reqwest::Error) -> WireError {
        let kind = if source.is_timeout() {
            TransportKind::Timeout
        } else if source.is_connect() {
            TransportKind::Connect
        } else if source.is_body() || source.is_decode() {
            TransportKind::Body
        } else {
            TransportKind::Other
        };
        WireError::Transport {
            endpoint: endpoint.to_string(),
            kind,
            source,
        }
    }
}

/// What the sender does after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Retry with backoff.
    Retry,
    /// Rate limited: every sender pauses, the rate is cut, then retry.
    Throttle(Option<Duration>),
    /// The request was refused as invalid: split it to isolate the bad rows.
    Split(ServerError),
    /// The run cannot go on: stop with this message.
    Fatal(String),
}

/// Reads one response: `Ok` only for a VikingDB success — HTTP 200 and an envelope whose code is
/// `api`'s success code (V2 `"Success"`, V1 `0`).
pub fn read(api: ApiVersion, reply: &Reply<'_>) -> Result<(), WireError> {
    let status = reply.status;
    let endpoint = || reply.endpoint.to_string();
    if (300..400).contains(&status) {
        return Err(WireError::Redirect {
            endpoint: endpoint(),
            status,
            location: reply.location.map(str::to_string),
        });
    }
    let env = crate::client::api::envelope(reply.body).map_err(|source| WireError::NotAnAnswer {
        endpoint: endpoint(),
        status,
        snippet: snippet(reply.body),
        retry_after: reply.retry_after,
        request_id: reply.request_id.map(str::to_string),
        source,
    })?;
    if status == 200 && meaning(api, &env) == Meaning::Success {
        return Ok(());
    }
    Err(WireError::Server {
        endpoint: endpoint(),
        error: Box::new(ServerError {
            status,
            code: env.code.to_string(),
            message: env.message.clone().unwrap_or_default(),
            request_id: env.request_id.clone().or_else(|| reply.request_id.map(str::to_string)),
        }),
        code: env.code,
        retry_after: reply.retry_after,
    })
}

/// What to do about a failed attempt: HTTP status first, then the typed code.
pub fn decide(api: ApiVersion, e: &WireError) -> Action {
    match e {
        WireError::Transport { .. } | WireError::Oversized { .. } => Action::Retry,
        WireError::Redirect { .. } => Action::Fatal(e.to_string()),
        WireError::NotAnAnswer {
            status,
            retry_after,
            request_id,
            ..
        } => match status {
            429 => Action::Throttle(*retry_after),
            401 => Action::Fatal(unauthorized(&e.to_string())),
            403 => Action::Fatal(forbidden(&e.to_string())),
            404 => Action::Fatal(format!(
                "{e}. Check [target] endpoint and api: the path does not exist there"
            )),
            // A proxy's size limit: splitting makes the request smaller; a single row that is still
            // too large is dead-lettered with the status.
            413 => Action::Split(ServerError {
                status: 413,
                code: String::new(),
                message: "request body too large for the server or a proxy in between (HTTP 413)".into(),
                request_id: request_id.clone(),
            }),
            // A gateway, a captive portal, a cut-off body: nothing says the rows were applied or refused.
            _ => Action::Retry,
        },
        WireError::Server {
            error,
            code,
            retry_after,
            ..
        } => {
            let status = error.status;
            let env = Envelope {
                code: code.clone(),
                message: Some(error.message.clone()),
                request_id: None,
            };
            let meaning = meaning(api, &env);
            if status == 429 || meaning == Meaning::Throttled {
                return Action::Throttle(*retry_after);
            }
            if status == 401 || meaning == Meaning::Unauthorized {
                return Action::Fatal(unauthorized(&error.to_string()));
            }
            if status == 403 || meaning == Meaning::Forbidden {
                return Action::Fatal(forbidden(&error.to_string()));
            }
            match meaning {
                Meaning::NoCollection => return Action::Fatal(no_collection(&error.to_string())),
                Meaning::Account => {
                    return Action::Fatal(format!(
                        "the account cannot write ({error}): the service is not purchased or is overdue"
                    ));
                }
                // A success code with an error status, or the other generation's: not an answer to trust.
                Meaning::Success | Meaning::OtherSuccess | Meaning::ServerSide => return Action::Retry,
                _ => {}
            }
            if status >= 500 || status == 408 {
                return Action::Retry;
            }
            if (400..500).contains(&status) || status == 200 {
                return Action::Split((**error).clone());
            }
            Action::Retry
        }
    }
}

const V1_UNAUTHORIZED: i64 = 1000001;
const V1_NO_PERMISSION: i64 = 1000002;
const V1_COLLECTION_NOT_EXIST: i64 = 1000005;
const V1_ALIAS_NOT_EXIST: i64 = 1000031;
const V1_QUOTA: i64 = 1000029;
const V1_INTERNAL: i64 = 1000028;
const V1_SERVER_SIDE: [i64; 3] = [1000013, 1000014, 1000023];
const V1_ACCOUNT: [i64; 2] = [1000032, 1000033];

/// What a code says, whatever the API generation. V2 codes are matched exactly on their error
/// type (the part before the first `.`), never on substrings of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Success,
    /// The other API generation's success code: not an answer this endpoint should give.
    OtherSuccess,
    Throttled,
    Unauthorized,
    Forbidden,
    NoCollection,
    Account,
    ServerSide,
    Invalid,
}

fn meaning(api: ApiVersion, env: &Envelope) -> Meaning {
    match (&env.code, api) {
        (Code::Num(0), ApiVersion::V1) => Meaning::Success,
        (Code::Str(s), ApiVersion::V1) if s == "0" => Meaning::Success,
        (Code::Str(s), ApiVersion::V2) if s == "Success" => Meaning::Success,
        (Code::Num(0), ApiVersion::V2) => Meaning::OtherSuccess,
        (Code::Str(s), ApiVersion::V1) if s == "Success" => Meaning::OtherSuccess,
        (Code::Num(n), _) => match *n {
            V1_QUOTA => Meaning::Throttled,
            V1_UNAUTHORIZED => Meaning::Unauthorized,
            V1_NO_PERMISSION => Meaning::Forbidden,
            V1_COLLECTION_NOT_EXIST | V1_ALIAS_NOT_EXIST => Meaning::NoCollection,
            // The documented V1 example answers an unknown collection with code 1.
            1 if env
                .message
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("collection not exist")) =>
            {
                Meaning::NoCollection
            }
            n if V1_ACCOUNT.contains(&n) => Meaning::Account,
            n if n == V1_INTERNAL || V1_SERVER_SIDE.contains(&n) => Meaning::ServerSide,
            _ => Meaning::Invalid,
        },
        (Code::Str(s), _) => {
            let (kind, element) = s.split_once('.').unwrap_or((s.as_str(), ""));
            match kind {
                "RequestLimitExceeded" | "TooManyRequests" | "Throttling" | "QuotaExceeded" => Meaning::Throttled,
                "Unauthorized" | "AuthFailure" | "SignatureDoesNotMatch" | "InvalidAccessKey" | "InvalidCredential" => {
                    Meaning::Unauthorized
                }
                "Forbidden" | "AccessDenied" | "NoPermission" => Meaning::Forbidden,
                "NotFound" if element != "Data" && !element.is_empty() => Meaning::NoCollection,
                "InternalServerError" | "InternalError" | "ServiceUnavailable" | "Timeout" => Meaning::ServerSide,
                "UserNoOrder" | "UserOverdue" | "AccountOverdue" => Meaning::Account,
                _ => Meaning::Invalid,
            }
        }
    }
}

fn unauthorized(detail: &str) -> String {
    format!(
        "authentication failed ({detail}). Check the access key and secret key (VIKINGDB_AK/VIKINGDB_SK or the [auth] \
         files), the session token if you use STS, the API key for v2, the region in [target], and that this \
         machine's clock is within 15 minutes of the real time"
    )
}

fn forbidden(detail: &str) -> String {
    format!("permission denied ({detail}). The key's account or API key scope has no write access to this collection")
}

fn no_collection(detail: &str) -> String {
    format!(
        "collection not found ({detail}). Check [collection] name/resource_id/alias, [target] api, and that the \
         endpoint and region are the collection's"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &[u8]) -> Reply<'_> {
        Reply {
            status,
            body,
            request_id: None,
            retry_after: None,
            location: None,
            endpoint: "POST http://h/p",
        }
    }

    /// What a response leads to, with the error's message.
    fn classify(api: ApiVersion, r: &Reply<'_>) -> (Verdict, String) {
        match read(api, r) {
            Ok(()) => (Verdict::Applied, String::new()),
            Err(e) => {
                let m = e.to_string();
                let v = match decide(api, &e) {
                    Action::Retry => Verdict::Retryable,
                    Action::Throttle(_) => Verdict::Throttled,
                    Action::Split(err) => Verdict::Refused(err),
                    Action::Fatal(f) => return (Verdict::Fatal, f),
                };
                (v, m)
            }
        }
    }

    #[derive(Debug, PartialEq)]
    enum Verdict {
        Applied,
        Retryable,
        Throttled,
        Refused(ServerError),
        Fatal,
    }

    fn t1(status: u16, body: &[u8]) -> (Verdict, String) {
        classify(ApiVersion::V1, &reply(status, body))
    }

    fn t2(status: u16, body: &[u8]) -> (Verdict, String) {
        classify(ApiVersion::V2, &reply(status, body))
    }

    fn v1(status: u16, body: &[u8]) -> Verdict {
        classify(ApiVersion::V1, &reply(status, body)).0
    }

    fn v2(status: u16, body: &[u8]) -> Verdict {
        classify(ApiVersion::V2, &reply(status, body)).0
    }

    fn fatal(v: (Verdict, String)) -> String {
        assert_eq!(v.0, Verdict::Fatal, "{}", v.1);
        v.1
    }

    fn retryable(v: (Verdict, String)) -> String {
        assert_eq!(v.0, Verdict::Retryable, "{}", v.1);
        v.1
    }

    #[test]
    fn responses_are_classified_status_first_then_code() {
        assert_eq!(v1(200, br#"{"code":0,"msg":"success"}"#), Verdict::Applied);
        assert_eq!(v2(200, br#"{"code":"Success","message":"ok"}"#), Verdict::Applied);
        assert!(matches!(v2(429, b"{}"), Verdict::Throttled));
        assert!(matches!(v1(400, br#"{"code":1000029}"#), Verdict::Throttled));
        assert!(matches!(
            v2(400, br#"{"code":"RequestLimitExceeded"}"#),
            Verdict::Throttled
        ));
        assert!(matches!(
            v1(500, br#"{"code":1000028,"message":"x"}"#),
            Verdict::Retryable
        ));
        assert!(matches!(v2(503, b"gateway"), Verdict::Retryable));
        match classify(
            ApiVersion::V1,
            &reply(
                400,
                br#"{"code":1000003,"msg":"invalid request: bad","request_id":"r1"}"#,
            ),
        )
        .0
        {
            Verdict::Refused(e) => {
                assert_eq!(e.code, "1000003");
                assert_eq!(e.message, "invalid request: bad");
                assert_eq!(e.request_id.as_deref(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            v2(400, br#"{"code":"InvalidParameter","message":"m"}"#),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            v1(400, br#"{"code":1000011,"message":"data not found"}"#),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            v2(404, br#"{"code":"NotFound.Data","message":"no"}"#),
            Verdict::Refused(_)
        ));
        // A message that merely mentions a limit is not a throttle: codes decide, not substrings.
        assert!(matches!(
            v2(400, br#"{"code":"InvalidParameter","message":"field limit exceeded"}"#),
            Verdict::Refused(_)
        ));
        assert!(fatal(t1(401, br#"{"code":1000001}"#)).contains("clock"));
        assert!(fatal(t2(403, b"{}")).contains("permission"));
        assert!(fatal(t1(400, br#"{"code":1,"msg":"collection not exist"}"#)).contains("collection"));
        assert!(fatal(t2(404, br#"{"code":"NotFound.VikingdbCollection","message":"no"}"#)).contains("collection"));
        let control_plane = br#"{"ResponseMetadata":{"Error":{"Code":"AccessDenied","Message":"m"},"RequestId":"r"}}"#;
        assert!(fatal(t2(403, control_plane)).contains("permission"));
    }

    #[test]
    fn a_200_is_applied_only_when_it_is_a_vikingdb_success() {
        for body in [
            &b""[..],
            b"{}",
            b"<html><body>Welcome to the hotel wifi</body></html>",
            br#"{"code":"Succ"#,
            b"null",
            b"[]",
            br#"{"message":"ok"}"#,
            br#"{"code":null}"#,
            br#"{"code":0.5}"#,
        ] {
            let m = retryable(t2(200, body));
            assert!(
                m.contains("not a VikingDB answer") && m.contains("POST http://h/p"),
                "{m}"
            );
            assert!(matches!(v1(200, body), Verdict::Retryable));
        }
        // The other generation's success code is not a success, nor a refusal.
        assert!(matches!(v2(200, br#"{"code":0}"#), Verdict::Retryable));
        assert!(matches!(v1(200, br#"{"code":"Success"}"#), Verdict::Retryable));
        // A success code with an error status is not trusted either.
        assert!(matches!(v2(500, br#"{"code":"Success"}"#), Verdict::Retryable));
        assert!(matches!(v2(400, br#"{"code":"Success"}"#), Verdict::Retryable));
        let m = retryable(t2(200, b"<html>portal</html>"));
        assert!(m.contains("<html>portal</html>"), "{m}");
    }

    #[test]
    fn redirects_are_fatal_and_name_the_location() {
        let mut r = reply(302, b"");
        r.location = Some("https://login.example/portal");
        let m = fatal(classify(ApiVersion::V2, &r));
        assert!(m.contains("302") && m.contains("https://login.example/portal"), "{m}");
        assert!(fatal(t1(301, b"")).contains("no Location"));
    }

    #[test]
    fn foreign_errors_are_decided_by_status() {
        match v2(413, b"<html>413 Request Entity Too Large</html>") {
            Verdict::Refused(e) => {
                assert_eq!(e.status, 413);
                assert!(e.to_string().contains("HTTP 413"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(v2(429, b"slow down"), Verdict::Throttled));
        assert!(fatal(t2(404, b"<html>nginx</html>")).contains("endpoint"));
        assert!(matches!(
            v2(400, b"<html>bad gateway config</html>"),
            Verdict::Retryable
        ));
        assert!(matches!(v2(502, b""), Verdict::Retryable));
    }
}
