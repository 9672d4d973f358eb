//! Test harness: generates source data with a known final state, writes it as CSV, JSONL or
//! Parquet, runs the real `vikingsync` binary against an in-process emulator over loopback HTTP,
//! and compares what the emulator holds with what the input implies.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Map, Value, json};
use vikingdb_emulator::{AccessKey, CollectionSpec, Emulator, EmulatorConfig, FaultConfig};

pub const AK: &str = "AKTESTHARNESS";
pub const SK: &str = "SKTESTHARNESSSECRET";
pub const DIM: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    Csv,
    Jsonl,
    Parquet,
}

impl Fmt {
    pub fn ext(self) -> &'static str {
        match self {
            Fmt::Csv => "csv",
            Fmt::Jsonl => "jsonl",
            Fmt::Parquet => "parquet",
        }
    }
}

/// One source row: the op it carries (for op_column files), its key, and its fields
/// (`None` = absent / empty cell). `bad` says why the row must be rejected, if it must.
#[derive(Debug, Clone)]
pub struct Row {
    pub op: &'static str,
    pub id: String,
    pub title: Option<String>,
    pub score: Option<f32>,
    pub tags: Option<Vec<String>>,
    pub vec: Option<Vec<f32>>,
    /// A raw override of the `score` cell, to inject a wrong type.
    pub score_raw: Option<String>,
    pub bad: Option<&'static str>,
}

/// A tiny deterministic generator (no dependency needed for test data).
pub struct Lcg(u64);
impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Values exactly representable in f32 and f64, so equality is exact after a round trip.
fn exact(rng: &mut Lcg) -> f32 {
    (rng.below(2000) as f32 - 1000.0) / 8.0
}

pub fn full_row(rng: &mut Lcg, op: &'static str, id: String) -> Row {
    Row {
        op,
        id,
        title: Some(format!("title {} \"quoted\", comma\nnewline 北京", rng.below(1000))),
        score: Some(exact(rng)),
        tags: Some(vec![format!("t{}", rng.below(5)), "x".into()]),
        vec: Some((0..DIM).map(|_| exact(rng)).collect()),
        score_raw: None,
        bad: None,
    }
}

pub fn partial_row(rng: &mut Lcg, id: String) -> Row {
    Row {
        op: "update",
        id,
        title: Some(format!("updated {}", rng.below(1000))),
        score: if rng.below(2) == 0 { Some(exact(rng)) } else { None },
        tags: None,
        vec: None,
        score_raw: None,
        bad: None,
    }
}

pub fn delete_row(id: String) -> Row {
    Row {
        op: "delete",
        id,
        title: None,
        score: None,
        tags: None,
        vec: None,
        score_raw: None,
        bad: None,
    }
}

/// The final state the rows imply, in order, and the (file, row) of every row that must end in
/// the dead-letter file: bad rows, and updates of a key that does not exist at that point (the
/// server refuses them: V1 1000011, and the emulator's default for V2).
pub type State = BTreeMap<String, Map<String, Value>>;

pub fn model(files: &[(&str, &[Row])]) -> (State, BTreeSet<(String, u64)>) {
    let mut state: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut dead = BTreeSet::new();
    for (file, rows) in files {
        for (i, r) in rows.iter().enumerate() {
            let here = (file.to_string(), i as u64 + 1);
            if r.bad.is_some() {
                dead.insert(here);
                continue;
            }
            match r.op {
                "upsert" => {
                    state.insert(r.id.clone(), fields_json(r));
                }
                "update" => match state.get_mut(&r.id) {
                    Some(existing) => {
                        for (k, v) in fields_json(r) {
                            existing.insert(k, v);
                        }
                    }
                    None => {
                        dead.insert(here);
                    }
                },
                "delete" => {
                    state.remove(&r.id);
                }
                other => panic!("op {other}"),
            }
        }
    }
    (state, dead)
}

pub fn fields_json(r: &Row) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.id));
    if let Some(t) = &r.title {
        m.insert("title".into(), json!(t));
    }
    if let Some(s) = r.score {
        m.insert("score".into(), json!(f64::from(s)));
    }
    if let Some(t) = &r.tags {
        m.insert("tags".into(), json!(t));
    }
    if let Some(v) = &r.vec {
        m.insert("vec".into(), json!(v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()));
    }
    m
}

fn csv_cell(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn json_list<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).expect("json")
}

/// Writes rows in `fmt`, with an `op` column when `with_op`. Rows with `bad = "unknown field"`
/// carry an extra column only CSV/JSONL can express; Parquet bad rows use nulls and wrong dims.
pub fn write(path: &Path, fmt: Fmt, rows: &[Row], with_op: bool) {
    match fmt {
        Fmt::Csv => {
            let mut out = String::new();
            if with_op {
                out.push_str("op,");
            }
            out.push_str("id,title,score,tags,vec\n");
            for r in rows {
                if with_op {
                    out.push_str(r.op);
                    out.push(',');
                }
                let score = r
                    .score_raw
                    .clone()
                    .or(r.score.map(|s| s.to_string()))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{},{},{},{},{}\n",
                    csv_cell(&r.id),
                    r.title.as_deref().map(csv_cell).unwrap_or_default(),
                    score,
                    r.tags.as_ref().map(|t| csv_cell(&json_list(t))).unwrap_or_default(),
                    r.vec.as_ref().map(|v| csv_cell(&json_list(v))).unwrap_or_default(),
                ));
            }
            std::fs::write(path, out).expect("write csv");
        }
        Fmt::Jsonl => {
            let mut out = String::new();
            for r in rows {
                let mut m = fields_json(r);
                if let Some(raw) = &r.score_raw {
                    m.insert("score".into(), json!(raw));
                }
                if r.bad == Some("unknown field") {
                    m.insert("colour".into(), json!("red"));
                }
                if with_op {
                    m.insert("op".into(), json!(r.op));
                }
                out.push_str(&Value::Object(m).to_string());
                out.push('\n');
            }
            std::fs::write(path, out).expect("write jsonl");
        }
        Fmt::Parquet => write_parquet(path, rows, with_op),
    }
}

fn write_parquet(path: &Path, rows: &[Row], with_op: bool) {
    let ids: StringArray = rows
        .iter()
        .map(|r| (!r.id.is_empty()).then_some(r.id.as_str()))
        .collect();
    let titles: StringArray = rows.iter().map(|r| r.title.as_deref()).collect();
    let scores: Float32Array = rows.iter().map(|r| r.score).collect();
    let mut tags = ListBuilder::new(StringBuilder::new());
    for r in rows {
        match &r.tags {
            Some(t) => {
                for s in t {
                    tags.values().append_value(s);
                }
                tags.append(true);
            }
            None => tags.append(false),
        }
    }
    // Vectors as list<float32> so a wrong dimension can be written; one row group per 64 rows.
    let mut vecs = ListBuilder::new(Float32Builder::new());
    for r in rows {
        match &r.vec {
            Some(v) => {
                for x in v {
                    vecs.values().append_value(*x);
                }
                vecs.append(true);
            }
            None => vecs.append(false),
        }
    }
    let _unused = FixedSizeListBuilder::new(Float32Builder::new(), DIM as i32);
    let mut fields = vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "vec",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            true,
        ),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(titles),
        Arc::new(scores),
        Arc::new(tags.finish()),
        Arc::new(vecs.finish()),
    ];
    if with_op {
        fields.insert(0, Field::new("op", DataType::Utf8, false));
        cols.insert(0, Arc::new(rows.iter().map(|r| Some(r.op)).collect::<StringArray>()));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(64))
        .build();
    let file = std::fs::File::create(path).expect("create parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// A generated scenario: setup rows (all upserts) then the rows under test.
pub struct Scenario {
    pub setup: Vec<Row>,
    pub rows: Vec<Row>,
}

impl Scenario {
    pub fn all_rows(&self) -> Vec<Row> {
        self.setup.iter().chain(self.rows.iter()).cloned().collect()
    }
}

/// Builds the rows for one op ("upsert", "update", "delete" or "mixed"), with repeated keys and
/// `bad` rows sprinkled in (the kinds `fmt` can express).
pub fn scenario(op: &str, fmt: Fmt, n: usize, seed: u64) -> Scenario {
    let mut rng = Lcg::new(seed);
    let keys = (n / 2).max(4) as u64;
    let key = |rng: &mut Lcg| format!("k{:04}", rng.below(keys));
    // Setup upserts every key once, so updates and deletes have something to act on.
    let setup: Vec<Row> = if op == "upsert" {
        Vec::new()
    } else {
        (0..keys)
            .map(|k| full_row(&mut rng, "upsert", format!("k{k:04}")))
            .collect()
    };
    let mut rows = Vec::new();
    for i in 0..n {
        let r = match op {
            "upsert" => {
                let k = key(&mut rng);
                full_row(&mut rng, "upsert", k)
            }
            "update" => {
                let k = key(&mut rng);
                partial_row(&mut rng, k)
            }
            "delete" => delete_row(key(&mut rng)),
            _ => {
                let k = key(&mut rng);
                match rng.below(10) {
                    0..=4 => full_row(&mut rng, "upsert", k),
                    5..=7 => partial_row(&mut rng, k),
                    _ => delete_row(k),
                }
            }
        };
        rows.push(r);
        if i % 37 == 11 {
            rows.push(bad_row(&mut rng, op, fmt, i));
        }
    }
    Scenario { setup, rows }
}

fn bad_row(rng: &mut Lcg, op: &str, fmt: Fmt, i: usize) -> Row {
    let op: &'static str = match op {
        "update" => "update",
        "delete" => "delete",
        _ => "upsert",
    };
    let k = format!("k{:04}", rng.below(4));
    let mut r = if op == "update" {
        partial_row(rng, k)
    } else if op == "delete" {
        delete_row(String::new())
    } else {
        full_row(rng, op, k)
    };
    r.op = op;
    if op == "delete" {
        r.bad = Some("missing key");
        return r;
    }
    let kind = (i / 37) % 4;
    match (fmt, kind) {
        (_, 0) => {
            r.id = String::new();
            r.bad = Some("missing key");
        }
        (_, 3) | (Fmt::Parquet, 1) if op == "upsert" => {
            r.vec = Some(vec![1.0; DIM + 1]);
            r.bad = Some("vector dimension");
        }
        (Fmt::Parquet, _) => {
            r.id = String::new();
            r.bad = Some("missing key");
        }
        (Fmt::Jsonl, 2) => {
            r.bad = Some("unknown field");
        }
        (_, 1) => {
            r.score_raw = Some("not-a-number".into());
            r.bad = Some("wrong type");
        }
        _ => {
            r.score_raw = Some("NaN".into());
            r.bad = Some("wrong type");
        }
    }
    r
}

pub fn spec(name: &str, quota: u32, vectorize: bool) -> CollectionSpec {
    let mut fields = BTreeMap::new();
    if vectorize {
        fields.insert("id".to_string(), "string".parse().expect("type"));
        fields.insert("text".to_string(), "text".parse().expect("type"));
        fields.insert("img".to_string(), "image".parse().expect("type"));
    } else {
        for (k, v) in [
            ("id", "string"),
            ("title", "string"),
            ("score", "float32"),
            ("tags", "list<string>"),
            ("vec", "vector"),
        ] {
            fields.insert(k.to_string(), v.parse().expect("type"));
        }
    }
    CollectionSpec {
        name: name.to_string(),
        primary_key: "id".to_string(),
        fields,
        dim: (!vectorize).then_some(DIM),
        vectorize,
        quota_rows_per_second: quota,
        resource_id: None,
        alias: None,
    }
}

pub async fn start_emulator(specs: Vec<CollectionSpec>, faults: FaultConfig, seed: u64) -> Emulator {
    start_emulator_with(emulator_config(specs, faults, seed)).await
}

/// The test keys, `specs`, `faults` and `seed`; everything else at the emulator's defaults.
pub fn emulator_config(specs: Vec<CollectionSpec>, faults: FaultConfig, seed: u64) -> EmulatorConfig {
    EmulatorConfig {
        collections: specs,
        keys: vec![AccessKey {
            access_key: AK.into(),
            secret_key: SK.into(),
            session_token: None,
        }],
        faults,
        seed,
        ..EmulatorConfig::default()
    }
}

pub async fn start_emulator_with(config: EmulatorConfig) -> Emulator {
    vikingdb_emulator::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("emulator starts")
}

pub fn faults_on() -> FaultConfig {
    FaultConfig {
        error_before: 0.05,
        error_after: 0.05,
        drop_connection: 0.03,
        latency_ms: 1,
        jitter_ms: 3,
        ..FaultConfig::default()
    }
}

/// The config text for a run. `sources` are `(file name, op or None for op_column)`.
pub fn config_text(
    endpoint: &str,
    api: &str,
    collection: &str,
    vectorize: bool,
    rps: u32,
    sources: &[(String, Option<&str>)],
) -> String {
    let fields = if vectorize {
        "id = \"string\"\ntext = \"text\"\nimg = \"image\"\n".to_string()
    } else {
        "id = \"string\"\ntitle = \"string\"\nscore = \"float32\"\ntags = \"list<string>\"\nvec = \"vector\"\n"
            .to_string()
    };
    let mut s = format!(
        "[target]\nendpoint = \"{endpoint}\"\nregion = \"cn-beijing\"\napi = \"{api}\"\nrequest_timeout = 2\n\n\
         [collection]\nname = \"{collection}\"\nprimary_key = \"id\"\nvectorize = {vectorize}\n{dim}\n\
         [collection.fields]\n{fields}\n\
         [rate]\nrows_per_second = {rps}\nconcurrency = 4\n\n\
         [retry]\nmax_attempts = 30\ninitial_backoff = 0.01\nmax_backoff = 0.2\nmax_elapsed = 60\n\n\
         [state]\ndir = \"state\"\n",
        dim = if vectorize {
            String::new()
        } else {
            format!("dim = {DIM}\n")
        },
    );
    for (file, op) in sources {
        s.push_str(&format!("\n[[sources]]\npath = \"{file}\"\n"));
        match op {
            Some(op) => s.push_str(&format!("op = \"{op}\"\n")),
            None => s.push_str("op_column = \"op\"\n"),
        }
    }
    s
}

/// The real binary with the test credentials (and no API key from the environment), in `dir`.
pub fn binary(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vikingsync"));
    cmd.args(args)
        .current_dir(dir)
        .env("VIKINGDB_AK", AK)
        .env("VIKINGDB_SK", SK)
        .env_remove("VIKINGDB_API_KEY")
        .env("NO_COLOR", "1");
    cmd
}

/// Starts the real binary with the test credentials and its output discarded.
pub fn spawn_binary(dir: &Path, args: &[&str]) -> tokio::process::Child {
    binary(dir, args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Writes `sync.toml` in `dir`.
pub fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("sync.toml"), text).expect("config");
}

/// The config of most tests: collection `items`, no quota, one source file with one op.
pub fn one_source(emu: &Emulator, api: &str, file: &str, op: &str) -> String {
    one_source_at(&emu.endpoint(), api, file, op)
}

/// The same against any endpoint (a hostile server, a proxy).
pub fn one_source_at(endpoint: &str, api: &str, file: &str, op: &str) -> String {
    upserts_at(endpoint, api, file, 0).replace("op = \"upsert\"", &format!("op = \"{op}\""))
}

/// Collection `items`, one source of upserts, a `rows_per_second` ceiling of `rps`.
pub fn upserts_at(endpoint: &str, api: &str, file: &str, rps: u32) -> String {
    config_text(
        endpoint,
        api,
        "items",
        false,
        rps,
        &[(file.to_string(), Some("upsert"))],
    )
}

/// Runs the real binary with the test credentials.
pub async fn run_binary(dir: &Path, args: &[&str]) -> Output {
    tokio::time::timeout(std::time::Duration::from_secs(120), binary(dir, args).output())
        .await
        .expect("the binary finishes within 120 s")
        .expect("the binary runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The dead-letter entries as (file name, row) pairs.
pub fn dead_letters(dir: &Path) -> Vec<(String, u64, Value)> {
    let path = dir.join("state").join("dead-letter.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("dead-letter line is JSON");
            let file = Path::new(v["file"].as_str().expect("file"))
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (file, v["row"].as_u64().expect("row"), v)
        })
        .collect()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn file_name(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

// ---- A minimal HTTP/1.1 client for the binary's endpoints, and its announced address ----

/// `GET path` with `Connection: close`: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        parse_response(&raw)
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("GET {path}: no answer within 10 s"))?
}

pub fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let chunked = head.lines().skip(1).any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: no size line")?;
        let line = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {line:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("chunked body: truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The stdout lines of a spawned process.
pub type StdoutLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Takes a spawned `--listen 127.0.0.1:0` process's stdout and reads its first line, `listening
/// on http://ADDR`: ADDR, and the lines that follow.
pub async fn listening_address(child: &mut tokio::process::Child) -> (std::net::SocketAddr, StdoutLines) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("a first line")
        .expect("read")
        .expect("a line");
    let addr = first
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("the address first: {first}"))
        .parse()
        .expect("an address");
    (addr, lines)
}
