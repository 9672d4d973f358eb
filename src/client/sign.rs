//! SignerV4: Volcengine's HMAC-SHA256 request signing, byte for byte as the official SDK's
//! `volcengine/auth/SignerV4.py` (see `shared/docs/vikingdb-api.md` §3).
//!
//! Owns: canonical request, string to sign, signing key derivation and the `Authorization` value,
//! for both signing (the client) and verifying (the emulator).
//! Never: touches the network, reads the clock on its own (callers pass `X-Date`), or formats a
//! secret key into anything but the HMAC.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256 of `data`: the `X-Content-Sha256` value.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Python's `urllib.parse.quote(s, safe)`: unreserved characters and `safe` kept, the rest
/// percent-encoded byte by byte with uppercase hex.
fn quote(s: &str, safe: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Canonical URI: `quote(path, safe="/")`, `%2F`→`/`, `+`→`%20`; empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    quote(path, b"/").replace("%2F", "/").replace('+', "%20")
}

/// Canonical query: keys sorted, keys and values quoted with safe `-_.~`, joined with `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    // Stable sort by key keeps the order of a list value's elements.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k, b"-_.~"), quote(v, b"-_.~")))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a signature covers. Header names are given as sent (case matters: only `Content-Type`,
/// `Content-Md5`, `Host` and names starting with `X-` are signed, exactly as the SDK does).
pub struct SigningInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(&'a str, &'a str)],
    /// Lowercase hex SHA-256 of the body, as in `X-Content-Sha256`.
    pub body_sha256: &'a str,
}

/// The signed-header list and canonical header block for `headers`.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut signed: Vec<(String, &str)> = headers
        .iter()
        .filter(|(name, _)| {
            *name == "Content-Type" || *name == "Content-Md5" || *name == "Host" || name.starts_with("X-")
        })
        .map(|(name, value)| {
            let lname = name.to_ascii_lowercase();
            let value = if lname == "host" {
                strip_default_port(value)
            } else {
                value
            };
            (lname, value)
        })
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut block = String::new();
    for (name, value) in &signed {
        block.push_str(name);
        block.push(':');
        block.push_str(value);
        block.push('\n');
    }
    let names = signed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (block, names)
}

/// `host:80` and `host:443` are signed as `host`; other ports are kept.
fn strip_default_port(host: &str) -> &str {
    match host.split_once(':') {
        Some((h, "80")) | Some((h, "443")) => h,
        _ => host,
    }
}

/// The canonical request and the signed-header list.
pub fn canonical_request(input: &SigningInput<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(input.headers);
    let creq = [
        input.method,
        &canonical_uri(input.path),
        &canonical_query(input.query),
        &headers,
        &signed,
        input.body_sha256,
    ]
    .join("\n");
    (creq, signed)
}

/// Credential scope `yyyymmdd/region/service/request`.
pub fn credential_scope(x_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/request", date_part(x_date))
}

fn date_part(x_date: &str) -> &str {
    x_date.get(..8).unwrap_or(x_date)
}

/// Hex signature of `input` under the secret key. `x_date` is the `X-Date` header value.
pub fn signature(
    secret_key: &str,
    x_date: &str,
    region: &str,
    service: &str,
    input: &SigningInput<'_>,
) -> (String, String) {
    let (creq, signed) = canonical_request(input);
    let scope = credential_scope(x_date, region, service);
    let string_to_sign = format!("HMAC-SHA256\n{x_date}\n{scope}\n{}", sha256_hex(creq.as_bytes()));
    let k_date = hmac(secret_key.as_bytes(), date_part(x_date).as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"request");
    (hex::encode(hmac(&k_signing, string_to_sign.as_bytes())), signed)
}

/// The full `Authorization` header value.
pub fn authorization(
    access_key: &str,
    secret_key: &str,
    x_date: &str,
    region: &str,
    service: &str,
    input: &SigningInput<'_>,
) -> String {
    let (sig, signed) = signature(secret_key, x_date, region, service, input);
    format!(
        "HMAC-SHA256 Credential={access_key}/{}, SignedHeaders={signed}, Signature={sig}",
        credential_scope(x_date, region, service)
    )
}

/// The parts of an `Authorization: HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses an `Authorization` value; `None` when it is not a well-formed HMAC-SHA256 header.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix("HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    let mut sig = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let mut cred = credential?.split('/');
    let access_key = cred.next()?.to_string();
    let date = cred.next()?.to_string();
    let region = cred.next()?.to_string();
    let service = cred.next()?.to_string();
    if cred.next()? != "request" || cred.next().is_some() {
        return None;
    }
    Some(ParsedAuthorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed?.split(';').map(str::to_string).collect(),
        signature: sig?.to_string(),
    })
}

/// Constant-time comparison of two hex signatures.
pub fn signatures_match(expected_hex: &str, given_hex: &str) -> bool {
    let a = expected_hex.as_bytes();
    let b = given_hex.as_bytes();
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        access_key: String,
        secret_key: String,
        service: String,
        region: String,
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

    const VECTORS: &str = include_str!("../../tests/fixtures/signing-vectors.json");

    #[test]
    fn reproduces_every_official_signing_vector() {
        let vectors: Vec<Vector> = serde_json::from_str(VECTORS).expect("fixture parses");
        assert!(vectors.len() >= 5, "fixture holds the official vectors");
        for v in vectors {
            let hash = sha256_hex(v.body.as_bytes());
            assert_eq!(hash, v.x_content_sha256, "{}: body hash", v.name);
            let mut headers = vec![
                ("Accept", "application/json"),
                ("Content-Type", v.content_type.as_str()),
                ("Host", v.host_header.as_str()),
                ("X-Date", v.x_date.as_str()),
                ("X-Content-Sha256", hash.as_str()),
            ];
            if !v.session_token.is_empty() {
                headers.push(("X-Security-Token", v.session_token.as_str()));
            }
            let query: Vec<(String, String)> = v
                .query
                .iter()
                .map(|(k, val)| (k.clone(), val.as_str().unwrap_or_default().to_string()))
                .collect();
            let input = SigningInput {
                method: &v.method,
                path: &v.path,
                query: &query,
                headers: &headers,
                body_sha256: &hash,
            };
            let got = authorization(&v.access_key, &v.secret_key, &v.x_date, &v.region, &v.service, &input);
            assert_eq!(got, v.authorization, "{}", v.name);
            let parsed = parse_authorization(&got).expect("own header parses");
            assert_eq!(parsed.access_key, v.access_key);
            assert_eq!(parsed.service, v.service);
        }
    }

    #[test]
    fn reproduces_the_api_brief_vector() {
        let body = br#"{"collection_name": "test_coll", "ids": ["uid_001", "uid_002"]}"#;
        let hash = sha256_hex(body);
        assert_eq!(hash, "6fa7f3b9aaacc62dc1c54cdb548d0296037dbd3080a32e08c60db2d4b0bb000f");
        let headers = [
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("Host", "api-vikingdb.vikingdb.cn-beijing.volces.com"),
            ("X-Date", "20250101T000000Z"),
            ("X-Content-Sha256", hash.as_str()),
        ];
        let input = SigningInput {
            method: "POST",
            path: "/api/vikingdb/data/delete",
            query: &[],
            headers: &headers,
            body_sha256: &hash,
        };
        let (sig, signed) = signature("SKTESTEXAMPLE", "20250101T000000Z", "cn-beijing", "vikingdb", &input);
        assert_eq!(signed, "content-type;host;x-content-sha256;x-date");
        assert_eq!(sig, "cf87c431db1e6e941e7cb2b69a7df378e6e1cff131b80614eb4f48fdd919f782");
    }

    #[test]
    fn header_names_are_matched_case_sensitively() {
        // The SDK signs `Host` but not `host`, and `X-*` but not `x-*`.
        let (_, signed) = canonical_headers(&[("host", "a"), ("x-date", "b"), ("Content-Type", "c")]);
        assert_eq!(signed, "content-type");
    }

    #[test]
    fn parse_rejects_malformed_headers() {
        assert!(parse_authorization("Bearer abc").is_none());
        assert!(
            parse_authorization("HMAC-SHA256 Credential=AK/20250101/r/s/x, SignedHeaders=a, Signature=b").is_none()
        );
        assert!(signatures_match("abcd", "abcd"));
        assert!(!signatures_match("abcd", "abce"));
    }
}
