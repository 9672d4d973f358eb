//! API shapes: paths, request bodies and the reading of responses, for V1 and V2.
//!
//! Owns: building a request body once from pre-serialised rows, and classifying a response
//! (HTTP status first, then V1 numeric `code` with `message`/`msg`, or V2 string `code`) into what
//! the sender must do.
//! Never: sends, signs or retries.

use bytes::Bytes;
use serde::Deserialize;

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
    /// Applied.
    Applied,
    /// Rate limited: back off, slow down, retry.
    Throttled { retry_after: Option<std::time::Duration> },
    /// A server-side or transport failure: retry with backoff.
    Retryable(String),
    /// The whole request was refused as invalid: split it to find the bad rows.
    Refused(ServerError),
    /// The run cannot go on (credentials, permission, collection): stop with this message.
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
        write!(f, "HTTP {} code {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

const V1_UNAUTHORIZED: i64 = 1000001;
const V1_NO_PERMISSION: i64 = 1000002;
const V1_COLLECTION_NOT_EXIST: i64 = 1000005;
const V1_ALIAS_NOT_EXIST: i64 = 1000031;
const V1_QUOTA: i64 = 1000029;
const V1_INTERNAL: i64 = 1000028;
const V1_SERVER_SIDE: [i64; 3] = [1000013, 1000014, 1000023];
const V1_ACCOUNT: [i64; 2] = [1000032, 1000033];

/// Classifies a response. `retry_after` is the parsed `Retry-After` header, if any.
pub fn classify(
    status: u16,
    body: &[u8],
    header_request_id: Option<&str>,
    retry_after: Option<std::time::Duration>,
) -> Verdict {
    let env: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let (num_code, str_code) = match &env.code {
        Some(serde_json::Value::Number(n)) => (n.as_i64(), None),
        Some(serde_json::Value::String(s)) => (s.parse::<i64>().ok(), Some(s.clone())),
        _ => (None, None),
    };
    let code_text = match (&str_code, num_code) {
        (Some(s), _) => s.clone(),
        (None, Some(n)) => n.to_string(),
        (None, None) => String::new(),
    };
    let err = ServerError {
        status,
        code: code_text.clone(),
        message: env
            .message
            .or(env.msg)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        request_id: env.request_id.or_else(|| header_request_id.map(str::to_string)),
    };
    let success_code =
        matches!(num_code, None | Some(0)) && matches!(str_code.as_deref(), None | Some("Success") | Some("0"));
    if status == 200 && success_code {
        return Verdict::Applied;
    }
    let lower = code_text.to_ascii_lowercase();
    if status == 429
        || num_code == Some(V1_QUOTA)
        || lower.contains("limit") && lower.contains("exceed")
        || lower.contains("toomanyrequests")
    {
        return Verdict::Throttled { retry_after };
    }
    if status == 401
        || num_code == Some(V1_UNAUTHORIZED)
        || lower.contains("unauthorized")
        || lower.contains("authenticat")
        || lower.contains("signature")
    {
        return Verdict::Fatal(format!(
            "authentication failed ({err}). Check the access key and secret key (VIKINGDB_AK/VIKINGDB_SK or the [auth] files), \
             the session token if you use STS, the API key for v2, the region in [target], and that this machine's clock is \
             within 15 minutes of the real time"
        ));
    }
    if status == 403
        || num_code == Some(V1_NO_PERMISSION)
        || lower.contains("forbidden")
        || lower.contains("permission")
    {
        return Verdict::Fatal(format!(
            "permission denied ({err}). The key's account or API key scope has no write access to this collection"
        ));
    }
    if matches!(num_code, Some(V1_COLLECTION_NOT_EXIST) | Some(V1_ALIAS_NOT_EXIST))
        || lower.starts_with("notfound.vikingdbcollection")
        || (status == 404 && !lower.contains("data"))
        || err.message.to_ascii_lowercase().contains("collection not exist")
    {
        return Verdict::Fatal(format!(
            "collection not found ({err}). Check [collection] name/resource_id/alias, [target] api, and that the endpoint \
             and region are the collection's"
        ));
    }
    if let Some(n) = num_code
        && V1_ACCOUNT.contains(&n)
    {
        return Verdict::Fatal(format!(
            "the account cannot write ({err}): the service is not purchased or is overdue"
        ));
    }
    if status >= 500
        || status == 408
        || num_code == Some(V1_INTERNAL)
        || num_code.is_some_and(|n| V1_SERVER_SIDE.contains(&n))
    {
        return Verdict::Retryable(err.to_string());
    }
    if (400..500).contains(&status) || status == 200 {
        return Verdict::Refused(err);
    }
    Verdict::Retryable(err.to_string())
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

    #[test]
    fn responses_are_classified_status_first_then_code() {
        assert_eq!(
            classify(200, br#"{"code":0,"msg":"success"}"#, None, None),
            Verdict::Applied
        );
        assert_eq!(
            classify(200, br#"{"code":"Success","message":"ok"}"#, None, None),
            Verdict::Applied
        );
        assert!(matches!(classify(429, b"{}", None, None), Verdict::Throttled { .. }));
        assert!(matches!(
            classify(400, br#"{"code":1000029}"#, None, None),
            Verdict::Throttled { .. }
        ));
        assert!(matches!(
            classify(500, br#"{"code":1000028,"message":"x"}"#, None, None),
            Verdict::Retryable(_)
        ));
        assert!(matches!(classify(503, b"gateway", None, None), Verdict::Retryable(_)));
        match classify(
            400,
            br#"{"code":1000003,"msg":"invalid request: bad","request_id":"r1"}"#,
            None,
            None,
        ) {
            Verdict::Refused(e) => {
                assert_eq!(e.code, "1000003");
                assert_eq!(e.message, "invalid request: bad");
                assert_eq!(e.request_id.as_deref(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(400, br#"{"code":"InvalidParameter","message":"m"}"#, Some("h"), None),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            classify(400, br#"{"code":1000011,"message":"data not found"}"#, None, None),
            Verdict::Refused(_)
        ));
        let fatal = |v: Verdict| match v {
            Verdict::Fatal(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(fatal(classify(401, br#"{"code":1000001}"#, None, None)).contains("clock"));
        assert!(fatal(classify(403, b"{}", None, None)).contains("permission"));
        assert!(fatal(classify(400, br#"{"code":1,"msg":"collection not exist"}"#, None, None)).contains("collection"));
        assert!(
            fatal(classify(
                404,
                br#"{"code":"NotFound.VikingdbCollection","message":"no"}"#,
                None,
                None
            ))
            .contains("collection")
        );
    }
}
