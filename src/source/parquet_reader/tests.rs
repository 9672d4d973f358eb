//! Tests of the Parquet reader: every supported column type, nulls, row-group positions and
//! resuming, bad values, unsupported types and truncated or corrupt files.
//! Never: touches files outside its temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, Float64Builder, ListBuilder, MapBuilder, StringBuilder, StructBuilder};
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Date64Array, Decimal128Array, DictionaryArray,
    FixedSizeListArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, LargeStringArray,
    ListArray, NullArray, RecordBatch, StringArray, StructArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt8Array, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::super::tests::{check_resume_everywhere, end_of, read_all, summary};
use super::super::{Cell, Position, RawRow, ReadError, ReadOptions, open};

fn write_parquet(path: &Path, batches: &[RecordBatch], max_rows_per_group: Option<usize>) {
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(max_rows_per_group)
        .build();
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter_with_nullable(cols.into_iter().map(|(n, a)| (n, a, true))).unwrap()
}

fn cells(r: &RawRow) -> Vec<(String, Cell)> {
    r.cells.iter().map(|(n, c)| (n.to_string(), c.clone())).collect()
}

fn get<'a>(r: &'a RawRow, name: &str) -> &'a Cell {
    &r.cells.iter().find(|(n, _)| &**n == name).unwrap().1
}

fn all_types_batch() -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("a");
    tags.values().append_value("b");
    tags.append(true);
    tags.append(false);
    tags.append(true); // empty list
    let mut sparse = MapBuilder::new(None, StringBuilder::new(), Float32Builder::new());
    sparse.keys().append_value("hello");
    sparse.values().append_value(0.1);
    sparse.keys().append_value("world");
    sparse.values().append_value(2.5);
    sparse.append(true).unwrap();
    sparse.append(false).unwrap();
    sparse.append(true).unwrap();
    let fields = vec![
        Field::new("x", DataType::Float32, true),
        Field::new("y", DataType::Float64, true),
    ];
    let mut weights = StructBuilder::from_fields(fields, 3);
    for (x, y, valid) in [
        (Some(0.5), Some(1.0), true),
        (None, None, false),
        (None, Some(2.0), true),
    ] {
        if let Some(b) = weights.field_builder::<Float32Builder>(0) {
            b.append_option(x);
        }
        if let Some(b) = weights.field_builder::<Float64Builder>(1) {
            b.append_option(y);
        }
        weights.append(valid);
    }
    let mixed = StructArray::from(vec![
        (
            Arc::new(Field::new("name", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("n"), None, Some("m")])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("ok", DataType::Boolean, true)),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])) as ArrayRef,
        ),
    ]);
    batch(vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(-8), None, Some(8)])) as ArrayRef,
        ),
        ("i16", Arc::new(Int16Array::from(vec![Some(-16), None, Some(16)]))),
        ("i32", Arc::new(Int32Array::from(vec![Some(-32), None, Some(32)]))),
        (
            "i64",
            Arc::new(Int64Array::from(vec![Some(9007199254740993), None, Some(i64::MIN)])),
        ),
        ("u8", Arc::new(UInt8Array::from(vec![Some(255), None, Some(0)]))),
        ("u16", Arc::new(UInt16Array::from(vec![Some(65535), None, Some(1)]))),
        ("u32", Arc::new(UInt32Array::from(vec![Some(u32::MAX), None, Some(2)]))),
        ("u64", Arc::new(UInt64Array::from(vec![Some(7), None, Some(u64::MAX)]))),
        ("f32", Arc::new(Float32Array::from(vec![Some(0.1), None, Some(-2.5)]))),
        ("f64", Arc::new(Float64Array::from(vec![Some(0.1), None, Some(1e300)]))),
        ("s", Arc::new(StringArray::from(vec![Some("héllo"), None, Some("")]))),
        (
            "ls",
            Arc::new(LargeStringArray::from(vec![Some("large"), None, Some("x")])),
        ),
        ("b", Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]))),
        (
            "bin",
            Arc::new(BinaryArray::from_opt_vec(vec![Some(b"bytes"), None, Some(b"")])),
        ),
        (
            "dec",
            Arc::new(
                Decimal128Array::from(vec![Some(12345), None, Some(-5)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        (
            "ts_tz",
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None, Some(0)]).with_timezone("+08:00"),
            ),
        ),
        (
            "ts_utc",
            Arc::new(TimestampSecondArray::from(vec![Some(1_700_000_000), None, Some(0)]).with_timezone("UTC")),
        ),
        (
            "ts_named",
            Arc::new(TimestampSecondArray::from(vec![Some(0), None, Some(0)]).with_timezone("Europe/Paris")),
        ),
        (
            "ts_us",
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1_500_000), None, Some(-1)])),
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(vec![Some(1), None, Some(0)])),
        ),
        ("d32", Arc::new(Date32Array::from(vec![Some(19723), None, Some(-1)]))),
        (
            "d64",
            Arc::new(Date64Array::from(vec![Some(1_704_067_200_000), None, Some(0)])),
        ),
        (
            "dict",
            Arc::new(DictionaryArray::<Int32Type>::from_iter(vec![
                Some("red"),
                None,
                Some("red"),
            ])),
        ),
        (
            "emb",
            Arc::new(FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
                vec![
                    Some(vec![Some(0.1), Some(0.2), Some(0.3)]),
                    None,
                    Some(vec![Some(1.0), Some(-1.0), Some(0.0)]),
                ],
                3,
            )),
        ),
        (
            "vf32",
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
                Some(vec![Some(0.5)]),
                None,
                Some(vec![]),
            ])),
        ),
        (
            "vf64",
            Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
                Some(vec![Some(0.1), Some(0.2)]),
                None,
                Some(vec![]),
            ])),
        ),
        (
            "ints",
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(vec![Some(1), Some(-2)]),
                None,
                Some(vec![Some(i64::MAX)]),
            ])),
        ),
        ("tags", Arc::new(tags.finish())),
        ("sparse", Arc::new(sparse.finish())),
        ("weights", Arc::new(weights.finish())),
        ("mixed", Arc::new(mixed)),
        ("nothing", Arc::new(NullArray::new(3))),
    ])
}

#[test]
fn every_supported_type_becomes_the_right_cell() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all.parquet");
    write_parquet(&p, &[all_types_batch()], None);
    let rows = read_all(&p, &ReadOptions::default(), None);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let r = rows[0].as_ref().unwrap();
    let t = |s: &str| Cell::Timestamp(s.into());
    let expect = vec![
        ("i8", Cell::Int(-8)),
        ("i16", Cell::Int(-16)),
        ("i32", Cell::Int(-32)),
        ("i64", Cell::Int(9007199254740993)),
        ("u8", Cell::Int(255)),
        ("u16", Cell::Int(65535)),
        ("u32", Cell::Int(u32::MAX.into())),
        ("u64", Cell::Int(7)),
        ("f32", Cell::Float32(0.1)),
        ("f64", Cell::Float(0.1)),
        ("s", Cell::Text("héllo".into())),
        ("ls", Cell::Text("large".into())),
        ("b", Cell::Bool(true)),
        ("bin", Cell::Text("bytes".into())),
        ("dec", Cell::Text("123.45".into())),
        ("ts_tz", t("2023-11-15T06:13:20.123+08:00")),
        ("ts_utc", t("2023-11-14T22:13:20Z")),
        ("ts_named", t("1970-01-01T00:00:00Z")),
        ("ts_us", t("1970-01-01T00:00:01.500Z")),
        ("ts_ns", t("1970-01-01T00:00:00.000000001Z")),
        ("d32", t("2024-01-01T00:00:00Z")),
        ("d64", t("2024-01-01T00:00:00Z")),
        ("dict", Cell::Text("red".into())),
        ("emb", Cell::F32List(vec![0.1, 0.2, 0.3])),
        ("vf32", Cell::F32List(vec![0.5])),
        ("vf64", Cell::F64List(vec![0.1, 0.2])),
        ("ints", Cell::IntList(vec![1, -2])),
        ("tags", Cell::StrList(vec!["a".into(), "b".into()])),
        (
            "sparse",
            Cell::Sparse(vec![("hello".into(), 0.1), ("world".into(), 2.5)]),
        ),
        ("weights", Cell::Sparse(vec![("x".into(), 0.5), ("y".into(), 1.0)])),
        ("mixed", Cell::Json(serde_json::json!({"name": "n", "ok": true}))),
        ("nothing", Cell::Null),
    ];
    let expect: Vec<(String, Cell)> = expect.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    assert_eq!(cells(r), expect);
    assert_eq!(r.row, 1);

    // Row 2: every value null (a struct that is not null itself gives its null fields).
    let r = rows[1].as_ref().unwrap();
    for (name, cell) in cells(r) {
        if name == "mixed" {
            assert_eq!(cell, Cell::Json(serde_json::json!({"name": null, "ok": null})));
        } else {
            assert_eq!(cell, Cell::Null, "{name}");
        }
    }

    // Row 3: edge values.
    let r = rows[2].as_ref().unwrap();
    assert_eq!(get(r, "u64"), &Cell::Json(serde_json::json!(u64::MAX)));
    assert_eq!(get(r, "i64"), &Cell::Int(i64::MIN));
    assert_eq!(get(r, "s"), &Cell::Text(String::new()));
    assert_eq!(get(r, "bin"), &Cell::Text(String::new()));
    assert_eq!(get(r, "dec"), &Cell::Text("-0.05".into()));
    assert_eq!(get(r, "ts_tz"), &t("1970-01-01T08:00:00+08:00"));
    assert_eq!(get(r, "ts_us"), &t("1969-12-31T23:59:59.999999Z"));
    assert_eq!(get(r, "d32"), &t("1969-12-31T00:00:00Z"));
    assert_eq!(get(r, "vf32"), &Cell::F32List(vec![]));
    assert_eq!(get(r, "tags"), &Cell::StrList(vec![]));
    assert_eq!(get(r, "sparse"), &Cell::Sparse(vec![]));
    assert_eq!(get(r, "weights"), &Cell::Sparse(vec![("y".into(), 2.0)]));
    assert_eq!(get(r, "emb"), &Cell::F32List(vec![1.0, -1.0, 0.0]));

    // Column names are shared between rows; JSON keeps f32 short.
    assert!(Arc::ptr_eq(
        &rows[0].as_ref().unwrap().cells[0].0,
        &rows[2].as_ref().unwrap().cells[0].0
    ));
    let json = rows[0].as_ref().unwrap().to_json();
    assert_eq!(json["emb"].to_string(), "[0.1,0.2,0.3]");
    assert_eq!(json["f32"].to_string(), "0.1");
    assert_eq!(json["sparse"].to_string(), r#"{"hello":0.1,"world":2.5}"#);
}

fn ids_file(dir: &tempfile::TempDir, name: &str, n: i64, per_group: usize) -> PathBuf {
    let p = dir.path().join(name);
    let ids: Vec<i64> = (1..=n).collect();
    let vecs: Vec<Option<Vec<Option<f32>>>> = (1..=n).map(|i| Some(vec![Some(i as f32 / 10.0); 2])).collect();
    let b = batch(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        (
            "v",
            Arc::new(FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(vecs, 2)),
        ),
    ]);
    write_parquet(&p, &[b], Some(per_group));
    p
}

fn ids(items: &[Result<RawRow, ReadError>]) -> Vec<i64> {
    items
        .iter()
        .map(|i| match get(i.as_ref().unwrap(), "id") {
            Cell::Int(v) => *v,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn row_group_positions_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let p = ids_file(&dir, "groups.parquet", 10, 3);
    let all = read_all(&p, &ReadOptions::default(), None);
    assert_eq!(ids(&all), (1..=10).collect::<Vec<_>>());
    let ends: Vec<Position> = all.iter().map(end_of).collect();
    let rg = |row_group, row, rows| Position::RowGroup { row_group, row, rows };
    assert_eq!(ends[0], rg(0, 1, 1));
    assert_eq!(ends[2], rg(1, 0, 3), "end of a row group is the next group's start");
    assert_eq!(ends[3], rg(1, 1, 4));
    assert_eq!(ends[9], rg(4, 0, 10));
    // At a boundary, mid-group and at the end.
    assert_eq!(
        ids(&read_all(&p, &ReadOptions::default(), Some(rg(1, 0, 3)))),
        vec![4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!(
        ids(&read_all(&p, &ReadOptions::default(), Some(rg(2, 2, 8)))),
        vec![9, 10]
    );
    assert_eq!(
        ids(&read_all(&p, &ReadOptions::default(), Some(rg(4, 0, 10)))),
        Vec::<i64>::new()
    );
    // Not normalised (end of group 0 written as (0, 3)): same as (1, 0).
    assert_eq!(
        ids(&read_all(&p, &ReadOptions::default(), Some(rg(0, 3, 3)))),
        vec![4, 5, 6, 7, 8, 9, 10]
    );
    // Every boundary.
    assert_eq!(check_resume_everywhere(&p, &ReadOptions::default()), 10);
    // Row numbers continue after a resume.
    let rest = read_all(&p, &ReadOptions::default(), Some(rg(2, 1, 7)));
    assert_eq!(rest[0].as_ref().unwrap().row, 8);
    // Positions that do not fit the file.
    for bad in [
        rg(5, 0, 10),
        rg(4, 1, 11),
        rg(1, 4, 7),
        rg(1, 0, 2),
        Position::Offset {
            byte: 0,
            rows: 0,
            line: None,
        },
    ] {
        assert!(
            matches!(
                open(&p, &ReadOptions::default(), Some(bad)),
                Err(ReadError::File { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn batches_larger_than_row_groups_and_bytes_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = ids_file(&dir, "big.parquet", 3000, 700);
    let meta_sizes: Vec<u64> = {
        let f = std::fs::File::open(&p).unwrap();
        let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        b.metadata()
            .row_groups()
            .iter()
            .map(|g| g.compressed_size() as u64)
            .collect()
    };
    assert_eq!(meta_sizes.len(), 5);
    let mut r = open(&p, &ReadOptions::default(), None).unwrap();
    let mut n = 0;
    let mut last = None;
    while let Some(item) = r.next_row() {
        let row = item.unwrap();
        n += 1;
        assert_eq!(get(&row, "id"), &Cell::Int(n));
        if n == 700 {
            assert_eq!(r.bytes_read(), meta_sizes[0]);
        }
        last = Some(row.end);
    }
    assert_eq!(n, 3000);
    assert_eq!(
        last,
        Some(Position::RowGroup {
            row_group: 5,
            row: 0,
            rows: 3000
        })
    );
    assert_eq!(r.bytes_read(), meta_sizes.iter().sum::<u64>());
    let rest = read_all(
        &p,
        &ReadOptions::default(),
        Some(Position::RowGroup {
            row_group: 2,
            row: 699,
            rows: 2099,
        }),
    );
    assert_eq!(ids(&rest), (2100..=3000).collect::<Vec<_>>());
    let r = open(
        &p,
        &ReadOptions::default(),
        Some(Position::RowGroup {
            row_group: 2,
            row: 5,
            rows: 1405,
        }),
    )
    .unwrap();
    assert_eq!(r.bytes_read(), meta_sizes[0] + meta_sizes[1]);
}

#[test]
fn bad_values_are_row_errors_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.parquet");
    let b = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2, 3, 4])) as ArrayRef),
        (
            "emb",
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
                Some(vec![Some(0.5), Some(1.5)]),
                Some(vec![Some(0.5), None]),
                Some(vec![]),
                Some(vec![Some(2.0)]),
            ])),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from_opt_vec(vec![
                Some(b"ok"),
                Some(b"ok"),
                Some(b"\xFFno"),
                None,
            ])),
        ),
        (
            "ids",
            Arc::new(ListArray::from_iter_primitive::<arrow_array::types::UInt64Type, _, _>(
                vec![
                    Some(vec![Some(1)]),
                    Some(vec![Some(2)]),
                    Some(vec![Some(3)]),
                    Some(vec![Some(u64::MAX)]),
                ],
            )),
        ),
    ]);
    write_parquet(&p, &[b], None);
    let rows = read_all(&p, &ReadOptions::default(), None);
    assert_eq!(rows.len(), 4);
    assert!(rows[0].is_ok());
    match &rows[1] {
        Err(ReadError::Row {
            row, message, raw, end, ..
        }) => {
            assert_eq!(*row, 2);
            assert!(message.contains("\"emb\"") && message.contains("null"), "{message}");
            assert_eq!(
                raw,
                &serde_json::json!({"id": 2, "emb": [0.5, null], "bin": "ok", "ids": [2]})
            );
            assert_eq!(
                *end,
                Position::RowGroup {
                    row_group: 0,
                    row: 2,
                    rows: 2
                }
            );
        }
        other => panic!("{other:?}"),
    }
    match &rows[2] {
        Err(ReadError::Row { row, message, raw, .. }) => {
            assert_eq!(*row, 3);
            assert!(message.contains("\"bin\"") && message.contains("UTF-8"), "{message}");
            assert_eq!(raw["bin"], "\u{FFFD}no");
        }
        other => panic!("{other:?}"),
    }
    match &rows[3] {
        Err(ReadError::Row { message, raw, .. }) => {
            assert!(message.contains("\"ids\""), "{message}");
            assert_eq!(raw["ids"], serde_json::json!([u64::MAX]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_with_null_value_is_a_row_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("map.parquet");
    let mut m = MapBuilder::new(None, StringBuilder::new(), Float32Builder::new());
    m.keys().append_value("a");
    m.values().append_null();
    m.append(true).unwrap();
    write_parquet(&p, &[batch(vec![("sparse", Arc::new(m.finish()) as ArrayRef)])], None);
    let rows = read_all(&p, &ReadOptions::default(), None);
    match &rows[0] {
        Err(ReadError::Row { message, raw, .. }) => {
            assert!(message.contains("\"sparse\"") && message.contains("\"a\""), "{message}");
            assert_eq!(raw, &serde_json::json!({"sparse": {"a": null}}));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_column_type_is_a_file_error_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("time.parquet");
    let b = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
        ("at", Arc::new(Time64MicrosecondArray::from(vec![1_000_000]))),
    ]);
    write_parquet(&p, &[b], None);
    match open(&p, &ReadOptions::default(), None) {
        Err(e @ ReadError::File { .. }) => {
            let text = e.to_string();
            assert!(text.contains("\"at\"") && text.contains("Time64"), "{text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a file with a time column"),
    }
}

#[test]
fn truncated_and_corrupt_files_are_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = ids_file(&dir, "good.parquet", 2000, 500);
    let bytes = std::fs::read(&good).unwrap();
    for cut in [0, 4, 100, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
        let p = dir.path().join(format!("cut{cut}.parquet"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        match open(&p, &ReadOptions::default(), None) {
            Err(ReadError::File { file, .. }) => assert_eq!(file, p),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened a file cut at {cut}"),
        }
    }
    // Damaged data pages with an intact footer: a file error or garbage values, never a panic.
    for (start, len) in [(4, 200), (bytes.len() / 3, 500), (bytes.len() / 2, 64)] {
        let mut damaged = bytes.clone();
        for b in &mut damaged[start..start + len] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let p = dir.path().join(format!("damaged{start}.parquet"));
        std::fs::write(&p, &damaged).unwrap();
        if let Ok(mut r) = open(&p, &ReadOptions::default(), None) {
            let mut items = 0;
            while let Some(item) = r.next_row() {
                items += 1;
                if let Err(ReadError::File { file, .. }) = item {
                    assert_eq!(file, p);
                }
                assert!(items <= 2000);
            }
        }
    }
    // Not a Parquet file at all.
    let p = dir.path().join("text.parquet");
    std::fs::write(&p, b"id,v\n1,2\n").unwrap();
    assert!(matches!(
        open(&p, &ReadOptions::default(), None),
        Err(ReadError::File { .. })
    ));
}

#[test]
fn multiple_batches_and_groups_resume_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("multi.parquet");
    let mk = |from: i32, to: i32| {
        batch(vec![
            (
                "id",
                Arc::new(Int32Array::from((from..to).collect::<Vec<_>>())) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(
                    (from..to).map(|i| format!("s{i}")).collect::<Vec<_>>(),
                )),
            ),
        ])
    };
    write_parquet(&p, &[mk(0, 4), mk(4, 5), mk(5, 9)], Some(4));
    let all = read_all(&p, &ReadOptions::default(), None);
    assert_eq!(all.len(), 9);
    assert_eq!(summary(&all).len(), 9);
    check_resume_everywhere(&p, &ReadOptions::default());
}

#[test]
fn other_nested_types_become_json() {
    use arrow_array::builder::BooleanBuilder;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nested.parquet");
    let mut flags = ListBuilder::new(BooleanBuilder::new());
    flags.values().append_value(true);
    flags.values().append_null();
    flags.append(true);
    let mut nested = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    nested.values().values().append_value(0.1);
    nested.values().append(true);
    nested.values().append(true);
    nested.append(true);
    let b = batch(vec![
        ("flags", Arc::new(flags.finish()) as ArrayRef),
        ("nested", Arc::new(nested.finish())),
    ]);
    write_parquet(&p, &[b], None);
    let rows = read_all(&p, &ReadOptions::default(), None);
    let r = rows[0].as_ref().unwrap();
    assert_eq!(get(r, "flags"), &Cell::Json(serde_json::json!([true, null])));
    assert_eq!(get(r, "nested"), &Cell::Json(serde_json::json!([[0.1], []])));
    assert_eq!(r.to_json()["nested"].to_string(), "[[0.1],[]]");
}

fn integrity_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/integrity")
        .join(name)
}

#[test]
fn page_checksums_are_verified_before_a_row_group_is_used() {
    // Written by pyarrow with page CRCs (tests/fixtures/integrity/make_parquet_crc.py).
    let good = read_all(&integrity_fixture("crc-good.parquet"), &ReadOptions::default(), None);
    assert_eq!(good.len(), 200);
    assert!(good.iter().all(Result::is_ok));

    // One byte changed in a late page of row group 1's "title" column.
    let bad = integrity_fixture("crc-corrupt.parquet");
    let items = read_all(&bad, &ReadOptions::default(), None);
    assert_eq!(items.len(), 101, "row group 0, then the error");
    for (i, item) in items[..100].iter().enumerate() {
        let row = item.as_ref().unwrap();
        assert_eq!(get(row, "title"), &Cell::Text(format!("title-{i:05}")));
    }
    match &items[100] {
        Err(ReadError::File { file, message }) => {
            assert_eq!(file, &bad);
            assert!(message.contains("row group 1"), "{message}");
            assert!(message.contains("\"title\""), "{message}");
            assert!(message.contains("checksum"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Resuming inside the damaged row group checks the whole group again.
    let pos = Position::RowGroup {
        row_group: 1,
        row: 95,
        rows: 195,
    };
    let items = read_all(&bad, &ReadOptions::default(), Some(pos));
    assert_eq!(items.len(), 1);
    assert!(matches!(&items[0], Err(ReadError::File { .. })));
}
