//! Adversarial input corpus: the real binary against the emulator on damaged, odd or hostile
//! files. For each: the exit code, a message naming the file (and the line or row where one
//! applies), no panic, and no row from a corrupt region in the emulator.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Output;

use crate::harness::*;
use serde_json::{Map, Value};
use vikingdb_emulator::FaultConfig;

type Records = BTreeMap<String, Map<String, Value>>;

/// Writes `files` into a fresh directory, runs `vikingsync run` with one upsert source per file
/// (`extra` appended to each source's table), and returns the output, what the emulator holds
/// and the dead letters.
async fn run_files(files: &[(&str, &[u8])], extra: &str) -> (Output, Records, Vec<(String, u64, Value)>) {
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 0, false)], FaultConfig::default(), 7).await;
    let mut sources = Vec::new();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).expect("write input");
        sources.push((name.to_string(), Some("upsert")));
    }
    let mut cfg = config_text(&emu.endpoint(), "v2", "items", false, 0, &sources);
    if !extra.is_empty() {
        cfg = cfg.replace("op = \"upsert\"\n", &format!("op = \"upsert\"\n{extra}\n"));
    }
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let records = emu.records("items").expect("collection");
    let dead = dead_letters(dir.path());
    emu.shutdown().await;
    (out, records, dead)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No panic, whatever the input.
fn no_panic(out: &Output) {
    let shown = text(out);
    assert_ne!(out.status.code(), Some(101), "{shown}");
    assert!(out.status.code().is_some(), "killed by a signal: {shown}");
    assert!(!shown.contains("panicked"), "{shown}");
}

/// The run stopped (exit 1) with a message on stderr naming `file` and containing each of `words`.
fn stopped_naming(out: &Output, file: &str, words: &[&str]) {
    no_panic(out);
    let shown = text(out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let err = stderr(out);
    assert!(err.contains(file), "stderr does not name {file}: {shown}");
    for w in words {
        assert!(err.contains(w), "stderr does not say {w:?}: {shown}");
    }
}

fn title(records: &Records, key: &str) -> Option<String> {
    records
        .get(key)
        .map(|r| r["title"].as_str().unwrap_or_default().to_string())
}

/// `n` JSONL rows `k0..`, with titles that do not compress well, so that compressed files keep
/// them as literals.
fn jsonl_rows(n: usize) -> Vec<u8> {
    let mut rng = Lcg::new(77);
    let mut out = Vec::new();
    for i in 0..n {
        let t: String = (0..24).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
        writeln!(
            out,
            "{{\"id\":\"k{i}\",\"title\":\"{t}\",\"score\":{i},\"vec\":[1,2,3,{i}]}}"
        )
        .expect("write");
    }
    out
}

fn gzip(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
    enc.write_all(data).expect("gz");
    enc.finish().expect("gz")
}

fn zstd_with_checksum(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    enc.include_checksum(true).expect("checksum flag");
    enc.write_all(data).expect("zstd");
    enc.finish().expect("zstd")
}

/// Changes one byte of the first occurrence of `needle` in `bytes` (which must hold it).
fn damage_at(bytes: &mut [u8], needle: &[u8]) {
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the compressed file keeps the text as a literal");
    bytes[at + 1] ^= 0x20;
}

/// The title of row `i` of [`jsonl_rows`], as stored.
fn jsonl_title(data: &[u8], i: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(data);
    let line = text.lines().nth(i).expect("row");
    let v: Value = serde_json::from_str(line).expect("json");
    v["title"].as_str().expect("title").as_bytes().to_vec()
}

// ---- CSV / TSV quoting ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_unterminated_quote_stops_naming_the_line_and_swallows_nothing() {
    let data = b"id;score;vec;title\nk1;1;[1,2,3,4];t1\nk2;2;[1,2,3,4];\"oops\nk3;3;[1,2,3,4];t3\nk4;4;[1,2,3,4];t4\n";
    let (out, records, dead) = run_files(&[("q.csv", data)], "delimiter = \";\"").await;
    stopped_naming(&out, "q.csv", &["line 3", "quote"]);
    for k in ["k2", "k3", "k4"] {
        assert!(!records.contains_key(k), "{k} applied: {records:?}\n{}", text(&out));
    }
    if let Some(t) = title(&records, "k1") {
        assert_eq!(t, "t1");
    }
    assert!(dead.is_empty(), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_before_a_broken_line_are_applied_and_checkpointed() {
    // 300 good rows, an unterminated quote on line 302, 10 rows after it. The server's quota
    // (400 rows/s) keeps most of the 300 waiting when the reader reaches the broken line: they
    // are still sent, acknowledged and checkpointed before the run stops with the error (they
    // used to be abandoned, to be sent again by the next run).
    let dir = tempdir();
    let emu = start_emulator(vec![spec("items", 400, false)], FaultConfig::default(), 9).await;
    let good =
        |range: std::ops::Range<usize>| -> String { range.map(|i| format!("k{i};{i};[1,2,3,{i}];t{i}\n")).collect() };
    let broken = format!(
        "id;score;vec;title\n{}k300;300;[1,2,3,4];\"oops\n{}",
        good(0..300),
        good(301..311)
    );
    std::fs::write(dir.path().join("rows.csv"), &broken).expect("write");
    let cfg = config_text(
        &emu.endpoint(),
        "v2",
        "items",
        false,
        0,
        &[("rows.csv".to_string(), Some("upsert"))],
    )
    .replace("op = \"upsert\"\n", "op = \"upsert\"\ndelimiter = \";\"\n");
    write_config(dir.path(), &cfg);
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        stderr(&out).contains("rows.csv: row 301: a quoted field opened on line 302"),
        "{shown}"
    );
    let records = emu.records("items").expect("collection");
    for i in 0..300 {
        assert_eq!(
            title(&records, &format!("k{i}")).as_deref(),
            Some(format!("t{i}").as_str()),
            "k{i}\n{shown}"
        );
    }
    assert_eq!(records.len(), 300, "nothing from the broken line on\n{shown}");
    let first = emu.stats().rows_applied_upsert;
    assert_eq!(first, 300, "each row once, no faults\n{shown}");

    // The checkpoint holds all 300: the rerun sends none of them again and stops at the same line.
    let out = run_binary(dir.path(), &["run", "--config", "sync.toml"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    // Resumed from a byte offset, the message is the first run's: the position kept its line.
    assert!(
        stderr(&out).contains("rows.csv: row 301: a quoted field opened on line 302 (byte"),
        "{shown}"
    );
    assert!(shown.contains("resumed        300 rows"), "{shown}");
    assert_eq!(emu.stats().rows_applied_upsert, first, "nothing sent again\n{shown}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsv_quote_is_an_ordinary_character() {
    let data = b"id\tscore\tvec\ttitle\nk1\t1\t[1,2,3,4]\tt1\nk2\t2\t[1,2,3,4]\t\"oops\nk3\t3\t[1,2,3,4]\tt3\nk4\t4\t[1,2,3,4]\tt4\n";
    let (out, records, dead) = run_files(&[("q.tsv", data)], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(records.len(), 4, "{records:?}");
    assert_eq!(title(&records, "k2").as_deref(), Some("\"oops"));
    assert_eq!(title(&records, "k3").as_deref(), Some("t3"));
    assert_eq!(title(&records, "k4").as_deref(), Some("t4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quoted_field_over_the_bound_stops_naming_the_line() {
    // A stray quote closed only 2 MB later by another stray quote.
    let mut data = b"id;score;vec;title\nk1;1;[1,2,3,4];t1\nk2;2;[1,2,3,4];\"oops\n".to_vec();
    for i in 3..60_000 {
        writeln!(data, "k{i};{i};[1,2,3,4];t{i}").expect("write");
    }
    data.extend_from_slice(b"kz;1;[1,2,3,4];\"closed\"\n");
    let (out, records, _) = run_files(&[("long.csv", &data)], "delimiter = \";\"").await;
    stopped_naming(&out, "long.csv", &["line 3", "quote"]);
    assert!(!records.contains_key("k2"));
    assert!(
        records.keys().all(|k| k == "k1"),
        "{:?}",
        records.keys().take(5).collect::<Vec<_>>()
    );
}

// ---- compressed streams ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_gzip_member_uses_no_row() {
    let data = jsonl_rows(4000);
    // Stored blocks: the damaged byte changes a title and only the member's CRC-32 notices.
    let mut gz = gzip(&data, flate2::Compression::none());
    damage_at(&mut gz, &jsonl_title(&data, 2000));
    let (out, records, dead) = run_files(&[("c.jsonl.gz", &gz)], "").await;
    stopped_naming(&out, "c.jsonl.gz", &["gzip"]);
    assert!(records.is_empty(), "{} rows applied", records.len());
    assert!(dead.is_empty(), "{} dead letters", dead.len());

    // Compressed blocks, bytes flipped in the middle: an error, never a garbage row.
    let mut gz = gzip(&data, flate2::Compression::default());
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 8] {
        *b ^= 0x5A;
    }
    let (out, records, dead) = run_files(&[("d.jsonl.gz", &gz)], "").await;
    stopped_naming(&out, "d.jsonl.gz", &["gzip"]);
    assert!(records.is_empty(), "{} rows applied", records.len());
    assert!(dead.is_empty(), "{} dead letters", dead.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_gzip_uses_no_row() {
    let data = jsonl_rows(4000);
    let gz = gzip(&data, flate2::Compression::default());
    let cut = &gz[..gz.len() * 3 / 5];
    let (out, records, dead) = run_files(&[("t.jsonl.gz", cut)], "").await;
    stopped_naming(&out, "t.jsonl.gz", &["gzip"]);
    assert!(records.is_empty(), "{} rows applied", records.len());
    assert!(dead.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_zstd_with_checksum_uses_no_row() {
    let data = jsonl_rows(4000);
    let zst = zstd_with_checksum(&data);
    // Bytes flipped in the middle of the frame, and the frame's checksum itself damaged (then
    // only the checksum, at the very end, tells).
    let mut middle = zst.clone();
    let mid = middle.len() / 2;
    for b in &mut middle[mid..mid + 8] {
        *b ^= 0x5A;
    }
    let mut checksum = zst.clone();
    let n = checksum.len();
    checksum[n - 2] ^= 0xFF;
    for (name, bytes) in [("c.jsonl.zst", middle), ("s.jsonl.zst", checksum)] {
        let (out, records, dead) = run_files(&[(name, &bytes)], "").await;
        stopped_naming(&out, name, &["zstd"]);
        assert!(records.is_empty(), "{name}: {} rows applied", records.len());
        assert!(dead.is_empty(), "{name}: {} dead letters", dead.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_zstd_uses_no_row() {
    let data = jsonl_rows(4000);
    let zst = zstd_with_checksum(&data);
    let cut = &zst[..zst.len() * 3 / 5];
    let (out, records, dead) = run_files(&[("t.jsonl.zst", cut)], "").await;
    stopped_naming(&out, "t.jsonl.zst", &["zstd"]);
    assert!(records.is_empty(), "{} rows applied", records.len());
    assert!(dead.is_empty());
}

// ---- Parquet ----

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/integrity")
        .join(name);
    std::fs::read(&path).expect("fixture (made by tests/fixtures/integrity/make_parquet_crc.py)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_with_page_checksums_reads() {
    let (out, records, dead) = run_files(&[("good.parquet", &fixture("crc-good.parquet"))], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(records.len(), 200);
    assert!(dead.is_empty());
    assert_eq!(title(&records, "c00190").as_deref(), Some("title-00190"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_page_checksum_failure_stops_and_uses_no_row_of_its_group() {
    let (out, records, dead) = run_files(&[("bad.parquet", &fixture("crc-corrupt.parquet"))], "").await;
    stopped_naming(&out, "bad.parquet", &["row group 1", "\"title\"", "checksum"]);
    // Row group 1 holds c00100..c00199: none of them, and never the damaged title.
    for i in 100..200 {
        assert!(!records.contains_key(&format!("c{i:05}")), "c{i:05} applied");
    }
    for (k, r) in &records {
        assert_eq!(r["title"], Value::String(format!("title-{}", &k[1..])), "{k}");
    }
    assert!(dead.is_empty(), "{dead:?}");
}

/// A one-row-group Parquet file of `n` rows (`d00000`.., title `title-00000`..), plain encoding,
/// no compression, no dictionary and no page checksums (the Rust writer writes none), in small
/// data pages: many pages per column chunk.
fn plain_parquet_one_group(n: usize) -> Vec<u8> {
    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let ids: StringArray = (0..n).map(|i| Some(format!("d{i:05}"))).collect();
    let titles: StringArray = (0..n).map(|i| Some(format!("title-{i:05}"))).collect();
    let scores: Float32Array = (0..n).map(|i| Some(i as f32 / 8.0)).collect();
    let mut vecs = ListBuilder::new(Float32Builder::new());
    for i in 0..n {
        vecs.values().append_slice(&[i as f32, 0.5, -0.5, 1.0]);
        vecs.append(true);
    }
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("vec", DataType::List(item), false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(titles),
        Arc::new(scores),
        Arc::new(vecs.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(n))
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_data_page_row_count_limit(50)
        .set_write_batch_size(10)
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_page_without_checksum_that_fails_to_decode_hands_on_no_row_of_its_batch() {
    let n = 1000;
    let good = plain_parquet_one_group(n);
    // The control: the intact file reads whole, so the damage below is all that differs.
    let (out, records, dead) = run_files(&[("whole.parquet", &good)], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(records.len(), n);
    assert!(dead.is_empty(), "{dead:?}");

    // Row 600's title is stored PLAIN as a 4-byte little-endian length and its bytes. A length of
    // ~4 GB cannot be decoded, and with no page checksum nothing notices before the decode.
    let needle = b"\x0b\x00\x00\x00title-00600";
    let at = good
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("row 600's title, stored plain");
    assert_eq!(good.windows(needle.len()).filter(|w| *w == needle).count(), 1);
    let mut bad = good.clone();
    bad[at + 3] = 0xff;
    let (out, records, dead) = run_files(&[("bad.parquet", &bad)], "").await;
    stopped_naming(&out, "bad.parquet", &["row group 0", "corrupt"]);
    // The reader decodes record batches of 256 rows: rows 512..767 share a batch with row 600.
    // Rows of earlier batches of the group may have gone out (docs/input-integrity.md); no row of
    // the damaged batch, nor any after it, may.
    for key in records.keys() {
        let i: usize = key[1..].parse().expect("key");
        assert!(
            i < 512,
            "{key} applied: it shares a batch with the damaged page, or follows it"
        );
    }
    for (k, r) in &records {
        assert_eq!(r["title"], Value::String(format!("title-{}", &k[1..])), "{k}");
    }
    assert!(dead.is_empty(), "{dead:?}");
}

fn small_parquet(dir: &Path) -> Vec<u8> {
    let mut rng = Lcg::new(3);
    let rows: Vec<Row> = (0..300)
        .map(|i| full_row(&mut rng, "upsert", format!("p{i}")))
        .collect();
    let path = dir.join("p.parquet");
    write(&path, Fmt::Parquet, &rows, false);
    std::fs::read(&path).expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_parquet_and_garbage_footer_use_no_row() {
    let dir = tempdir();
    let bytes = small_parquet(dir.path());
    let cut = &bytes[..bytes.len() / 2];
    let (out, records, _) = run_files(&[("cut.parquet", cut)], "").await;
    stopped_naming(&out, "cut.parquet", &[]);
    assert!(records.is_empty());

    // The footer's metadata overwritten (the trailing length and magic kept).
    let mut garbage = bytes.clone();
    let n = garbage.len();
    for (i, b) in garbage[n - 8 - 64..n - 8].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let (out, records, _) = run_files(&[("footer.parquet", &garbage)], "").await;
    stopped_naming(&out, "footer.parquet", &[]);
    assert!(records.is_empty());
}

// ---- text problems that are row errors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_rows_are_dead_lettered_by_row() {
    let csv = b"id;score;vec;title\nk1;1;[1,2,3,4];t1\nk2;2;[1,2,3,4];bad\xFF\xFE\nk3;3;[1,2,3,4];t3\n";
    let jsonl = b"{\"id\":\"j1\",\"score\":1,\"vec\":[1,2,3,4]}\n{\"id\":\"j2\",\"title\":\"bad\xFF\",\"score\":2,\"vec\":[1,2,3,4]}\n{\"id\":\"j3\",\"score\":3,\"vec\":[1,2,3,4]}\n";
    let (out, records, dead) = run_files(&[("u.csv", csv)], "delimiter = \";\"").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(records.keys().collect::<Vec<_>>(), ["k1", "k3"]);
    assert_eq!(
        dead.iter().map(|(f, r, _)| (f.as_str(), *r)).collect::<Vec<_>>(),
        [("u.csv", 2)]
    );
    let (out, records, dead) = run_files(&[("u.jsonl", jsonl)], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(records.keys().collect::<Vec<_>>(), ["j1", "j3"]);
    assert_eq!(
        dead.iter().map(|(f, r, _)| (f.as_str(), *r)).collect::<Vec<_>>(),
        [("u.jsonl", 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_byte_and_json_array_line() {
    let csv = b"id;score;vec;title\nk1;1;[1,2,3,4];t1\nk2;2;[1,2,3,4];a\x00b\nk3;3;[1,2,3,4];t3\n";
    let (out, records, dead) = run_files(&[("nul.csv", csv)], "delimiter = \";\"").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(title(&records, "k1").as_deref(), Some("t1"));
    assert_eq!(title(&records, "k3").as_deref(), Some("t3"));
    // The NUL is handed on as it was read: applied exactly, or dead-lettered; never altered.
    match title(&records, "k2") {
        Some(t) => assert_eq!(t, "a\u{0}b"),
        None => assert_eq!(dead.len(), 1, "{dead:?}"),
    }

    let jsonl =
        b"{\"id\":\"j1\",\"score\":1,\"vec\":[1,2,3,4]}\n[\"j2\",2]\n{\"id\":\"j3\",\"score\":3,\"vec\":[1,2,3,4]}\n";
    let (out, records, dead) = run_files(&[("arr.jsonl", jsonl)], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(records.keys().collect::<Vec<_>>(), ["j1", "j3"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].0.as_str(), dead[0].1), ("arr.jsonl", 2));
    assert!(dead[0].2.to_string().contains("array"), "{:?}", dead[0].2);
}

// ---- nothing to read ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_header_only_and_bom_only_files_read_no_rows() {
    let files: Vec<(&str, &[u8])> = vec![
        ("empty.csv", b""),
        ("empty.jsonl", b""),
        ("header.csv", b"id,score,vec,title\n"),
        ("header-nonl.csv", b"id,score,vec,title"),
        ("bom.csv", b"\xEF\xBB\xBF"),
        ("bom.jsonl", b"\xEF\xBB\xBF"),
        ("blank.jsonl", b"\n\n  \n"),
    ];
    let (out, records, dead) = run_files(&files, "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(records.is_empty());
    assert!(dead.is_empty());

    let empty_gz = gzip(b"", flate2::Compression::default());
    let (out, records, _) = run_files(&[("empty.csv.gz", &empty_gz), ("zero.jsonl.gz", b"")], "").await;
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(records.is_empty());
}

// ---- size ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_single_lines_do_not_panic() {
    let big = "x".repeat(5 * 1024 * 1024);
    let jsonl = format!(
        "{{\"id\":\"h1\",\"title\":\"{big}\",\"score\":1,\"vec\":[1,2,3,4]}}\n{{\"id\":\"h2\",\"score\":2,\"vec\":[1,2,3,4]}}\n"
    );
    let csv = format!("id;score;vec;title\nc1;1;[1,2,3,4];{big}\nc2;2;[1,2,3,4];t2\n");
    let (out, records, dead) = run_files(
        &[("big.jsonl", jsonl.as_bytes()), ("big.csv", csv.as_bytes())],
        "delimiter = \";\"",
    )
    .await;
    no_panic(&out);
    let shown = text(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{}",
        &shown[..shown.len().min(4000)]
    );
    // The short rows get through; the long ones are applied whole or dead-lettered, never cut.
    assert!(records.contains_key("h2") && records.contains_key("c2"));
    for k in ["h1", "c1"] {
        match title(&records, k) {
            Some(t) => assert_eq!(t.len(), big.len(), "{k}"),
            None => assert!(dead.iter().any(|(_, row, _)| *row == 1), "{k} vanished"),
        }
    }
}
