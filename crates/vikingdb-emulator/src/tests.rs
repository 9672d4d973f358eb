//! End-to-end tests of the emulator over real HTTP on 127.0.0.1:0, with a small SignerV4 client
//! built on `vikingdb_types::sign`.
//!
//! Owns: the emulator's documented behaviour as executable checks.
//! Never: talks to anything but a loopback emulator it started itself.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use vikingdb_types::FieldType as T;
use vikingdb_types::sign::{SigningInput, authorization, sha256_hex};

const AK: &str = "AKTEST";
const SK: &str = "SKTEST";
const API_KEY: &str = "apikey-test";

fn docs() -> CollectionSpec {
    let mut c = CollectionSpec::new(
        "docs",
        "id",
        &[
            ("id", T::String),
            ("vec", T::Vector),
            ("tag", T::String),
            ("n", T::Int64),
            ("score", T::Float32),
            ("flag", T::Bool),
            ("tags", T::ListString),
            ("nums", T::ListInt64),
            ("when", T::DateTime),
            ("loc", T::GeoPoint),
        ],
    );
    c.dim = Some(4);
    c.resource_id = Some("vdb-docs".into());
    c.alias = Some("docs_alias".into());
    c
}

fn config() -> EmulatorConfig {
    let items = CollectionSpec::new("items", "uid", &[("uid", T::Int64), ("title", T::String)]);
    let mut vz = CollectionSpec::new("vz", "id", &[("id", T::String), ("text", T::Text), ("img", T::Image)]);
    vz.vectorize = true;
    let sp = CollectionSpec::new("sp", "id", &[("id", T::String), ("sparse", T::SparseVector)]);
    let mut limited = CollectionSpec::new("limited", "id", &[("id", T::String)]);
    limited.quota_rows_per_second = 1;
    EmulatorConfig {
        collections: vec![docs(), items, vz, sp, limited],
        keys: vec![
            AccessKey {
                access_key: AK.into(),
                secret_key: SK.into(),
                session_token: None,
            },
            AccessKey {
                access_key: "AKSTS".into(),
                secret_key: "SKSTS".into(),
                session_token: Some("TOKEN".into()),
            },
        ],
        api_keys: vec![API_KEY.into()],
        ..EmulatorConfig::default()
    }
}

async fn emu() -> Emulator {
    emu_with(config()).await
}

async fn emu_with(config: EmulatorConfig) -> Emulator {
    match start(config, "127.0.0.1:0".parse().expect("addr")).await {
        Ok(e) => e,
        Err(e) => panic!("emulator did not start: {e}"),
    }
}

/// A test client that signs like the SDK does.
struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
    ak: String,
    sk: String,
    token: Option<String>,
    /// Shifts X-Date.
    skew: chrono::Duration,
    /// Replaces the body after signing.
    tamper: Option<Vec<u8>>,
}

impl Client {
    fn new(e: &Emulator) -> Self {
        Client {
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
            base: e.endpoint(),
            host: e.addr().to_string(),
            ak: AK.into(),
            sk: SK.into(),
            token: None,
            skew: chrono::Duration::zero(),
            tamper: None,
        }
    }

    async fn send_signed(
        &self,
        method: Method,
        path: &str,
        service: &str,
        body: &Value,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let bytes = serde_json::to_vec(body).expect("json");
        let x_date = (chrono::Utc::now() + self.skew).format("%Y%m%dT%H%M%SZ").to_string();
        let hash = sha256_hex(&bytes);
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("Host", self.host.clone()),
            ("X-Date", x_date.clone()),
            ("X-Content-Sha256", hash.clone()),
        ];
        if let Some(t) = &self.token {
            headers.push(("X-Security-Token", t.clone()));
        }
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let input = SigningInput {
            method: method.as_str(),
            path,
            query: &[],
            headers: &pairs,
            body_sha256: &hash,
        };
        let auth = authorization(&self.ak, &self.sk, &x_date, "cn-beijing", service, &input);
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", auth)
            .body(self.tamper.clone().unwrap_or(bytes));
        for (n, v) in headers {
            if n != "Host" {
                req = req.header(n, v);
            }
        }
        req.send().await
    }

    async fn call(&self, method: Method, path: &str, service: &str, body: &Value) -> (StatusCode, Value) {
        let resp = match self.send_signed(method, path, service, body).await {
            Ok(r) => r,
            Err(e) => panic!("transport error on {path}: {e}"),
        };
        decode(resp).await
    }

    async fn v2(&self, op: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/api/vikingdb/data/{op}"), "vikingdb", &body)
            .await
    }

    async fn v1(&self, op: &str, body: Value) -> (StatusCode, Value) {
        let method = if op == "fetch_data" { Method::GET } else { Method::POST };
        self.call(method, &format!("/api/collection/{op}"), "air", &body).await
    }
}

async fn decode(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let logid = resp
        .headers()
        .get("x-tt-logid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(id) = body.get("request_id") {
        assert_eq!(id.as_str(), logid.as_deref(), "X-Tt-Logid matches request_id");
    }
    (status, body)
}

fn row(id: &str) -> Value {
    json!({"id": id, "vec": [0.1, 0.2, 0.3, 0.4]})
}

fn rows(n: usize) -> Vec<Value> {
    (0..n).map(|i| row(&format!("r{i}"))).collect()
}

fn assert_v2_err(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{got:?}");
    assert_eq!(got.1["code"], json!(code), "{got:?}");
    assert!(got.1["result"].is_null(), "{got:?}");
    assert!(got.1["request_id"].is_string(), "{got:?}");
}

fn assert_v1_err(got: &(StatusCode, Value), status: u16, code: u64) {
    assert_eq!(got.0.as_u16(), status, "{got:?}");
    assert_eq!(got.1["code"], json!(code), "{got:?}");
}

fn assert_ok(got: &(StatusCode, Value)) {
    assert_eq!(got.0, StatusCode::OK, "{got:?}");
    assert!(
        got.1["code"] == json!("Success") || got.1["code"] == json!(0),
        "{got:?}"
    );
}

#[tokio::test]
async fn pings() {
    let e = emu().await;
    let c = Client::new(&e);
    let resp = c
        .http
        .get(format!("{}/api/vikingdb/Ping", e.endpoint()))
        .send()
        .await
        .expect("ping");
    assert_eq!(resp.status(), StatusCode::OK);
    let v1 = c.call(Method::GET, "/api/viking_db/data/ping", "air", &json!({})).await;
    assert_ok(&v1);
    let unsigned = c
        .http
        .get(format!("{}/api/viking_db/data/ping", e.endpoint()))
        .send()
        .await
        .expect("ping");
    assert_v1_err(&decode(unsigned).await, 401, 1000001);
    assert_eq!(e.stats().requests_by_op.get("ping"), Some(&3));
}

#[tokio::test]
async fn v2_upsert_fills_defaults_and_fetch_has_the_documented_shape() {
    let e = emu().await;
    let c = Client::new(&e);
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "resource_id": "", "data": [row("a"), {"id": "b", "vec": [1, 2, 3, 4], "tag": "x", "when": "2025-08-12T11:33:56+08:00", "loc": "116.4,39.9"}], "ttl": 0, "async": false, "ignore_unknown_fields": false}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(got.1["message"], json!("The API call was executed successfully."));
    let records = e.records("docs").expect("docs");
    assert_eq!(records.len(), 2);
    let a = &records["a"];
    assert_eq!(a["tag"], json!("default"));
    assert_eq!(a["n"], json!(0));
    assert_eq!(a["score"], json!(0.0));
    assert_eq!(a["flag"], json!(false));
    assert_eq!(a["tags"], json!(["default"]));
    assert_eq!(a["nums"], json!([0]));
    assert!(!a.contains_key("when") && !a.contains_key("loc"), "{a:?}");
    assert_eq!(records["b"]["vec"], json!([1, 2, 3, 4]), "values kept as received");

    let got = c
        .v2(
            "fetch_in_collection",
            json!({"collection_name": "docs", "ids": ["a", "zz"]}),
        )
        .await;
    assert_ok(&got);
    let result = &got.1["result"];
    assert_eq!(result["fetch"][0]["id"], json!("a"));
    assert_eq!(result["fetch"][0]["fields"]["id"], json!("a"));
    assert_eq!(result["fetch"][0]["fields"]["tag"], json!("default"));
    assert_eq!(result["ids_not_exist"], json!(["zz"]));
    // resource_id locates the collection too.
    let got = c
        .v2(
            "fetch_in_collection",
            json!({"collection_name": "", "resource_id": "vdb-docs", "ids": ["b"]}),
        )
        .await;
    assert_eq!(got.1["result"]["fetch"][0]["fields"]["tag"], json!("x"));
}

#[tokio::test]
async fn v1_shapes_and_locators() {
    let e = emu().await;
    let c = Client::new(&e);
    let got = c
        .v1(
            "upsert_data",
            json!({"collection_alias": "docs_alias", "fields": [row("a"), row("b")], "ttl": null}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(got.1["message"], json!("success"));
    let single = c
        .v1("fetch_data", json!({"collection_name": "docs", "primary_keys": "a"}))
        .await;
    assert_ok(&single);
    assert_eq!(single.1["data"][0]["id"], json!("a"), "V1 SDKs read data[0]");
    assert_eq!(single.1["data"][0]["vec"], json!([0.1, 0.2, 0.3, 0.4]));
    let many = c
        .v1(
            "fetch_data",
            json!({"collection_name": "docs", "primary_keys": ["a", "nope"]}),
        )
        .await;
    assert_eq!(many.1["data"][0]["id"], json!("a"));
    assert_eq!(many.1["data"][1], json!({"id": "nope"}), "missing key → just the PK");
    // Int PKs: as integers or decimal strings.
    let got = c
        .v1(
            "upsert_data",
            json!({"collection_name": "items", "fields": [{"uid": 7, "title": "t"}, {"uid": "9223372036854775807"}]}),
        )
        .await;
    assert_ok(&got);
    let records = e.records("items").expect("items");
    assert_eq!(
        records.keys().cloned().collect::<Vec<_>>(),
        vec!["7".to_string(), "9223372036854775807".to_string()]
    );
    assert_eq!(records["9223372036854775807"]["uid"], json!(9223372036854775807i64));
    let got = c
        .v1("del_data", json!({"collection_name": "items", "primary_keys": 7}))
        .await;
    assert_ok(&got);
    assert_eq!(e.records("items").expect("items").len(), 1);
    // Unknown collection.
    let got = c
        .v1("upsert_data", json!({"collection_name": "ghost", "fields": [row("a")]}))
        .await;
    assert_v1_err(&got, 400, 1000005);
    let got = c
        .v2("upsert", json!({"collection_name": "ghost", "data": [row("a")]}))
        .await;
    assert_v2_err(&got, 404, "NotFound.VikingdbCollection");
    let got = c.v2("upsert", json!({"data": [row("a")]})).await;
    assert_v2_err(&got, 400, "MissingParameter");
    let got = c.v1("upsert_data", json!({"fields": [row("a")]})).await;
    assert_v1_err(&got, 400, 1000003);
}

#[tokio::test]
async fn row_limits_refuse_the_whole_request() {
    let e = emu().await;
    let c = Client::new(&e);
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": rows(101)}))
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v1("upsert_data", json!({"collection_name": "docs", "fields": rows(101)}))
        .await;
    assert_v1_err(&got, 400, 1000003);
    assert!(e.records("docs").expect("docs").is_empty());
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": rows(100)}))
            .await,
    );
    assert_eq!(e.records("docs").expect("docs").len(), 100);
    let ids: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
    let got = c.v2("delete", json!({"collection_name": "docs", "ids": ids})).await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c.v2("upsert", json!({"collection_name": "docs", "data": []})).await;
    assert_v2_err(&got, 400, "InvalidParameter");

    // Vectorize: one row per upsert/update; deletes still up to 100.
    let vrow = |id: &str| json!({"id": id, "text": "hello", "img": "tos://b/o.jpg"});
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "vz", "data": [vrow("a"), vrow("b")]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "vz", "data": [vrow("a")]}))
            .await,
    );
    let got = c
        .v2(
            "update",
            json!({"collection_name": "vz", "data": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let ids: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_ok(&c.v2("delete", json!({"collection_name": "vz", "ids": ids})).await);
    // A vectorize collection has no vector field: writing one is an unknown field.
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "vz", "data": [{"id": "a", "text": "t", "img": "https://x/y.png", "vector": [1, 2]}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    // Text and image have no defaults.
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "vz", "data": [{"id": "a", "text": "t"}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");

    let s = e.stats();
    assert_eq!(s.largest_write_request_rows, 101);
    assert_eq!(s.largest_delete_request_rows, 101);
    assert_eq!(s.largest_request_rows.get("upsert"), Some(&101));
    assert_eq!(s.rows_applied_upsert, 101);
}

#[tokio::test]
async fn primary_key_rules() {
    let e = emu().await;
    let c = Client::new(&e);
    for bad in [
        json!({"vec": [1, 2, 3, 4]}),
        json!({"id": "", "vec": [1, 2, 3, 4]}),
        json!({"id": 5, "vec": [1, 2, 3, 4]}),
    ] {
        let got = c
            .v2("upsert", json!({"collection_name": "docs", "data": [row("ok"), bad]}))
            .await;
        assert_v2_err(&got, 400, "InvalidParameter");
    }
    for bad in [json!(0), json!("0"), json!(1.5), json!("x"), json!(null)] {
        let got = c
            .v1(
                "upsert_data",
                json!({"collection_name": "items", "fields": [{"uid": bad}]}),
            )
            .await;
        assert_v1_err(&got, 400, 1000003);
    }
    assert!(e.records("docs").expect("docs").is_empty());
    assert!(e.records("items").expect("items").is_empty());
}

#[tokio::test]
async fn unknown_fields_refused_unless_ignored() {
    let e = emu().await;
    let c = Client::new(&e);
    let mut r = row("a");
    r["extra"] = json!(1);
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": [r.clone()]}))
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    assert!(got.1["message"].as_str().unwrap_or_default().contains("extra"));
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "data": [r], "ignore_unknown_fields": true}),
        )
        .await;
    assert_ok(&got);
    assert!(!e.records("docs").expect("docs")["a"].contains_key("extra"));
}

#[tokio::test]
async fn wrong_types_are_refused() {
    let e = emu().await;
    let c = Client::new(&e);
    let cases = [
        ("n", json!(1.5)),
        ("n", json!("1")),
        ("n", json!(18446744073709551615u64)),
        ("score", json!("1.0")),
        ("tag", json!(3)),
        ("flag", json!("true")),
        ("tags", json!(["a", 1])),
        ("nums", json!([1, 2.5])),
        ("vec", json!([1, 2, 3])),
        ("vec", json!([1, 2, 3, 4, 5])),
        ("vec", json!("AAAA")),
        ("vec", json!([1, "2", 3, 4])),
        ("when", json!("2025-13-01T00:00:00Z")),
        ("when", json!("yesterday")),
        ("loc", json!("190,10")),
        ("loc", json!("10")),
        ("tag", json!(null)),
    ];
    for (field, value) in cases {
        let mut r = row("a");
        r[field] = value.clone();
        let got = c.v2("upsert", json!({"collection_name": "docs", "data": [r]})).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{field} = {value}: {got:?}");
        assert_eq!(got.1["code"], json!("InvalidParameter"), "{field} = {value}");
    }
    assert!(e.records("docs").expect("docs").is_empty());
    let mut r = row("a");
    r["n"] = json!(-9223372036854775808i64);
    r["score"] = json!(3);
    r["when"] = json!("2025-08-12T11:33Z");
    let got = c.v2("upsert", json!({"collection_name": "docs", "data": [r]})).await;
    assert_ok(&got);
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "vz", "data": [{"id": "a", "text": "t", "img": "ftp://x"}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    // sparse_vector: an object token → number, and it has no default.
    for bad in [
        json!({"id": "a"}),
        json!({"id": "a", "sparse": [1, 2]}),
        json!({"id": "a", "sparse": {"t": "x"}}),
    ] {
        let got = c.v2("upsert", json!({"collection_name": "sp", "data": [bad]})).await;
        assert_v2_err(&got, 400, "InvalidParameter");
    }
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "sp", "data": [{"id": "a", "sparse": {"t": 0.5, "u": 1}}]}),
        )
        .await;
    assert_ok(&got);
}

fn packed<const N: usize>(bytes: impl Fn(usize) -> [u8; N], n: usize) -> Value {
    use base64::Engine as _;
    let raw: Vec<u8> = (0..n).flat_map(bytes).collect();
    json!(base64::engine::general_purpose::STANDARD.encode(raw))
}

#[tokio::test]
async fn v2_takes_packed_vectors_and_v1_does_not() {
    let e = emu().await;
    let c = Client::new(&e);
    // float32s, little-endian: stored as their exact values.
    let f32s = [0.1f32, -2.5, 1e-45, f32::MAX];
    let vec32 = packed(|i| f32s[i].to_le_bytes(), 4);
    let f64s = [0.1f64, -2.5, 1e-300, 7.0];
    let vec64 = packed(|i| f64s[i].to_le_bytes(), 4);
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "data": [{"id": "a", "vec": vec32}, {"id": "b", "vec": vec64}]}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(e.stats().packed_vectors, 2);
    let records = e.records("docs").expect("docs");
    assert_eq!(records["a"]["vec"], json!(f32s.map(f64::from)));
    assert_eq!(records["b"]["vec"], json!([0.1, -2.5, 1e-300, 7.0]));
    let read: Vec<f32> = records["a"]["vec"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(
        read.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        f32s.map(f32::to_bits)
    );

    // Refused, and nothing written: the wrong length for dim 4 (12 and 20 bytes), not base64,
    // a NaN, and bytes that read as a NaN in little-endian order.
    let bad = [
        packed(|i| f32s[i].to_le_bytes(), 3),
        packed(|i| f32s[i % 4].to_le_bytes(), 5),
        json!("not base64!"),
        packed(|_| f32::NAN.to_le_bytes(), 4),
        packed(|_| [0xff, 0xff, 0xff, 0x7f], 4),
    ];
    for v in bad {
        let got = c
            .v2(
                "upsert",
                json!({"collection_name": "docs", "data": [{"id": "z", "vec": v}]}),
            )
            .await;
        assert_v2_err(&got, 400, "InvalidParameter");
    }
    let got = c
        .v1(
            "upsert_data",
            json!({"collection_name": "docs", "fields": [{"id": "z", "vec": packed(|i| f32s[i].to_le_bytes(), 4)}]}),
        )
        .await;
    assert_v1_err(&got, 400, 1000003);
    assert!(!e.records("docs").expect("docs").contains_key("z"));
    assert_eq!(e.stats().packed_vectors, 2, "refused requests are not counted");

    // Without a dim, packed bytes are float32s; with one, 8 × dim bytes are float64s (so 2 × dim
    // float32s cannot be told from dim float64s: the client checks dim before it sends).
    let mut free = CollectionSpec::new("free", "id", &[("id", T::String), ("vec", T::Vector)]);
    free.dim = None;
    let e = emu_with(EmulatorConfig {
        collections: vec![free],
        ..config()
    })
    .await;
    let c = Client::new(&e);
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "free", "data": [{"id": "a", "vec": vec64}]}),
        )
        .await;
    assert_ok(&got);
    let stored = &e.records("free").expect("free")["a"]["vec"];
    assert_eq!(
        stored.as_array().map(Vec::len),
        Some(8),
        "32 bytes without a dim: 8 float32s"
    );
}

#[tokio::test]
async fn ttl_rules_and_expiry() {
    let e = emu().await;
    let c = Client::new(&e);
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "data": [row("a")], "ttl": -1}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v1(
            "upsert_data",
            json!({"collection_name": "docs", "fields": [row("a")], "ttl": 1.5}),
        )
        .await;
    assert_v1_err(&got, 400, 1000003);
    assert_ok(
        &c.v1(
            "upsert_data",
            json!({"collection_name": "docs", "fields": [row("forever")], "ttl": null}),
        )
        .await,
    );
    assert_ok(
        &c.v2(
            "upsert",
            json!({"collection_name": "docs", "data": [row("short"), row("renewed")], "ttl": 1}),
        )
        .await,
    );
    // An update's ttl replaces the record's TTL (0 = never expires).
    assert_ok(
        &c.v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "renewed", "tag": "kept"}], "ttl": 0}),
        )
        .await,
    );
    // An update without ttl keeps the record's TTL.
    assert_ok(
        &c.v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "short", "tag": "still short"}]}),
        )
        .await,
    );
    assert_eq!(e.records("docs").expect("docs").len(), 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let live = e.records("docs").expect("docs");
    assert_eq!(live.keys().cloned().collect::<Vec<_>>(), vec!["forever", "renewed"]);
    let got = c
        .v2(
            "fetch_in_collection",
            json!({"collection_name": "docs", "ids": ["short"]}),
        )
        .await;
    assert_eq!(got.1["result"]["ids_not_exist"], json!(["short"]));
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "short", "tag": "x"}]}),
        )
        .await;
    assert_v2_err(&got, 404, "NotFound.Data");
}

#[tokio::test]
async fn update_merges_and_missing_keys_refuse_the_request() {
    let e = emu().await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2(
            "upsert",
            json!({"collection_name": "docs", "data": [{"id": "a", "vec": [1, 1, 1, 1], "tag": "old", "n": 5}]}),
        )
        .await,
    );
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "a", "tag": "new"}]}),
        )
        .await;
    assert_ok(&got);
    let a = e.records("docs").expect("docs")["a"].clone();
    assert_eq!(a["tag"], json!("new"));
    assert_eq!(a["n"], json!(5));
    assert_eq!(a["vec"], json!([1, 1, 1, 1]));
    // One missing key refuses the whole batch.
    let got = c
        .v1(
            "update_data",
            json!({"collection_name": "docs", "fields": [{"id": "a", "tag": "newer"}, {"id": "missing", "tag": "x"}], "ttl": 0}),
        )
        .await;
    assert_v1_err(&got, 400, 1000011);
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "a", "tag": "newer"}, {"id": "missing"}]}),
        )
        .await;
    assert_v2_err(&got, 404, "NotFound.Data");
    assert_eq!(e.records("docs").expect("docs")["a"]["tag"], json!("new"));
    // Types are checked on update too, and the PK is mandatory.
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "a", "n": "five"}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v2("update", json!({"collection_name": "docs", "data": [{"tag": "x"}]}))
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let s = e.stats();
    assert_eq!(s.data_not_found, 2);
    assert_eq!(s.rows_applied_update, 1);
}

#[tokio::test]
async fn update_missing_modes() {
    let mut cfg = config();
    cfg.update_missing = UpdateMissing::Ignore;
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": [row("a")]}))
            .await,
    );
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "a", "tag": "t"}, {"id": "b", "tag": "t"}]}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(e.records("docs").expect("docs").len(), 1);
    assert_eq!(e.stats().rows_ignored_update, 1);

    let mut cfg = config();
    cfg.update_missing = UpdateMissing::Upsert;
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "b", "vec": [1, 2, 3, 4]}]}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(e.records("docs").expect("docs")["b"]["tag"], json!("default"));
    // Upserting a missing key still needs the fields without defaults.
    let got = c
        .v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "c", "tag": "x"}]}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
}

#[tokio::test]
async fn delete_and_del_all() {
    let e = emu().await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": rows(10)}))
            .await,
    );
    let got = c
        .v2(
            "delete",
            json!({"collection_name": "docs", "ids": ["r0", "r1", "never"]}),
        )
        .await;
    assert_ok(&got);
    assert!(got.1["result"].is_null());
    assert_eq!(e.records("docs").expect("docs").len(), 8);
    let got = c.v2("delete", json!({"collection_name": "docs"})).await;
    assert_v2_err(&got, 400, "MissingParameter");
    let got = c.v2("delete", json!({"collection_name": "docs", "ids": "r2"})).await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v1(
            "del_data",
            json!({"collection_name": "docs", "primary_keys": ["r2", "r3"]}),
        )
        .await;
    assert_ok(&got);
    assert_eq!(e.records("docs").expect("docs").len(), 6);
    let got = c
        .v1("del_data", json!({"collection_name": "docs", "del_all": true}))
        .await;
    assert_ok(&got);
    assert!(e.records("docs").expect("docs").is_empty());
    let s = e.stats();
    assert_eq!(s.del_all_applied, 1);
    assert_eq!(s.rows_applied_delete, 3 + 2 + 6);
}

#[tokio::test]
async fn quota_throttles_rows() {
    let e = emu().await;
    let c = Client::new(&e);
    let ids = |p: &str| (0..100).map(|i| json!({"id": format!("{p}{i}")})).collect::<Vec<_>>();
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "limited", "data": ids("a")}))
            .await,
    );
    let got = c
        .v2("upsert", json!({"collection_name": "limited", "data": ids("b")}))
        .await;
    assert_v2_err(&got, 429, "RequestLimitExceeded");
    let got = c
        .v1(
            "del_data",
            json!({"collection_name": "limited", "primary_keys": ["a1", "a2"]}),
        )
        .await;
    assert_v1_err(&got, 429, 1000029);
    // Fetch is not limited.
    assert_ok(
        &c.v2(
            "fetch_in_collection",
            json!({"collection_name": "limited", "ids": ["a1"]}),
        )
        .await,
    );
    let s = e.stats();
    assert_eq!(s.throttled, 2);
    assert_eq!(s.throttled_rows, 102);
    assert_eq!(s.throttled_rows_async, 0);
    assert_eq!(s.rows_accepted_sync, 100);
    assert_eq!(s.collections["limited"].throttled_rows, 102);
    assert_eq!(s.collections["limited"].rows_accepted_sync, 100);
    assert_eq!(e.records("limited").expect("limited").len(), 100);
    // The 1-row bucket admitted 100 rows because it was full: a debt of 99 rows (99 s at 1 row/s)
    // blocks even a single row now. No Retry-After unless configured.
    let resp = c
        .send_signed(
            Method::POST,
            "/api/collection/del_data",
            "air",
            &json!({"collection_name": "limited", "primary_keys": "a1"}),
        )
        .await
        .expect("sent");
    assert!(resp.headers().get("retry-after").is_none());
    assert_v1_err(&decode(resp).await, 429, 1000029);
}

/// Collections for the bucket tests: `q` has 10 rows/s; with 0.5 s of burst its bucket holds 5.
fn quota_config() -> EmulatorConfig {
    let mut q = CollectionSpec::new("q", "id", &[("id", T::String), ("title", T::String)]);
    q.quota_rows_per_second = 10;
    let mut vz = CollectionSpec::new("vz", "id", &[("id", T::String), ("text", T::Text)]);
    vz.vectorize = true;
    EmulatorConfig {
        collections: vec![q, vz],
        quota_burst_seconds: 0.5,
        ..EmulatorConfig::default()
    }
}

fn q_rows(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": format!("{prefix}{i}"), "title": "t"}))
        .collect()
}

/// Sends `count` 1-row V2 upserts to `q` back to back; returns (accepted, refused, elapsed).
async fn burst_of_single_rows(c: &Client, prefix: &str, count: usize) -> (u64, u64, f64) {
    let start = Instant::now();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..count {
        let got = c
            .v2(
                "upsert",
                json!({"collection_name": "q", "data": q_rows(&format!("{prefix}{i}-"), 1)}),
            )
            .await;
        match got.0.as_u16() {
            200 => ok += 1,
            429 => {
                assert_v2_err(&got, 429, "RequestLimitExceeded");
                refused += 1;
            }
            _ => panic!("unexpected answer {got:?}"),
        }
    }
    (ok, refused, start.elapsed().as_secs_f64())
}

#[tokio::test]
async fn bucket_refuses_a_burst_beyond_capacity_and_refills() {
    let e = emu_with(quota_config()).await;
    let c = Client::new(&e);
    // Capacity 5, refill 10 rows/s: a full bucket admits 5 rows plus what refills meanwhile.
    let (ok, refused, elapsed) = burst_of_single_rows(&c, "a", 12).await;
    assert!(ok >= 5, "a full bucket admits its capacity: {ok}");
    assert!(
        ok as f64 <= 5.0 + 10.0 * elapsed + 1e-6,
        "{ok} rows accepted in {elapsed} s"
    );
    if elapsed < 0.6 {
        assert!(refused > 0, "{ok} accepted, {refused} refused in {elapsed} s");
    }
    let s = e.stats();
    assert_eq!(s.rows_accepted_sync, ok);
    assert_eq!(s.throttled, refused);
    assert_eq!(s.throttled_rows, refused);
    assert_eq!(s.collections["q"].rows_accepted_sync, ok);
    assert_eq!(e.records("q").expect("q").len() as u64, ok);
    // 0.6 s refills at least 6 rows, capped at the capacity of 5: the same again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (ok2, refused2, elapsed2) = burst_of_single_rows(&c, "b", 8).await;
    assert!(ok2 >= 5, "the bucket refilled to its capacity: {ok2}");
    assert!(ok2 as f64 <= 5.0 + 10.0 * elapsed2 + 1e-6, "{ok2} rows in {elapsed2} s");
    if elapsed2 < 0.3 {
        assert!(refused2 > 0, "the refill is capped at the capacity");
    }
    assert_eq!(e.stats().rows_accepted_sync, ok + ok2);
}

#[tokio::test]
async fn a_request_larger_than_the_bucket_needs_it_full_then_leaves_a_debt() {
    let e = emu_with(quota_config()).await;
    let c = Client::new(&e);
    let start = Instant::now();
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "q", "data": q_rows("a", 1)}))
            .await,
    );
    // 4 of 5 tokens left: 20 rows (more than the bucket) need a full bucket.
    let got = c
        .v2("upsert", json!({"collection_name": "q", "data": q_rows("b", 20)}))
        .await;
    if start.elapsed() < Duration::from_millis(100) {
        assert_v2_err(&got, 429, "RequestLimitExceeded");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let admitted = Instant::now();
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "q", "data": q_rows("c", 20)}))
            .await,
    );
    // Tokens are now 5 - 20 = -15: 1.6 s at 10 rows/s before one row fits again, for every op
    // and API alike (the bucket is the collection's).
    let del = c
        .v1("del_data", json!({"collection_name": "q", "primary_keys": ["a0"]}))
        .await;
    let upd = c
        .v2(
            "update",
            json!({"collection_name": "q", "data": [{"id": "a0", "title": "u"}]}),
        )
        .await;
    if admitted.elapsed() < Duration::from_millis(1600) {
        assert_v1_err(&del, 429, 1000029);
        assert_v2_err(&upd, 429, "RequestLimitExceeded");
    }
    let records = e.records("q").expect("q");
    assert!(records.contains_key("c19") && records.contains_key("a0"), "{records:?}");
    assert_eq!(e.stats().rows_accepted_sync, 21);
}

#[tokio::test]
async fn throttle_answers_carry_retry_after_only_when_configured() {
    let mut cfg = quota_config();
    cfg.throttle_retry_after = Some(Duration::from_millis(250));
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "q", "data": q_rows("a", 50)}))
            .await,
    );
    let resp = c
        .send_signed(
            Method::POST,
            "/api/vikingdb/data/upsert",
            "vikingdb",
            &json!({"collection_name": "q", "data": q_rows("b", 1)}),
        )
        .await
        .expect("sent");
    let header = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_v2_err(&decode(resp).await, 429, "RequestLimitExceeded");
    assert_eq!(header.as_deref(), Some("0.25"));
}

#[tokio::test]
async fn async_upserts_are_invisible_until_due_and_visible_after_settle() {
    let mut cfg = config();
    cfg.async_visible_after = Duration::from_millis(700);
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    e.settle().await; // nothing pending: returns at once
    let sent = Instant::now();
    assert_ok(
        &c.v2(
            "upsert",
            json!({"collection_name": "docs", "data": [row("x"), row("y")], "async": true}),
        )
        .await,
    );
    assert_ok(
        &c.v1(
            "upsert_data",
            json!({"collection_name": "docs", "fields": [row("z")], "async": true}),
        )
        .await,
    );
    // Arrival order at the due time: the second async upsert of `x` wins, and it also lands after
    // this sync upsert (sent later, applied at once).
    let mut tagged = row("x");
    tagged["tag"] = json!("async-last");
    assert_ok(
        &c.v2(
            "upsert",
            json!({"collection_name": "docs", "data": [tagged], "async": true}),
        )
        .await,
    );
    let mut sync = row("x");
    sync["tag"] = json!("sync");
    assert_ok(&c.v2("upsert", json!({"collection_name": "docs", "data": [sync]})).await);
    // A bad async row is refused synchronously; nothing of it is queued.
    let bad = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "data": [{"id": "w", "vec": [1]}], "async": true}),
        )
        .await;
    assert_v2_err(&bad, 400, "InvalidParameter");

    let fetched = c
        .v2(
            "fetch_in_collection",
            json!({"collection_name": "docs", "ids": ["y", "z"]}),
        )
        .await;
    let records = e.records("docs").expect("docs");
    let stats = e.stats();
    if sent.elapsed() < Duration::from_millis(700) {
        assert_eq!(fetched.1["result"]["ids_not_exist"], json!(["y", "z"]), "{fetched:?}");
        assert_eq!(records.keys().collect::<Vec<_>>(), vec!["x"]);
        assert_eq!(records["x"]["tag"], json!("sync"));
        assert_eq!(stats.collections["docs"].pending_async_rows, 4);
        assert_eq!(e.pending_async_rows(), 4);
        assert_eq!(stats.rows_applied_async, 0);
    }
    assert_eq!(stats.rows_accepted_async, 4);
    assert_eq!(stats.rows_accepted_sync, 1);

    e.settle().await;
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "settle waits for the delay"
    );
    assert_eq!(e.pending_async_rows(), 0);
    let records = e.records("docs").expect("docs");
    assert_eq!(records.keys().collect::<Vec<_>>(), vec!["x", "y", "z"]);
    assert_eq!(records["x"]["tag"], json!("async-last"));
    let fetched = c
        .v2(
            "fetch_in_collection",
            json!({"collection_name": "docs", "ids": ["y", "z"]}),
        )
        .await;
    assert_eq!(fetched.1["result"]["ids_not_exist"], json!([]), "{fetched:?}");
    let stats = e.stats();
    assert_eq!(stats.rows_applied_async, 4);
    assert_eq!(stats.rows_applied_upsert, 5);
    assert_eq!(stats.collections["docs"].rows_applied_async, 4);
    assert_eq!(stats.collections["docs"].pending_async_rows, 0);
}

#[tokio::test]
async fn async_is_refused_on_update_delete_and_vectorize() {
    let e = emu().await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": [row("a")]}))
            .await,
    );
    let check_v2 = |got: (StatusCode, Value)| {
        assert_v2_err(&got, 400, "InvalidParameter");
        assert!(
            got.1["message"]
                .as_str()
                .is_some_and(|m| m.contains("only for upserts")),
            "{got:?}"
        );
    };
    check_v2(
        c.v2(
            "update",
            json!({"collection_name": "docs", "data": [{"id": "a", "tag": "t"}], "async": true}),
        )
        .await,
    );
    check_v2(
        c.v2(
            "delete",
            json!({"collection_name": "docs", "ids": ["a"], "async": true}),
        )
        .await,
    );
    check_v2(
        c.v2(
            "delete",
            json!({"collection_name": "docs", "del_all": true, "async": true}),
        )
        .await,
    );
    check_v2(
        c.v2(
            "upsert",
            json!({"collection_name": "vz", "data": [{"id": "v", "text": "hi"}], "async": true}),
        )
        .await,
    );
    let got = c
        .v1(
            "update_data",
            json!({"collection_name": "docs", "fields": [{"id": "a", "tag": "t"}], "async": true}),
        )
        .await;
    assert_v1_err(&got, 400, 1000003);
    let got = c
        .v1(
            "del_data",
            json!({"collection_name": "docs", "primary_keys": "a", "async": true}),
        )
        .await;
    assert_v1_err(&got, 400, 1000003);
    // `async: false` is fine everywhere.
    assert_ok(
        &c.v2(
            "delete",
            json!({"collection_name": "docs", "ids": ["zz"], "async": false}),
        )
        .await,
    );
    assert_eq!(e.records("docs").expect("docs").len(), 1);
    assert_eq!(e.stats().rows_accepted_async, 0);
}

#[tokio::test]
async fn async_and_sync_buckets_are_separate() {
    // Sync: 4 rows/s, capacity 4. Async: the default 10 × 4 = 40 rows/s, capacity 40.
    let mut cfg = quota_config();
    cfg.quota_burst_seconds = 1.0;
    cfg.collections[0].quota_rows_per_second = 4;
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    let upsert = |prefix: &str, n: usize, is_async: bool| json!({"collection_name": "q", "data": q_rows(prefix, n), "async": is_async});
    let start = Instant::now();
    // Two 20-row async upserts fit the 40-row async bucket (with a 4-row one, only the first would).
    assert_ok(&c.v2("upsert", upsert("a", 20, true)).await);
    assert_ok(&c.v2("upsert", upsert("b", 20, true)).await);
    // The sync bucket is untouched by them: full.
    assert_ok(&c.v2("upsert", upsert("c", 4, false)).await);
    let sync_more = c.v2("upsert", upsert("d", 1, false)).await;
    let async_more = c.v2("upsert", upsert("e", 1, true)).await;
    if start.elapsed() < Duration::from_millis(25) {
        assert_v2_err(&async_more, 429, "RequestLimitExceeded");
    }
    if start.elapsed() < Duration::from_millis(250) {
        assert_v2_err(&sync_more, 429, "RequestLimitExceeded");
    }
    let s = e.stats();
    assert!(s.rows_accepted_async >= 40 && s.rows_accepted_sync >= 4, "{s:?}");
    assert_eq!(s.throttled_rows, s.throttled_rows_async + u64::from(sync_more.0 == 429));
    // With an explicit async quota of 2 rows/s (capacity 2), async is throttled while sync is not.
    let mut cfg = quota_config();
    cfg.async_quota_rows_per_second = Some(2);
    cfg.quota_burst_seconds = 1.0;
    let e = emu_with(cfg).await;
    let c = Client::new(&e);
    let start = Instant::now();
    assert_ok(&c.v2("upsert", upsert("a", 2, true)).await);
    let got = c
        .v1(
            "upsert_data",
            json!({"collection_name": "q", "fields": q_rows("b", 1), "async": true}),
        )
        .await;
    if start.elapsed() < Duration::from_millis(500) {
        assert_v1_err(&got, 429, 1000029);
        assert_eq!(e.stats().throttled_rows_async, 1);
    }
    assert_ok(&c.v2("upsert", upsert("c", 5, false)).await);
}

#[tokio::test]
async fn authentication_failures() {
    let e = emu().await;
    let body = json!({"collection_name": "docs", "data": [row("a")]});
    let mut c = Client::new(&e);
    c.sk = "WRONG".into();
    assert_v2_err(&c.v2("upsert", body.clone()).await, 401, "Unauthorized");
    let mut c = Client::new(&e);
    c.ak = "AKUNKNOWN".into();
    assert_v1_err(
        &c.v1("upsert_data", json!({"collection_name": "docs", "fields": [row("a")]}))
            .await,
        401,
        1000001,
    );
    let mut c = Client::new(&e);
    c.skew = chrono::Duration::minutes(20);
    assert_v2_err(&c.v2("upsert", body.clone()).await, 401, "Unauthorized");
    c.skew = chrono::Duration::minutes(-20);
    assert_v2_err(&c.v2("upsert", body.clone()).await, 401, "Unauthorized");
    c.skew = chrono::Duration::minutes(10);
    assert_ok(&c.v2("upsert", body.clone()).await);
    let mut c = Client::new(&e);
    c.tamper = Some(br#"{"collection_name":"docs","data":[{"id":"evil","vec":[1,2,3,4]}]}"#.to_vec());
    assert_v2_err(&c.v2("upsert", body.clone()).await, 401, "Unauthorized");
    // Signed as the other API's service.
    let c = Client::new(&e);
    let got = c
        .call(
            Method::POST,
            "/api/collection/upsert_data",
            "vikingdb",
            &json!({"collection_name": "docs", "fields": [row("a")]}),
        )
        .await;
    assert_v1_err(&got, 403, 1000002);
    // Session token required for the STS key.
    let mut c = Client::new(&e);
    c.ak = "AKSTS".into();
    c.sk = "SKSTS".into();
    assert_v2_err(&c.v2("upsert", body.clone()).await, 401, "Unauthorized");
    c.token = Some("TOKEN".into());
    assert_ok(&c.v2("upsert", body.clone()).await);
    // Missing and garbled Authorization headers.
    let url = format!("{}/api/vikingdb/data/upsert", e.endpoint());
    let bytes = serde_json::to_vec(&body).expect("json");
    let resp = c.http.post(&url).body(bytes.clone()).send().await.expect("send");
    assert_v2_err(&decode(resp).await, 401, "Unauthorized");
    let resp = c
        .http
        .post(&url)
        .header("Authorization", "HMAC-SHA256 nonsense")
        .body(bytes.clone())
        .send()
        .await
        .expect("send");
    assert_v2_err(&decode(resp).await, 401, "Unauthorized");
    // Bearer API keys: V2 only.
    let resp = c
        .http
        .post(&url)
        .header("Authorization", format!("Bearer {API_KEY}"))
        .body(bytes.clone())
        .send()
        .await
        .expect("send");
    assert_ok(&decode(resp).await);
    let resp = c
        .http
        .post(&url)
        .header("Authorization", "Bearer not-a-key")
        .body(bytes.clone())
        .send()
        .await
        .expect("send");
    assert_v2_err(&decode(resp).await, 401, "Unauthorized");
    let resp = c
        .http
        .post(format!("{}/api/collection/upsert_data", e.endpoint()))
        .header("Authorization", format!("Bearer {API_KEY}"))
        .body(r#"{"collection_name":"docs","fields":[]}"#)
        .send()
        .await
        .expect("send");
    assert_v1_err(&decode(resp).await, 401, 1000001);
    assert_eq!(e.records("docs").expect("docs").len(), 1);
    let s = e.stats();
    assert_eq!(s.unauthorized, 10);
    assert_eq!(s.forbidden, 1);
}

#[tokio::test]
async fn auth_disabled_without_keys() {
    let mut cfg = config();
    cfg.keys.clear();
    cfg.api_keys.clear();
    let e = emu_with(cfg).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let resp = http
        .post(format!("{}/api/vikingdb/data/upsert", e.endpoint()))
        .body(serde_json::to_vec(&json!({"collection_name": "docs", "data": [row("a")]})).expect("json"))
        .send()
        .await
        .expect("send");
    assert_ok(&decode(resp).await);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let e = emu().await;
    let c = Client::new(&e);
    let http = &c.http;
    for body in ["", "{", "[1,2]", "null", "{\"collection_name\": 5}"] {
        let bytes = body.as_bytes().to_vec();
        // Sign the exact bytes.
        let x_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let hash = sha256_hex(&bytes);
        let host = e.addr().to_string();
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", host.as_str()),
            ("X-Date", x_date.as_str()),
            ("X-Content-Sha256", hash.as_str()),
        ];
        let input = SigningInput {
            method: "POST",
            path: "/api/vikingdb/data/upsert",
            query: &[],
            headers: &headers,
            body_sha256: &hash,
        };
        let auth = authorization(AK, SK, &x_date, "cn-beijing", "vikingdb", &input);
        let resp = http
            .post(format!("{}/api/vikingdb/data/upsert", e.endpoint()))
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .header("X-Date", &x_date)
            .header("X-Content-Sha256", &hash)
            .body(bytes)
            .send()
            .await
            .expect("send");
        assert_v2_err(&decode(resp).await, 400, "InvalidParameter");
    }
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": {"id": "a"}}))
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": [1, "x"]}))
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let got = c
        .v2(
            "upsert",
            json!({"collection_name": "docs", "data": [row("a")], "async": "yes"}),
        )
        .await;
    assert_v2_err(&got, 400, "InvalidParameter");
    let resp = http
        .get(format!("{}/api/nothing", e.endpoint()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn injected_errors_before_and_after() {
    let e = emu().await;
    let c = Client::new(&e);
    e.set_faults(FaultConfig {
        error_before: 1.0,
        ..FaultConfig::default()
    });
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": [row("a")]}))
        .await;
    assert_v2_err(&got, 500, "InternalServerError");
    assert!(
        e.records("docs").expect("docs").is_empty(),
        "error_before does not apply"
    );
    // Fetch is never faulted.
    assert_ok(
        &c.v2("fetch_in_collection", json!({"collection_name": "docs", "ids": ["a"]}))
            .await,
    );
    e.set_faults(FaultConfig {
        error_after: 1.0,
        ..FaultConfig::default()
    });
    let got = c
        .v1("upsert_data", json!({"collection_name": "docs", "fields": [row("a")]}))
        .await;
    assert_v1_err(&got, 500, 1000028);
    assert_eq!(e.records("docs").expect("docs").len(), 1, "error_after applies");
    let s = e.stats();
    assert_eq!(s.injected_error_before, 1);
    assert_eq!(s.injected_error_after, 1);
    assert_eq!(s.rows_applied_upsert, 1);
}

#[tokio::test]
async fn dropped_connections_are_transport_errors() {
    let e = emu().await;
    let c = Client::new(&e);
    e.set_faults(FaultConfig {
        drop_connection: 1.0,
        ..FaultConfig::default()
    });
    let mut applied = 0;
    for i in 0..20 {
        let body = json!({"collection_name": "docs", "data": [row(&format!("d{i}"))]});
        let result = c
            .send_signed(Method::POST, "/api/vikingdb/data/upsert", "vikingdb", &body)
            .await;
        // hyper aborts before writing the status line, so `send()` itself fails.
        assert!(
            result.is_err(),
            "a dropped request must not yield a response: {result:?}"
        );
        applied = e.records("docs").expect("docs").len();
    }
    let s = e.stats();
    assert_eq!(s.dropped, 20);
    assert_eq!(s.dropped_before_apply + s.dropped_after_apply, 20);
    assert_eq!(applied as u64, s.dropped_after_apply);
    assert!(s.dropped_before_apply > 0 && s.dropped_after_apply > 0, "{s:?}");
    // The emulator keeps serving afterwards.
    e.set_faults(FaultConfig::default());
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": [row("z")]}))
            .await,
    );
}

#[tokio::test]
async fn dropped_connection_fails_send() {
    let e = emu().await;
    let c = Client::new(&e);
    e.set_faults(FaultConfig {
        drop_connection: 1.0,
        ..FaultConfig::default()
    });
    let body = json!({"collection_name": "docs", "data": [row("a")]});
    let result = c
        .send_signed(Method::POST, "/api/vikingdb/data/upsert", "vikingdb", &body)
        .await;
    assert!(result.is_err(), "send() itself should fail: {result:?}");
}

#[tokio::test]
async fn latency_and_slow_requests() {
    let e = emu().await;
    let c = Client::new(&e);
    e.set_faults(FaultConfig {
        latency_ms: 150,
        jitter_ms: 50,
        ..FaultConfig::default()
    });
    let t = Instant::now();
    assert_ok(
        &c.v2("fetch_in_collection", json!({"collection_name": "docs", "ids": ["a"]}))
            .await,
    );
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    e.set_faults(FaultConfig {
        slow: 1.0,
        slow_ms: 600,
        ..FaultConfig::default()
    });
    let mut timed = Client::new(&e);
    timed.http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let body = json!({"collection_name": "docs", "data": [row("slow")]});
    let result = timed
        .send_signed(Method::POST, "/api/vikingdb/data/upsert", "vikingdb", &body)
        .await;
    match result {
        Err(err) => assert!(err.is_timeout(), "{err}"),
        Ok(resp) => panic!("expected a timeout, got {}", resp.status()),
    }
    // The request still completes on the server (applied either before or after the delay).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = e.stats();
    assert_eq!(s.slowed, 1);
    assert_eq!(s.ok, 2);
    assert_eq!(e.records("docs").expect("docs").len(), 1);
}

#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    async fn outcomes(seed: u64) -> Vec<u16> {
        let mut cfg = config();
        cfg.seed = seed;
        cfg.faults = FaultConfig {
            error_before: 0.3,
            error_after: 0.3,
            ..FaultConfig::default()
        };
        let e = emu_with(cfg).await;
        let c = Client::new(&e);
        let mut out = Vec::new();
        for i in 0..20 {
            let got = c
                .v2(
                    "upsert",
                    json!({"collection_name": "docs", "data": [row(&format!("k{i}"))]}),
                )
                .await;
            out.push(got.0.as_u16());
        }
        out
    }
    let a = outcomes(7).await;
    assert_eq!(a, outcomes(7).await);
    assert!(a.contains(&200) && a.contains(&500), "{a:?}");
}

#[tokio::test]
async fn admin_endpoints() {
    let e = emu().await;
    let c = Client::new(&e);
    assert_ok(
        &c.v2("upsert", json!({"collection_name": "docs", "data": [row("a")]}))
            .await,
    );
    let http = &c.http;
    let stats: Stats = serde_json::from_slice(
        &http
            .get(format!("{}/admin/stats", e.endpoint()))
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("stats json");
    assert_eq!(stats.ok, 1);
    assert_eq!(stats.rows_applied_upsert, 1);
    assert_eq!(stats.collections["docs"].live_records, 1);
    assert_eq!(stats.collections["docs"].rows_applied_upsert, 1);
    let dump: Value = serde_json::from_slice(
        &http
            .get(format!("{}/admin/dump?collection=docs", e.endpoint()))
            .send()
            .await
            .expect("dump")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("dump json");
    assert_eq!(dump["a"]["id"], json!("a"));
    let resp = http
        .get(format!("{}/admin/dump?collection=ghost", e.endpoint()))
        .send()
        .await
        .expect("dump");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = http
        .put(format!("{}/admin/faults", e.endpoint()))
        .body(r#"{"error_before": 1.0}"#)
        .send()
        .await
        .expect("faults");
    assert_eq!(resp.status(), StatusCode::OK);
    let got = c
        .v2("upsert", json!({"collection_name": "docs", "data": [row("b")]}))
        .await;
    assert_v2_err(&got, 500, "InternalServerError");
    for bad in [r#"{"error_before": 2}"#, r#"{"nope": 1}"#, "x"] {
        let resp = http
            .put(format!("{}/admin/faults", e.endpoint()))
            .body(bad)
            .send()
            .await
            .expect("faults");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    e.shutdown().await;
}

#[test]
fn collections_file_parses_and_refuses_unknown_keys() {
    let text = r#"
        seed = 42
        update_missing = "upsert"
        api_keys = ["k"]
        quota_burst_seconds = 0.5
        async_quota_rows_per_second = 300
        async_visible_after_ms = 250
        throttle_retry_after_ms = 1500
        [[keys]]
        access_key = "AK"
        secret_key = "SK"
        [faults]
        error_before = 0.1
        latency_ms = 5
        [[collections]]
        name = "docs"
        primary_key = "id"
        dim = 4
        alias = "d"
        [collections.fields]
        id = "string"
        vec = "vector"
        tags = "list<string>"
    "#;
    let cfg = EmulatorConfig::from_toml_str(text).expect("parses");
    assert_eq!(cfg.seed, 42);
    assert_eq!(cfg.update_missing, UpdateMissing::Upsert);
    assert_eq!(cfg.faults.error_before, 0.1);
    assert_eq!(cfg.max_clock_skew, Duration::from_secs(900));
    assert_eq!(cfg.quota_burst_seconds, 0.5);
    assert_eq!(cfg.async_quota_rows_per_second, Some(300));
    assert_eq!(cfg.async_visible_after, Duration::from_millis(250));
    assert_eq!(cfg.throttle_retry_after, Some(Duration::from_millis(1500)));
    let plain = EmulatorConfig::from_toml_str(
        "[[collections]]\nname = \"c\"\nprimary_key = \"id\"\n[collections.fields]\nid = \"int64\"\n",
    )
    .expect("parses");
    assert_eq!(plain.quota_burst_seconds, 0.1);
    assert_eq!(plain.async_quota_rows_per_second, None);
    assert_eq!(plain.async_visible_after, Duration::from_millis(1000));
    assert_eq!(plain.throttle_retry_after, None);
    assert!(
        EmulatorConfig::from_toml_str(&text.replace("quota_burst_seconds = 0.5", "quota_burst_seconds = 0.0")).is_err(),
        "the burst must be > 0"
    );
    let c = &cfg.collections[0];
    assert_eq!(c.fields["tags"], T::ListString);
    assert_eq!(c.quota_rows_per_second, 1500);
    assert_eq!(c.alias.as_deref(), Some("d"));
    assert!(EmulatorConfig::from_toml_str(&text.replace("seed = 42", "sed = 42")).is_err());
    assert!(EmulatorConfig::from_toml_str(&text.replace("dim = 4", "dim = 4\nextra = 1")).is_err());
    assert!(EmulatorConfig::from_toml_str(&text.replace("id = \"string\"", "id = \"float32\"")).is_err());
    assert!(EmulatorConfig::from_toml_str(&text.replace("error_before = 0.1", "error_before = 1.5")).is_err());
    assert!(EmulatorConfig::from_toml_str("seed = 1").is_err(), "no collections");
}

#[test]
fn secrets_stay_out_of_debug() {
    let k = AccessKey {
        access_key: "AKVISIBLE".into(),
        secret_key: "SUPERSECRET".into(),
        session_token: Some("TOKENSECRET".into()),
    };
    let cfg = EmulatorConfig {
        keys: vec![k],
        ..EmulatorConfig::default()
    };
    let text = format!("{cfg:?}");
    assert!(text.contains("AKVISIBLE"));
    assert!(!text.contains("SUPERSECRET") && !text.contains("TOKENSECRET"), "{text}");
}

#[tokio::test]
async fn invalid_specs_do_not_start() {
    let mut bad = config();
    let mut vz = CollectionSpec::new("v", "id", &[("id", T::String), ("vec", T::Vector)]);
    vz.vectorize = true;
    bad.collections.push(vz);
    assert!(start(bad, "127.0.0.1:0".parse().expect("addr")).await.is_err());
    let mut dup = config();
    dup.collections.push(docs());
    assert!(start(dup, "127.0.0.1:0".parse().expect("addr")).await.is_err());
}

#[test]
fn cli_flags_override_the_file() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: EmulatorArgs,
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collections.toml");
    let file = "seed = 1\n[faults]\nerror_after = 0.2\n[[collections]]\nname = \"c\"\nprimary_key = \"id\"\n[collections.fields]\nid = \"int64\"\n";
    std::fs::write(&path, file).expect("write");
    let path_text = path.to_string_lossy().to_string();
    let wrap = Wrap::try_parse_from([
        "emulator",
        "--collections",
        path_text.as_str(),
        "--seed",
        "9",
        "--error-before",
        "0.5",
        "--latency-ms",
        "3",
        "--update-missing",
        "ignore",
    ])
    .expect("flags parse");
    assert_eq!(wrap.args.listen.to_string(), "127.0.0.1:8080");
    let cfg = wrap.args.config().expect("config");
    assert_eq!(cfg.seed, 9);
    assert_eq!(cfg.faults.error_before, 0.5);
    assert_eq!(cfg.faults.error_after, 0.2);
    assert_eq!(cfg.faults.latency_ms, 3);
    assert_eq!(cfg.update_missing, UpdateMissing::Ignore);
    let bad =
        Wrap::try_parse_from(["emulator", "--collections", path_text.as_str(), "--slow", "2"]).expect("flags parse");
    assert!(bad.args.config().is_err(), "probabilities are checked");
}
