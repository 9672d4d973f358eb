//! API shapes: paths, request bodies and the reading of responses, for V1 and V2.
//!
//! Owns: building a request body once from pre-serialised rows, and classifying a response
//! (HTTP status first, then V1 numeric `code` with `message`/`msg`, or V2 string `code`) into what
//! the sender must do.
//! Never: sends, signs or retries.

use bytes::Bytes;

use crate::config::ApiVersion;
use crate::record::{Op, Record};

/// How the collection is named in requests.
#[derive(Debug, Clone)]
pub enum Locator {
    Name(String),
    /// V2 only.
    ResourceId(String),
    /// V1 only.
    Alias(String),
}

/// The data-plane paths of one API generation.
pub fn path(api: ApiVersion, op: Op) -> &'static str {
    match (api, op) {
        (ApiVersion::V2, Op::Upsert) => "/api/vikingdb/data/upsert",
        (ApiVersion::V2, Op::Update) => "/api/vikingdb/data/update",
        (ApiVersion::V2, Op::Delete) => "/api/vikingdb/data/delete",
        (ApiVersion::V1, Op::Upsert) => "/api/collection/upsert_data",
        (ApiVersion::V1, Op::Update) => "/api/collection/update_data",
        (ApiVersion::V1, Op::Delete) => "/api/collection/del_data",
    }
}

/// Builds the JSON body for `records` (all of `op`, one TTL), from their pre-serialised rows.
pub fn body(
    api: ApiVersion,
    locator: &Locator,
    op: Op,
    ttl: Option<u32>,
    ignore_unknown: bool,
    records: &[Record],
) -> Bytes {
    let rows_len: usize = records.iter().map(|r| r.json.len() + 1).sum();
    let mut out = Vec::with_capacity(rows_len + 128);
    out.push(b'{');
    let (key, value) = match locator {
        Locator::Name(n) => ("collection_name", n),
        Locator::ResourceId(r) => ("resource_id", r),
        Locator::Alias(a) => ("collection_alias", a),
    };
    push_json_str(&mut out, key);
    out.push(b':');
    push_json_str(&mut out, value);
    if op == Op::Delete {
        out.extend_from_slice(match api {
            ApiVersion::V2 => b",\"ids\":[",
            ApiVersion::V1 => b",\"primary_keys\":[",
        });
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Keys serialise infallibly into a Vec.
            let _ = serde_json::to_writer(&mut out, &r.key);
        }
        out.push(b']');
    } else {
        out.extend_from_slice(match api {
            ApiVersion::V2 => b",\"data\":[",
            ApiVersion::V1 => b",\"fields\":[",
        });
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r.json.as_bytes());
        }
        out.push(b']');
        if let Some(ttl) = ttl {
            out.extend_from_slice(format!(",\"ttl\":{ttl}").as_bytes());
        }
        if ignore_unknown {
            out.extend_from_slice(b",\"ignore_unknown_fields\":true");
        }
    }
    out.push(b'}');
    Bytes::from(out)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// What a response means for the request that got it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Applied: a VikingDB answer said so.
    Applied,
    /// Rate limited: back off, slow down, retry.
    Throttled { retry_after: Option<std::time::Duration> },
    /// A server-side or transport failure, or an answer that is not VikingDB's (a proxy, a captive
    /// portal, a cut-off body): retry with backoff.
    Retryable(String),
    /// The whole request was refused as invalid: split it to find the bad rows.
    Refused(ServerError),
    /// The run cannot go on (credentials, permission, collection, a redirect): stop with this message.
    Fatal(String),
}

/// The server's own words about a failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " code {}", self.code)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// One HTTP response as read off the wire.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// The `X-Tt-Logid` header.
    pub request_id: Option<&'a str>,
    /// The parsed `Retry-After` header.
    pub retry_after: Option<std::time::Duration>,
    /// The `Location` header (redirects).
    pub location: Option<&'a str>,
    /// `POST <url>`, for messages.
    pub endpoint: &'a str,
}

/// The server's code, typed by the API generation that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// V1: numeric (`0` is success).
    Num(i64),
    /// V2: a string (`Success`, `InvalidParameter`, `NotFound.VikingdbCollection`, …).
    Str(String),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Num(n) => write!(f, "{n}"),
            Code::Str(s) => f.write_str(s),
        }
    }
}

/// A VikingDB answer envelope: `{"code", "message"|"msg", "request_id"}`, or the control-plane
/// shape `{"ResponseMetadata":{"Error":{"Code","Message"},"RequestId"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub code: Code,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// Parses a body as a VikingDB envelope. `None`: not a VikingDB answer (HTML, empty, `{}`,
/// cut-off JSON, a JSON value without a `code`).
pub fn envelope(body: &[u8]) -> Option<Envelope> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    if let Some(code) = obj.get("code") {
        let code = match code {
            serde_json::Value::Number(n) => Code::Num(n.as_i64()?),
            serde_json::Value::String(s) => Code::Str(s.clone()),
            _ => return None,
        };
        return Some(Envelope {
            code,
            message: text(obj.get("message")).or_else(|| text(obj.get("msg"))),
            request_id: text(obj.get("request_id")),
        });
    }
    let meta = obj.get("ResponseMetadata")?.as_object()?;
    let error = meta.get("Error")?.as_object()?;
    Some(Envelope {
        code: Code::Str(text(error.get("Code"))?),
        message: text(error.get("Message")),
        request_id: text(meta.get("RequestId")),
    })
}

/// At most this much of a foreign body is quoted in messages.
const SNIPPET: usize = 160;

/// The first bytes of a body, printable, for messages.
pub fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if body.len() > SNIPPET {
        out.push('…');
    }
    format!("{} bytes: {out:?}", body.len())
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

/// Classifies a response: redirects are fatal; a success is a 200 whose body is a VikingDB
/// envelope with the success code of `api` (V2 `"Success"`, V1 `0`); anything that is not a
/// VikingDB answer is retryable; the rest is decided by HTTP status, then by the typed code.
pub fn classify(api: ApiVersion, reply: &Reply<'_>) -> Verdict {
    let status = reply.status;
    if (300..400).contains(&status) {
        return Verdict::Fatal(format!(
            "{} answered HTTP {status}, a redirect to {}. The VikingDB data plane never redirects, so redirects are \
             not followed: set [target] endpoint to the data plane's own address (check http vs https, the host and \
             any proxy in between)",
            reply.endpoint,
            reply
                .location
                .map_or_else(|| "(no Location header)".to_string(), |l| format!("`{l}`")),
        ));
    }
    let Some(env) = envelope(reply.body) else {
        return foreign(reply);
    };
    let meaning = meaning(api, &env);
    let err = ServerError {
        status,
        code: env.code.to_string(),
        message: env.message.clone().unwrap_or_default(),
        request_id: env.request_id.clone().or_else(|| reply.request_id.map(str::to_string)),
    };
    if status == 200 && meaning == Meaning::Success {
        return Verdict::Applied;
    }
    if status == 429 || meaning == Meaning::Throttled {
        return Verdict::Throttled {
            retry_after: reply.retry_after,
        };
    }
    if status == 401 || meaning == Meaning::Unauthorized {
        return Verdict::Fatal(unauthorized(&err.to_string()));
    }
    if status == 403 || meaning == Meaning::Forbidden {
        return Verdict::Fatal(forbidden(&err.to_string()));
    }
    if meaning == Meaning::NoCollection {
        return Verdict::Fatal(no_collection(&err.to_string()));
    }
    if meaning == Meaning::Account {
        return Verdict::Fatal(format!(
            "the account cannot write ({err}): the service is not purchased or is overdue"
        ));
    }
    if status >= 500 || status == 408 || meaning == Meaning::ServerSide {
        return Verdict::Retryable(format!("{}: {err}", reply.endpoint));
    }
    if matches!(meaning, Meaning::Success | Meaning::OtherSuccess) {
        // A success code with an error status, or the other generation's: not an answer to trust.
        return foreign(reply);
    }
    if (400..500).contains(&status) || status == 200 {
        return Verdict::Refused(err);
    }
    Verdict::Retryable(format!("{}: {err}", reply.endpoint))
}

/// A response that is not a VikingDB answer: decided by its HTTP status alone.
fn foreign(reply: &Reply<'_>) -> Verdict {
    let status = reply.status;
    let what = format!(
        "{} answered HTTP {status} with a body that is not a VikingDB answer ({})",
        reply.endpoint,
        snippet(reply.body)
    );
    match status {
        429 => Verdict::Throttled {
            retry_after: reply.retry_after,
        },
        401 => Verdict::Fatal(unauthorized(&what)),
        403 => Verdict::Fatal(forbidden(&what)),
        404 => Verdict::Fatal(format!(
            "{what}. Check [target] endpoint and api: the path does not exist there"
        )),
        // A proxy's size limit: splitting the request makes it smaller; a single row that is still
        // too large is dead-lettered with the status.
        413 => Verdict::Refused(ServerError {
            status,
            code: String::new(),
            message: "request body too large for the server or a proxy in between (HTTP 413)".into(),
            request_id: reply.request_id.map(str::to_string),
        }),
        // A gateway, a captive portal, a cut-off body: nothing says the rows were applied or refused.
        _ => Verdict::Retryable(what),
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
    use crate::record::{Origin, PrimaryKey};
    use std::sync::Arc;

    fn rec(key: PrimaryKey, json: &str) -> Record {
        Record {
            key,
            op: Op::Upsert,
            ttl: None,
            json: json.into(),
            origin: Origin {
                file: 0,
                row: 1,
                seq: 0,
            },
        }
    }

    #[test]
    fn bodies_have_the_documented_shapes() {
        let recs = vec![
            rec(PrimaryKey::Int(1), r#"{"id":1,"v":[0.5]}"#),
            rec(PrimaryKey::Str(Arc::from("a\"b")), r#"{"id":"a\"b"}"#),
        ];
        let loc = Locator::Name("c".into());
        let b = body(ApiVersion::V2, &loc, Op::Upsert, Some(60), false, &recs);
        assert_eq!(
            &b[..],
            br#"{"collection_name":"c","data":[{"id":1,"v":[0.5]},{"id":"a\"b"}],"ttl":60}"#
        );
        let b = body(
            ApiVersion::V1,
            &Locator::Alias("al".into()),
            Op::Update,
            None,
            true,
            &recs,
        );
        assert_eq!(
            &b[..],
            br#"{"collection_alias":"al","fields":[{"id":1,"v":[0.5]},{"id":"a\"b"}],"ignore_unknown_fields":true}"#
        );
        let b = body(
            ApiVersion::V2,
            &Locator::ResourceId("r".into()),
            Op::Delete,
            None,
            false,
            &recs,
        );
        assert_eq!(&b[..], br#"{"resource_id":"r","ids":[1,"a\"b"]}"#);
        let b = body(ApiVersion::V1, &loc, Op::Delete, None, false, &recs);
        assert_eq!(&b[..], br#"{"collection_name":"c","primary_keys":[1,"a\"b"]}"#);
        serde_json::from_slice::<serde_json::Value>(&b).expect("valid JSON");
    }

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

    fn v1(status: u16, body: &[u8]) -> Verdict {
        classify(ApiVersion::V1, &reply(status, body))
    }

    fn v2(status: u16, body: &[u8]) -> Verdict {
        classify(ApiVersion::V2, &reply(status, body))
    }

    fn fatal(v: Verdict) -> String {
        match v {
            Verdict::Fatal(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn retryable(v: Verdict) -> String {
        match v {
            Verdict::Retryable(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_are_classified_status_first_then_code() {
        assert_eq!(v1(200, br#"{"code":0,"msg":"success"}"#), Verdict::Applied);
        assert_eq!(v2(200, br#"{"code":"Success","message":"ok"}"#), Verdict::Applied);
        assert!(matches!(v2(429, b"{}"), Verdict::Throttled { .. }));
        assert!(matches!(v1(400, br#"{"code":1000029}"#), Verdict::Throttled { .. }));
        assert!(matches!(
            v2(400, br#"{"code":"RequestLimitExceeded"}"#),
            Verdict::Throttled { .. }
        ));
        assert!(matches!(
            v1(500, br#"{"code":1000028,"message":"x"}"#),
            Verdict::Retryable(_)
        ));
        assert!(matches!(v2(503, b"gateway"), Verdict::Retryable(_)));
        match classify(
            ApiVersion::V1,
            &reply(
                400,
                br#"{"code":1000003,"msg":"invalid request: bad","request_id":"r1"}"#,
            ),
        ) {
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
        assert!(fatal(v1(401, br#"{"code":1000001}"#)).contains("clock"));
        assert!(fatal(v2(403, b"{}")).contains("permission"));
        assert!(fatal(v1(400, br#"{"code":1,"msg":"collection not exist"}"#)).contains("collection"));
        assert!(fatal(v2(404, br#"{"code":"NotFound.VikingdbCollection","message":"no"}"#)).contains("collection"));
        let control_plane = br#"{"ResponseMetadata":{"Error":{"Code":"AccessDenied","Message":"m"},"RequestId":"r"}}"#;
        assert!(fatal(v2(403, control_plane)).contains("permission"));
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
            let m = retryable(v2(200, body));
            assert!(
                m.contains("not a VikingDB answer") && m.contains("POST http://h/p"),
                "{m}"
            );
            assert!(matches!(v1(200, body), Verdict::Retryable(_)));
        }
        // The other generation's success code is not a success, nor a refusal.
        assert!(matches!(v2(200, br#"{"code":0}"#), Verdict::Retryable(_)));
        assert!(matches!(v1(200, br#"{"code":"Success"}"#), Verdict::Retryable(_)));
        // A success code with an error status is not trusted either.
        assert!(matches!(v2(500, br#"{"code":"Success"}"#), Verdict::Retryable(_)));
        assert!(matches!(v2(400, br#"{"code":"Success"}"#), Verdict::Retryable(_)));
        let m = retryable(v2(200, b"<html>portal</html>"));
        assert!(m.contains("<html>portal</html>"), "{m}");
    }

    #[test]
    fn redirects_are_fatal_and_name_the_location() {
        let mut r = reply(302, b"");
        r.location = Some("https://login.example/portal");
        let m = fatal(classify(ApiVersion::V2, &r));
        assert!(m.contains("302") && m.contains("https://login.example/portal"), "{m}");
        assert!(fatal(v1(301, b"")).contains("no Location"));
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
        assert!(matches!(v2(429, b"slow down"), Verdict::Throttled { .. }));
        assert!(fatal(v2(404, b"<html>nginx</html>")).contains("endpoint"));
        assert!(matches!(
            v2(400, b"<html>bad gateway config</html>"),
            Verdict::Retryable(_)
        ));
        assert!(matches!(v2(502, b""), Verdict::Retryable(_)));
    }

    #[test]
    fn snippets_are_short_and_printable() {
        let s = snippet(&[b'a'; 1000]);
        assert!(s.starts_with("1000 bytes") && s.len() < 200, "{s}");
        assert_eq!(snippet(b"a\r\n\x00b"), "5 bytes: \"a b\"");
        assert_eq!(snippet(b""), "(empty body)");
    }
}
