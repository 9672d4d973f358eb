//! API shapes: paths, request bodies and the reading of responses, for V1 and V2.
//!
//! Owns: building a request body once from pre-serialised rows (into a new or a reused buffer),
//! and classifying a response (HTTP status first, then V1 numeric `code` with `message`/`msg`, or
//! V2 string `code`) into what the sender must do.
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

/// V2's fetch of rows by primary key from the collection (`vector_encoding = "auto"`'s check).
pub const FETCH_PATH: &str = "/api/vikingdb/data/fetch_in_collection";

/// The V2 fetch body for one key: `{"collection_name":…,"ids":[key]}` (a delete's shape).
pub fn fetch_body(locator: &Locator, key: &crate::record::PrimaryKey) -> Bytes {
    let mut out = Vec::new();
    push_locator(&mut out, locator);
    out.extend_from_slice(b",\"ids\":[");
    let _ = serde_json::to_writer(&mut out, key);
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// `{"collection_name":"c"` (or `resource_id`, `collection_alias`): a body's opening.
fn push_locator(out: &mut Vec<u8>, locator: &Locator) {
    out.push(b'{');
    let (key, value) = match locator {
        Locator::Name(n) => ("collection_name", n),
        Locator::ResourceId(r) => ("resource_id", r),
        Locator::Alias(a) => ("collection_alias", a),
    };
    push_json_str(out, key);
    out.push(b':');
    push_json_str(out, value);
}

/// Request-level switches of a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `"ignore_unknown_fields": true`.
    pub ignore_unknown: bool,
    /// `"async": true` (upserts only; the caller decides).
    pub asynchronous: bool,
}

/// Builds the JSON body for `records` (all of `op`, one TTL), from their pre-serialised rows.
pub fn body(api: ApiVersion, locator: &Locator, op: Op, ttl: Option<u32>, flags: Flags, records: &[Record]) -> Bytes {
    let mut out = Vec::new();
    write_body(&mut out, api, locator, op, ttl, flags, records);
    Bytes::from(out)
}

/// [`body`], written into `out` (cleared first; a buffer reused keeps its room).
pub fn write_body(
    out: &mut Vec<u8>,
    api: ApiVersion,
    locator: &Locator,
    op: Op,
    ttl: Option<u32>,
    flags: Flags,
    records: &[Record],
) {
    let rows_len: usize = records.iter().map(|r| r.json.len() + 1).sum();
    out.clear();
    out.reserve(rows_len + 128);
    push_locator(out, locator);
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
            let _ = serde_json::to_writer(&mut *out, &r.key);
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
        if flags.ignore_unknown {
            out.extend_from_slice(b",\"ignore_unknown_fields\":true");
        }
        if flags.asynchronous && op == Op::Upsert {
            out.extend_from_slice(b",\"async\":true");
        }
    }
    out.push(b'}');
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
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

/// Why a body is not a VikingDB envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JSON without a VikingDB `code`")]
    NoCode,
}

/// Parses a body as a VikingDB envelope. An error: not a VikingDB answer (HTML, empty, `{}`,
/// cut-off JSON, a JSON value without a `code`).
pub fn envelope(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    parse_envelope(&value).ok_or(EnvelopeError::NoCode)
}

fn parse_envelope(value: &serde_json::Value) -> Option<Envelope> {
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
    fn a_body_written_into_a_used_buffer_is_the_same_body() {
        let recs = vec![
            rec(PrimaryKey::Int(1), r#"{"id":1,"v":[0.5]}"#),
            rec(PrimaryKey::Str(Arc::from("k")), r#"{"id":"k"}"#),
        ];
        let loc = Locator::Name("c".into());
        let mut buf = b"{\"left over from an earlier, longer body\":[1,2,3,4,5,6,7,8]}".to_vec();
        for (op, ttl) in [(Op::Upsert, Some(60)), (Op::Delete, None), (Op::Update, None)] {
            write_body(&mut buf, ApiVersion::V2, &loc, op, ttl, Flags::default(), &recs);
            let fresh = body(ApiVersion::V2, &loc, op, ttl, Flags::default(), &recs);
            assert_eq!(&buf[..], &fresh[..]);
        }
    }

    #[test]
    fn bodies_have_the_documented_shapes() {
        let recs = vec![
            rec(PrimaryKey::Int(1), r#"{"id":1,"v":[0.5]}"#),
            rec(PrimaryKey::Str(Arc::from("a\"b")), r#"{"id":"a\"b"}"#),
        ];
        let loc = Locator::Name("c".into());
        let b = body(ApiVersion::V2, &loc, Op::Upsert, Some(60), Flags::default(), &recs);
        assert_eq!(
            &b[..],
            br#"{"collection_name":"c","data":[{"id":1,"v":[0.5]},{"id":"a\"b"}],"ttl":60}"#
        );
        let b = body(
            ApiVersion::V1,
            &Locator::Alias("al".into()),
            Op::Update,
            None,
            Flags {
                ignore_unknown: true,
                asynchronous: false,
            },
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
            Flags::default(),
            &recs,
        );
        assert_eq!(&b[..], br#"{"resource_id":"r","ids":[1,"a\"b"]}"#);
        let b = body(ApiVersion::V1, &loc, Op::Delete, None, Flags::default(), &recs);
        assert_eq!(&b[..], br#"{"collection_name":"c","primary_keys":[1,"a\"b"]}"#);
        serde_json::from_slice::<serde_json::Value>(&b).expect("valid JSON");
        let async_flags = Flags {
            ignore_unknown: false,
            asynchronous: true,
        };
        let b = body(ApiVersion::V2, &loc, Op::Upsert, None, async_flags, &recs[..1]);
        assert_eq!(
            &b[..],
            br#"{"collection_name":"c","data":[{"id":1,"v":[0.5]}],"async":true}"#
        );
        // Never on an update or a delete.
        let b = body(ApiVersion::V2, &loc, Op::Update, None, async_flags, &recs[..1]);
        assert!(!String::from_utf8_lossy(&b).contains("async"));
    }

    #[test]
    fn snippets_are_short_and_printable() {
        let s = snippet(&[b'a'; 1000]);
        assert!(s.starts_with("1000 bytes") && s.len() < 200, "{s}");
        assert_eq!(snippet(b"a\r\n\x00b"), "5 bytes: \"a b\"");
        assert_eq!(snippet(b""), "(empty body)");
    }
}
