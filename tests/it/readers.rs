//! Resume consistency of the readers on the crash test's file shapes: resuming at the position
//! after any row must yield exactly the rows after it, with the same row numbers.

use std::io::Write;

use crate::harness::*;
use vikingsync::source::{self, ReadOptions};

fn all_rows(path: &std::path::Path, start: Option<source::Position>) -> Vec<(u64, source::Position, String)> {
    rows_with(path, &ReadOptions::default(), start)
}

/// Every row (or row error) read from `path` with `opts`, from `start`, with its end position.
pub(crate) fn rows_with(
    path: &std::path::Path,
    opts: &ReadOptions,
    start: Option<source::Position>,
) -> Vec<(u64, source::Position, String)> {
    let mut r = source::open(path, opts, start).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(next) = r.next_row() {
        match next {
            Ok(raw) => out.push((raw.row, raw.end, raw.to_json().to_string())),
            // The message may name the line only when read from the start; compare the raw row.
            Err(source::ReadError::Row { row, end, raw, .. }) => out.push((row, end, format!("error: {raw}"))),
            Err(e) => panic!("{e}"),
        }
    }
    out
}

fn check_every_resume(path: &std::path::Path, step: usize) {
    let full = all_rows(path, None);
    assert!(!full.is_empty());
    for k in (0..full.len()).step_by(step) {
        let resumed = all_rows(path, Some(full[k].1));
        assert_eq!(
            resumed.len(),
            full.len() - k - 1,
            "{}: resume after row {}",
            path.display(),
            full[k].0
        );
        if let Some(first) = resumed.first() {
            assert_eq!(
                first,
                &full[k + 1],
                "{}: resume after row {}",
                path.display(),
                full[k].0
            );
        }
    }
}

#[test]
fn resuming_after_any_row_yields_exactly_the_rows_after_it() {
    let dir = tempdir();
    let mut rng = Lcg::new(4242);
    let mut base: Vec<Row> = (0..900)
        .map(|i| full_row(&mut rng, "upsert", format!("u{i:05}")))
        .collect();
    for (i, r) in base.iter_mut().enumerate() {
        if i % 30 == 15 {
            r.score_raw = Some("not-a-number".into());
        }
    }
    write(&dir.path().join("a.csv"), Fmt::Csv, &base, false);
    check_every_resume(&dir.path().join("a.csv"), 7);
    let mut more: Vec<Row> = (0..700)
        .map(|i| full_row(&mut rng, "upsert", format!("p{i:05}")))
        .collect();
    for r in more.iter_mut().step_by(25) {
        r.id = String::new();
    }
    write(&dir.path().join("c.parquet"), Fmt::Parquet, &more, false);
    check_every_resume(&dir.path().join("c.parquet"), 1);
    let mut lines = String::new();
    for i in 0..600 {
        lines.push_str(&format!("{{\"op\": \"update\", \"id\": \"u{i}\", \"title\": \"t\"}}\n"));
        if i % 50 == 25 {
            lines.push_str("{\"op\": \"update\", \"id\": \n");
        }
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(lines.as_bytes()).expect("gz");
    std::fs::write(dir.path().join("b.jsonl.gz"), enc.finish().expect("gz")).expect("write");
    check_every_resume(&dir.path().join("b.jsonl.gz"), 1);
}
