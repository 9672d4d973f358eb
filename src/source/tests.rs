//! Tests of the source module as a whole: globs, detection, compression, JSON output, and the
//! resume property (rows after resuming at a row's `end` are exactly the rows after it) for CSV
//! and JSONL, plain and compressed. Format details are tested next to each reader.
//! Never: touches files outside its temporary directories.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Cell, Compression, Format, Position, RawRow, ReadError, ReadOptions, detect, expand, open};

pub(super) fn write(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub(super) fn read_all(path: &Path, opts: &ReadOptions, start: Option<Position>) -> Vec<Result<RawRow, ReadError>> {
    let mut r = open(path, opts, start).unwrap();
    let mut out = Vec::new();
    while let Some(item) = r.next_row() {
        out.push(item);
    }
    out
}

/// What must be equal between a fresh and a resumed read (messages may differ: line numbers
/// are only known when reading from the start).
#[derive(Debug, PartialEq)]
pub(super) enum Summary {
    Row(u64, Vec<(String, Cell)>, Position),
    RowError(u64, Position, serde_json::Value),
    FileError,
}

pub(super) fn summary(items: &[Result<RawRow, ReadError>]) -> Vec<Summary> {
    items
        .iter()
        .map(|i| match i {
            Ok(r) => Summary::Row(
                r.row,
                r.cells.iter().map(|(n, c)| (n.to_string(), c.clone())).collect(),
                r.end,
            ),
            Err(ReadError::Row { row, end, raw, .. }) => Summary::RowError(*row, *end, raw.clone()),
            Err(ReadError::File { .. }) => Summary::FileError,
        })
        .collect()
}

pub(super) fn end_of(item: &Result<RawRow, ReadError>) -> Position {
    match item {
        Ok(r) => r.end,
        Err(ReadError::Row { end, .. }) => *end,
        Err(e) => panic!("no end for {e}"),
    }
}

/// Resuming after every row (and from the start) yields exactly the remaining rows.
pub(super) fn check_resume_everywhere(path: &Path, opts: &ReadOptions) -> usize {
    let all = read_all(path, opts, None);
    assert!(all.iter().all(|i| !matches!(i, Err(ReadError::File { .. }))), "{all:?}");
    for k in 0..=all.len() {
        let start = if k == 0 { None } else { Some(end_of(&all[k - 1])) };
        let rest = read_all(path, opts, start);
        assert_eq!(
            summary(&rest),
            summary(&all[k..]),
            "{}: resume after row {k} at {start:?}",
            path.display()
        );
    }
    all.len()
}

const CSV: &[u8] = b"id,text,vec\n1,plain,\"[0.1,0.2]\"\n2,\"multi\nline\nvalue\",\n3,\"quoted \"\"x\"\"\",v\n\
4,bad,row,extra\n5,\"last, with comma\",\"[1]\"\n";

const JSONL: &[u8] = b"{\"id\":1,\"text\":\"a\\nb\"}\n\n{\"id\":2,\"v\":[0.1,0.2]}\nnot json\n  \n{\"id\":9007199254740993}\n[1]\n{\"id\":4,\"t\":null}";

#[test]
fn resume_csv_plain_gzip_zstd_at_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    assert_eq!(check_resume_everywhere(&write(&dir, "a.csv", CSV), &opts), 5);
    assert_eq!(check_resume_everywhere(&write(&dir, "a.csv.gz", &gzip(CSV)), &opts), 5);
    assert_eq!(check_resume_everywhere(&write(&dir, "a.csv.zst", &zstd(CSV)), &opts), 5);
    // With a byte order mark, and without a final newline.
    let mut bom = super::UTF8_BOM.to_vec();
    bom.extend_from_slice(&CSV[..CSV.len() - 1]);
    assert_eq!(check_resume_everywhere(&write(&dir, "b.csv", &bom), &opts), 5);
    assert_eq!(check_resume_everywhere(&write(&dir, "b.csv.gz", &gzip(&bom)), &opts), 5);
    // The row after the one with embedded newlines comes back whole.
    let all = read_all(&dir.path().join("a.csv"), &opts, None);
    let rest = read_all(&dir.path().join("a.csv.gz"), &opts, Some(end_of(&all[1])));
    assert_eq!(rest[0].as_ref().unwrap().cells[0].1, Cell::Text("3".into()));
}

#[test]
fn resume_jsonl_plain_gzip_zstd_at_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    assert_eq!(check_resume_everywhere(&write(&dir, "a.jsonl", JSONL), &opts), 6);
    assert_eq!(
        check_resume_everywhere(&write(&dir, "a.jsonl.gz", &gzip(JSONL)), &opts),
        6
    );
    assert_eq!(
        check_resume_everywhere(&write(&dir, "a.ndjson.zstd", &zstd(JSONL)), &opts),
        6
    );
}

#[test]
fn resume_csv_property_over_generated_files() {
    // Random-ish content: quotes, delimiters and newlines inside quoted cells, empty cells, CRLF.
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    let pieces = ["a", "", "\"q,\"\"x\"\"\"", "\"l1\nl2\"", "\"\r\n\"", "b c", "\u{e9}"];
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for file in 0..6 {
        let mut data = b"x,y,z\n".to_vec();
        for _ in 0..(3 + file * 2) {
            let cells: Vec<&str> = (0..3).map(|_| pieces[next() % pieces.len()]).collect();
            data.extend_from_slice(cells.join(",").as_bytes());
            data.extend_from_slice(if next() % 3 == 0 { b"\r\n" } else { b"\n" });
        }
        let plain = write(&dir, &format!("f{file}.csv"), &data);
        let n = check_resume_everywhere(&plain, &opts);
        assert_eq!(n, 3 + file * 2);
        check_resume_everywhere(&write(&dir, &format!("f{file}.csv.gz"), &gzip(&data)), &opts);
    }
}

#[test]
fn grown_files_yield_only_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    for (name, first, more) in [
        ("g.csv", &b"id,v\n1,a\n2,\"b\nb\"\n"[..], &b"3,c\n4,d\n"[..]),
        (
            "g.jsonl",
            &b"{\"id\":1}\n{\"id\":2}\n"[..],
            &b"\n{\"id\":3}\n{\"id\":4}\n"[..],
        ),
    ] {
        let p = write(&dir, name, first);
        let before = read_all(&p, &opts, None);
        assert_eq!(before.len(), 2);
        let last = end_of(&before[1]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(more)
            .unwrap();
        let after = read_all(&p, &opts, Some(last));
        let ids: Vec<(u64, Cell)> = after
            .iter()
            .map(|r| r.as_ref().unwrap())
            .map(|r| (r.row, r.cells[0].1.clone()))
            .collect();
        let expect = |v: i64| {
            if name.ends_with(".csv") {
                Cell::Text(v.to_string())
            } else {
                Cell::Json(v.into())
            }
        };
        assert_eq!(ids, vec![(3, expect(3)), (4, expect(4))], "{name}");
        // Resuming at the old end of file with nothing appended yields nothing.
        let end = end_of(after.last().unwrap());
        assert!(read_all(&p, &opts, Some(end)).is_empty());
    }
    // A gzip file that grew by another member.
    let p = write(&dir, "g.csv.gz", &gzip(b"id\n1\n2\n"));
    let before = read_all(&p, &opts, None);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(&gzip(b"3\n"))
        .unwrap();
    let after = read_all(&p, &opts, Some(end_of(&before[1])));
    assert_eq!(summary(&after), summary(&read_all(&p, &opts, None)[2..]));
    assert_eq!(after.len(), 1);
}

#[test]
fn gzip_with_concatenated_members() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = gzip(b"id,v\n1,a\n");
    data.extend(gzip(b"2,b\n"));
    data.extend(gzip(b"3,c\n"));
    let p = write(&dir, "m.csv.gz", &data);
    let rows = read_all(&p, &ReadOptions::default(), None);
    let ids: Vec<Cell> = rows.iter().map(|r| r.as_ref().unwrap().cells[0].1.clone()).collect();
    assert_eq!(
        ids,
        vec![Cell::Text("1".into()), Cell::Text("2".into()), Cell::Text("3".into())]
    );
    check_resume_everywhere(&p, &ReadOptions::default());

    let mut data = gzip(b"{\"a\":1}\n");
    data.extend(gzip(b"{\"a\":2}\n"));
    let p = write(&dir, "m.jsonl.gz", &data);
    assert_eq!(read_all(&p, &ReadOptions::default(), None).len(), 2);
}

#[test]
fn zstd_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "z.jsonl.zst", &zstd(b"{\"a\":1}\n{\"a\":2}\n"));
    let rows = read_all(&p, &ReadOptions::default(), None);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(Result::is_ok));
}

#[test]
fn corrupt_or_truncated_compressed_streams_are_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = b"id,v\n".to_vec();
    for i in 0..20000 {
        writeln!(big, "{i},{}", i * 7).unwrap();
    }
    for (name, packed) in [("t.csv.gz", gzip(&big)), ("t.csv.zst", zstd(&big))] {
        // Truncated.
        let p = write(&dir, name, &packed[..packed.len() / 2]);
        match open(&p, &ReadOptions::default(), None) {
            Err(ReadError::File { file, .. }) => assert_eq!(file, p),
            Err(e) => panic!("{e}"),
            Ok(mut r) => {
                let mut items = Vec::new();
                while let Some(item) = r.next_row() {
                    items.push(item);
                }
                assert!(
                    matches!(items.last(), Some(Err(ReadError::File { .. }))),
                    "{name}: {:?}",
                    items.last()
                );
                assert!(items.iter().filter(|i| i.is_ok()).count() < 20000);
            }
        }
        // Garbage.
        let p = write(&dir, name, b"this is not compressed at all, not even a little bit");
        match open(&p, &ReadOptions::default(), None) {
            Err(ReadError::File { file, .. }) => assert_eq!(file, p),
            Ok(mut r) => {
                let first = r.next_row();
                assert!(matches!(first, Some(Err(ReadError::File { .. }))), "{name}: {first:?}");
                assert!(r.next_row().is_none());
            }
            Err(e) => panic!("{e}"),
        }
    }
    // A resume position past the end of a compressed file.
    let p = write(&dir, "s.csv.gz", &gzip(b"id\n1\n"));
    let pos = Position::Offset {
        byte: 1000,
        rows: 10,
        line: None,
    };
    assert!(matches!(
        open(&p, &ReadOptions::default(), Some(pos)),
        Err(ReadError::File { .. })
    ));
    let p = write(&dir, "s.jsonl", b"{}\n");
    assert!(matches!(
        open(&p, &ReadOptions::default(), Some(pos)),
        Err(ReadError::File { .. })
    ));
}

#[test]
fn bytes_read_counts_the_raw_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "b.jsonl", b"{\"a\":1}\n{\"a\":2}\n");
    let mut r = open(&p, &ReadOptions::default(), None).unwrap();
    assert_eq!(r.bytes_read(), 0);
    while r.next_row().is_some() {}
    assert_eq!(r.bytes_read(), 16);
    let r = open(
        &p,
        &ReadOptions::default(),
        Some(Position::Offset {
            byte: 8,
            rows: 1,
            line: None,
        }),
    )
    .unwrap();
    assert_eq!(r.bytes_read(), 8);
}

#[test]
fn position_kind_must_fit_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "k.csv", b"a\n1\n");
    let pos = Position::RowGroup {
        row_group: 0,
        row: 0,
        rows: 0,
    };
    assert!(matches!(
        open(&p, &ReadOptions::default(), Some(pos)),
        Err(ReadError::File { .. })
    ));
}

#[test]
fn expand_plain_paths_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("in[1]");
    std::fs::create_dir_all(sub.join("deep")).unwrap();
    for name in ["b.csv", "a.csv", "c.jsonl", ".hidden.csv", "deep/d.csv"] {
        std::fs::write(sub.join(name), b"x\n").unwrap();
    }
    std::fs::create_dir(sub.join("dir.csv")).unwrap();
    // Relative glob against a base directory whose name has glob characters.
    let got = expand("*.csv", &sub).unwrap();
    assert_eq!(got, vec![sub.join("a.csv"), sub.join("b.csv")]);
    let got = expand("**/*.csv", &sub).unwrap();
    assert_eq!(got, vec![sub.join("a.csv"), sub.join("b.csv"), sub.join("deep/d.csv")]);
    let got = expand("in[[]1]/?.*", dir.path()).unwrap();
    assert_eq!(got, vec![sub.join("a.csv"), sub.join("b.csv"), sub.join("c.jsonl")]);
    // Absolute glob.
    let abs = format!("{}/*.jsonl", glob::Pattern::escape(sub.to_str().unwrap()));
    assert_eq!(expand(&abs, Path::new("/nowhere")).unwrap(), vec![sub.join("c.jsonl")]);
    // Plain paths.
    assert_eq!(expand("a.csv", &sub).unwrap(), vec![sub.join("a.csv")]);
    assert_eq!(
        expand(sub.join("b.csv").to_str().unwrap(), Path::new("/x")).unwrap(),
        vec![sub.join("b.csv")]
    );
    // Errors name the pattern or the file.
    match expand("*.parquet", &sub) {
        Err(e @ ReadError::File { .. }) => assert!(e.to_string().contains("*.parquet"), "{e}"),
        other => panic!("{other:?}"),
    }
    match expand("missing.csv", &sub) {
        Err(e @ ReadError::File { .. }) => assert!(e.to_string().contains("missing.csv"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(expand("dir.csv", &sub), Err(ReadError::File { .. })));
    assert!(matches!(expand("[", &sub), Err(ReadError::File { .. })));
}

#[test]
fn detect_formats_and_compression() {
    let d = |name: &str| detect(Path::new(name), None).map_err(|e| e.to_string());
    assert_eq!(d("a.csv"), Ok((Format::Csv, Compression::None)));
    assert_eq!(d("dir.x/A.TSV.GZ"), Ok((Format::Csv, Compression::Gzip)));
    assert_eq!(d("a.jsonl.zst"), Ok((Format::Jsonl, Compression::Zstd)));
    assert_eq!(d("a.ndjson.zstd"), Ok((Format::Jsonl, Compression::Zstd)));
    assert_eq!(d("a.json"), Ok((Format::Jsonl, Compression::None)));
    assert_eq!(d("a.parquet"), Ok((Format::Parquet, Compression::None)));
    assert_eq!(d("a.pq"), Ok((Format::Parquet, Compression::None)));
    let e = d("a.parquet.gz").unwrap_err();
    assert!(e.contains("a.parquet.gz") && e.contains("compressed Parquet"), "{e}");
    let e = d("a.txt").unwrap_err();
    assert!(
        e.contains("a.txt") && e.contains(".csv") && e.contains(".parquet"),
        "{e}"
    );
    assert!(d("a.gz").is_err());
    assert!(d("noext").is_err());
    // An override replaces the format; the compression suffix still counts.
    let o = |name: &str, f| detect(Path::new(name), Some(f)).map_err(|e| e.to_string());
    assert_eq!(o("data.txt", Format::Csv), Ok((Format::Csv, Compression::None)));
    assert_eq!(o("data.log.gz", Format::Jsonl), Ok((Format::Jsonl, Compression::Gzip)));
    assert!(o("data.gz", Format::Parquet).is_err());
}

#[test]
fn f32_json_is_shortest() {
    assert_eq!(super::f32_to_f64_shortest(0.1), 0.1);
    assert_eq!(serde_json::Value::from(0.1f32).to_string(), "0.10000000149011612");
    for x in [
        0.1f32,
        -1.5,
        1e-7,
        3.4028235e38,
        f32::MIN_POSITIVE,
        1e-45,
        0.0,
        -0.0,
        123456.79,
    ] {
        let y = super::f32_to_f64_shortest(x);
        assert_eq!(y as f32, x, "round trip of {x}");
        assert_eq!(y.to_string(), x.to_string());
    }
    let row = RawRow {
        row: 1,
        cells: vec![
            ("v".into(), Cell::F32List(vec![0.1, 0.2, 1.0])),
            ("f".into(), Cell::Float32(0.3)),
            ("d".into(), Cell::Float(0.1)),
            ("n".into(), Cell::Float(f64::NAN)),
            ("s".into(), Cell::Sparse(vec![("a".into(), 0.5)])),
            ("i".into(), Cell::IntList(vec![1, -2])),
            ("t".into(), Cell::Timestamp("2024-01-01T00:00:00Z".into())),
            ("z".into(), Cell::Null),
        ],
        end: Position::Offset {
            byte: 0,
            rows: 1,
            line: None,
        },
    };
    assert_eq!(
        row.to_json().to_string(),
        r#"{"v":[0.1,0.2,1.0],"f":0.3,"d":0.1,"n":"NaN","s":{"a":0.5},"i":[1,-2],"t":"2024-01-01T00:00:00Z","z":null}"#
    );
}

/// Streams a generated ~50 MB CSV and checks that resident memory stays flat. Slow in debug
/// builds: run with `cargo test --lib source -- --ignored`.
#[test]
#[ignore]
fn streaming_a_large_csv_keeps_memory_flat() {
    fn rss_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        writeln!(f, "id,text,vec").unwrap();
        let mut i = 0u64;
        while i < 600_000 {
            writeln!(
                f,
                "{i},\"some text for row {i}, with a comma\",\"[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]\""
            )
            .unwrap();
            i += 1;
        }
    }
    let size = std::fs::metadata(&p).unwrap().len();
    assert!(size > 50_000_000, "{size}");
    let mut r = open(&p, &ReadOptions::default(), None).unwrap();
    let mut n = 0u64;
    let mut after_warmup = 0;
    while let Some(row) = r.next_row() {
        row.unwrap();
        n += 1;
        if n == 10_000 {
            after_warmup = rss_kb();
        }
    }
    let at_end = rss_kb();
    assert_eq!(n, 600_000);
    assert_eq!(r.bytes_read(), size);
    // Allow for noise from other tests in the process; far below the file size.
    eprintln!("{size} bytes, RSS {after_warmup} kB after 10k rows, {at_end} kB at the end");
    assert!(
        at_end < after_warmup + 20_000,
        "RSS grew from {after_warmup} kB to {at_end} kB"
    );
}

// ---- integrity: compressed streams verified before use, resumes on a line start ----

#[test]
fn corrupt_gzip_is_refused_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"id,v\n".to_vec();
    for i in 0..5000 {
        writeln!(data, "{i},value-{i:06}").unwrap();
    }
    // Stored blocks: a flipped byte gives a wrong value that only the CRC-32 catches.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    e.write_all(&data).unwrap();
    let mut gz = gzip(b"id,v\n");
    let second_member_at = gz.len();
    gz.extend(e.finish().unwrap());
    let at = gz.windows(12).position(|w| w == b"value-004000").unwrap();
    gz[at + 7] = b'9';
    let p = write(&dir, "c.csv.gz", &gz);
    match open(&p, &ReadOptions::default(), None) {
        Err(ReadError::File { file, message }) => {
            assert_eq!(file, p);
            assert!(
                message.contains(&format!(
                    "gzip member 2 (starting at compressed byte {second_member_at})"
                )),
                "{message}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a corrupt gzip file was opened"),
    }
    // A resumed read verifies too.
    assert!(matches!(
        open(
            &p,
            &ReadOptions::default(),
            Some(Position::Offset {
                byte: 9,
                rows: 1,
                line: None
            })
        ),
        Err(ReadError::File { .. })
    ));
    // Truncated, and zstd with a frame checksum.
    let p = write(&dir, "t.csv.gz", &gzip(&data)[..400]);
    assert!(matches!(
        open(&p, &ReadOptions::default(), None),
        Err(ReadError::File { .. })
    ));
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&data).unwrap();
    let zst = enc.finish().unwrap();
    let p = write(&dir, "t.csv.zst", &zst[..zst.len() - 3]);
    assert!(matches!(
        open(&p, &ReadOptions::default(), None),
        Err(ReadError::File { .. })
    ));
    let mut bad = zst.clone();
    let n = bad.len();
    bad[n - 2] ^= 0xFF; // the content checksum itself
    let p = write(&dir, "c.csv.zst", &bad);
    match open(&p, &ReadOptions::default(), None) {
        Err(ReadError::File { message, .. }) => assert!(message.contains("zstd"), "{message}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a zstd file with a bad checksum was opened"),
    }
}

#[test]
fn only_verified_bytes_of_a_growing_gzip_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "g.jsonl.gz", &gzip(b"{\"a\":1}\n{\"a\":2}\n"));
    let mut r = open(&p, &ReadOptions::default(), None).unwrap();
    // Appended after the verification (a writer adding a member, here half written).
    let more = gzip(b"{\"a\":3}\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(&more[..more.len() / 2])
        .unwrap();
    let mut n = 0;
    while let Some(item) = r.next_row() {
        item.unwrap();
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn resume_must_start_on_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    for (name, data, edited) in [
        (
            "e.csv",
            &b"id,v\n1,aaaa\n2,bb\n3,c\n"[..],
            &b"id,v\n1,aa\n2,bbbb\n3,c\n"[..],
        ),
        (
            "e.jsonl",
            &b"{\"v\":\"aaaa\"}\n{\"v\":\"b\"}\n{\"v\":1}\n"[..],
            &b"{\"v\":\"a\"}\n{\"v\":\"bbbb\"}\n{\"v\":1}\n"[..],
        ),
    ] {
        assert_eq!(data.len(), edited.len());
        for (file, bytes) in [(name.to_string(), data.to_vec()), (format!("{name}.gz"), gzip(data))] {
            let p = write(&dir, &file, &bytes);
            let all = read_all(&p, &opts, None);
            let pos = end_of(&all[0]);
            // Unchanged: fine.
            assert_eq!(read_all(&p, &opts, Some(pos)).len(), all.len() - 1, "{file}");
            // Edited in place, same size: the position falls inside a line.
            let edited_bytes = if file.ends_with(".gz") {
                gzip(edited)
            } else {
                edited.to_vec()
            };
            std::fs::write(&p, &edited_bytes).unwrap();
            match open(&p, &opts, Some(pos)) {
                Err(ReadError::File { message, .. }) => {
                    assert!(message.contains("changed in place"), "{file}: {message}")
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{file}: resumed in the middle of a line"),
            }
        }
    }
    // A last line without a line end, resumed at its end after an append: allowed.
    let p = write(&dir, "n.jsonl", b"{\"a\":1}");
    let end = end_of(&read_all(&p, &opts, None)[0]);
    assert!(read_all(&p, &opts, Some(end)).is_empty());
    std::fs::write(&p, b"{\"a\":1}\n{\"a\":2}\n").unwrap();
    assert_eq!(read_all(&p, &opts, Some(end)).len(), 1);
}

#[test]
fn a_position_keeps_its_line_and_reads_one_written_without_it() {
    let with = Position::Offset {
        byte: 30,
        rows: 2,
        line: Some(4),
    };
    let text = serde_json::to_string(&with).unwrap();
    assert_eq!(text, r#"{"kind":"offset","byte":30,"rows":2,"line":4}"#);
    assert_eq!(serde_json::from_str::<Position>(&text).unwrap(), with);
    // A checkpoint written before the line was kept.
    let old: Position = serde_json::from_str(r#"{"kind":"offset","byte":30,"rows":2}"#).unwrap();
    assert_eq!(
        old,
        Position::Offset {
            byte: 30,
            rows: 2,
            line: None
        }
    );
    assert_eq!(
        serde_json::to_string(&old).unwrap(),
        r#"{"kind":"offset","byte":30,"rows":2}"#
    );
}

/// Each row's row number, end position, and message (for a row error).
fn outline(rows: &[Result<RawRow, ReadError>]) -> Vec<(u64, Position, Option<String>)> {
    rows.iter()
        .map(|r| match r {
            Ok(row) => (row.row, row.end, None),
            Err(ReadError::Row { row, end, message, .. }) => (*row, *end, Some(message.clone())),
            Err(e) => panic!("{e}"),
        })
        .collect()
}

#[test]
fn a_resumed_read_names_the_same_lines_as_a_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReadOptions::default();
    // A BOM, CRLF and LF, blank lines, a quoted line break, rows with errors (a field too many,
    // invalid UTF-8), and a last line without a line end.
    let csv = &b"\xEF\xBB\xBFid,t\r\n1,a\r\n\r\n2,\"x\ny\"\r\n3,b,extra\n\n4,\"q\"\n5,c\r\n6,\"\xFF\"\n7,d"[..];
    let jsonl = &b"{\"a\":1}\r\n\n  \n{\"a\":\n[1]\r\n{\"a\":2}\n\n{\"a\":\"\xFF\"}\n{\"a\":3}"[..];
    for (name, data) in [("l.csv", csv), ("l.jsonl", jsonl)] {
        for (file, bytes) in [(name.to_string(), data.to_vec()), (format!("{name}.gz"), gzip(data))] {
            let p = write(&dir, &file, &bytes);
            let all = outline(&read_all(&p, &opts, None));
            let messages: Vec<&String> = all.iter().filter_map(|r| r.2.as_ref()).collect();
            assert!(messages.len() >= 2, "{file}: {all:?}");
            assert!(messages.iter().all(|m| m.starts_with("line ")), "{file}: {messages:?}");
            for (i, (_, end, _)) in all.iter().enumerate() {
                // The line of a position is 1 + the line feeds before it in the stream.
                let Position::Offset { byte, line, .. } = *end else {
                    panic!("{end:?}")
                };
                let before = &data[..usize::try_from(byte).unwrap()];
                let feeds = before.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(line, Some(1 + feeds), "{file}: row {}", i + 1);
                // Resumed there, every later row reads as it did, messages and lines included.
                let rest = outline(&read_all(&p, &opts, Some(*end)));
                assert_eq!(rest, all[i + 1..], "{file}: resumed after row {}", i + 1);
            }
        }
    }
}

/// Integrity pre-pass cost: time to read a ~90 MB (decompressed) .csv.gz with and without the
/// pre-pass. Run: `cargo test --release --lib source::tests::bench_gzip_prepass -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_gzip_prepass() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"id,title,score,tags,vec\n".to_vec();
    let mut x: u64 = 1;
    let mut i = 0u64;
    while data.len() < 90 * 1024 * 1024 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        write!(
            data,
            "id{i},title {i} {:x},{}.5,\"[\"\"a\"\",\"\"b\"\"]\",\"[",
            x >> 20,
            i % 1000
        )
        .unwrap();
        for d in 0..32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let sep = if d == 0 { "" } else { "," };
            write!(data, "{sep}{:.4}", (x >> 40) as f64 / 16777216.0).unwrap();
        }
        data.extend_from_slice(b"]\"\n");
        i += 1;
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&data).unwrap();
    let p = write(&dir, "bench.csv.gz", &e.finish().unwrap());
    let gz_len = std::fs::metadata(&p).unwrap().len();
    for round in 0..3 {
        let t = Instant::now();
        super::verify_compressed(&p, None, Compression::Gzip).unwrap();
        let pre = t.elapsed();
        let t = Instant::now();
        let mut r = open(&p, &ReadOptions::default(), None).unwrap();
        let mut n = 0u64;
        while let Some(item) = r.next_row() {
            item.unwrap();
            n += 1;
        }
        let total = t.elapsed();
        let read = total.saturating_sub(pre);
        eprintln!(
            "round {round}: {n} rows, {:.1} MB csv, {:.1} MB gz: pre-pass {:.3} s, read without pre-pass ~{:.3} s, \
             read with pre-pass {:.3} s (+{:.0}%)",
            data.len() as f64 / 1e6,
            gz_len as f64 / 1e6,
            pre.as_secs_f64(),
            read.as_secs_f64(),
            total.as_secs_f64(),
            100.0 * pre.as_secs_f64() / read.as_secs_f64()
        );
    }
}
