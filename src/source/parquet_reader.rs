//! Parquet reader: the sync arrow reader, one row group and within it one record batch
//! (≤ `BATCH_SIZE` rows) at a time.
//!
//! Owns: checking at open that every column has a type it can hand on, checking a row group's
//! pages before any of its rows is handed out, turning Arrow values into cells (`f32` vectors
//! copied straight from the Arrow buffer, never widened), and row-group positions (one arrow
//! reader per row group, `with_offset` to resume inside one).
//! Never: holds more than one batch (or, while checking, one page), coerces to the collection's
//! types, or panics on a bad file: a truncated or corrupt file is a `ReadError::File`, a bad
//! value (a null inside a list, non-UTF-8 binary, an out-of-range timestamp or integer) a
//! `ReadError::Row`.
//!
//! Page checksums: before the first row of a row group is handed out, every page of every column
//! chunk of that group is read and decompressed (not decoded), which checks the CRC-32 of each
//! page that carries one (the `parquet` crate's `crc` feature). A page that fails, or cannot be
//! read, stops the file with a `ReadError::File` naming the row group and the column, and no row
//! of that group is handed out. Pages written without a checksum (the Rust writer's, and
//! pyarrow's default) cannot be checked.
//!
//! Column types → cells:
//! - null → `Null` (any null value → `Null`)
//! - int8..int64, uint8..uint32 → `Int`; uint64 → `Int`, or `Json(number)` above `i64::MAX`
//! - float16, float32 → `Float32`; float64 → `Float`
//! - utf8, large_utf8, utf8_view, dictionary(utf8 …) → `Text`; decimal → `Text` (exact digits)
//! - binary, large_binary, binary_view, fixed_size_binary → `Text` if UTF-8, else a row error
//! - boolean → `Bool`
//! - timestamp → `Timestamp` (RFC 3339; the column's fixed offset, or `Z` for UTC, no zone or
//!   a named zone); date32/date64 → `Timestamp` at midnight UTC
//! - list / large_list / fixed_size_list of float32 (or float16) → `F32List`, of float64 →
//!   `F64List`, of strings → `StrList`, of integers → `IntList`; a null element is a row error
//! - map<string, number> and struct of numbers → `Sparse` (a null map value is a row error; a
//!   null struct field is left out)
//! - other lists, maps and structs of supported types → `Json` (nested arrays and objects)
//! - anything else (time, duration, interval, union, run-end encoded, list views) → a
//!   `ReadError::File` at open naming the column and its type.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::serialized_reader::SerializedPageReader;

use super::{Cell, Position, RawRow, ReadError, RowReader};

const BATCH_SIZE: usize = 1024;

/// How a column's values become cells, decided once at open.
#[derive(Debug, Clone)]
enum Kind {
    Scalar(Scalar),
    /// Dictionary-encoded values of a scalar type.
    Dict(Scalar),
    List(Elem),
    /// map<string, number>.
    SparseMap,
    /// struct of numbers: field name → weight.
    SparseStruct,
    /// Other supported nested types, as JSON.
    Json,
}

#[derive(Debug, Clone, Copy)]
enum Scalar {
    Null,
    Bool,
    Int,
    UInt64,
    Float32,
    Float64,
    Str,
    Binary,
    Decimal,
    /// Timestamp with the column's fixed offset (`None`: shown as UTC `Z`).
    Timestamp(TimeUnit, Option<FixedOffset>),
    Date32,
    Date64,
}

#[derive(Debug, Clone, Copy)]
enum Elem {
    F32,
    F64,
    Str,
    Int,
}

struct Column {
    name: Arc<str>,
    kind: Kind,
}

pub(super) struct ParquetReader {
    path: PathBuf,
    file: File,
    meta: ArrowReaderMetadata,
    /// The reader of row group `reader_rg` (checked before it was opened).
    reader: Option<ParquetRecordBatchReader>,
    reader_rg: usize,
    columns: Vec<Column>,
    batch: Option<RecordBatch>,
    /// Next row of `batch` to hand out.
    batch_row: usize,
    rg_rows: Vec<u64>,
    rg_sizes: Vec<u64>,
    /// Position of the next row to read.
    rg: usize,
    row_in_rg: u64,
    rows: u64,
    /// Compressed size of the row groups fully read (or skipped).
    bytes: u64,
    done: bool,
}

impl ParquetReader {
    pub(super) fn open(path: &Path, start: Option<(usize, u64, u64)>) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|e| super::file_error(path, format!("cannot open: {e}")))?;
        let meta = catch_unwind(AssertUnwindSafe(|| {
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        }))
        .map_err(|p| super::file_error(path, format!("cannot read the Parquet metadata: {}", panic_text(&p))))?
        .map_err(|e| super::file_error(path, format!("not a readable Parquet file: {e}")))?;
        let mut columns = Vec::new();
        for field in meta.schema().fields() {
            let Some(kind) = classify(field.data_type()) else {
                return Err(super::file_error(
                    path,
                    format!(
                        "column {:?} has type {} which cannot be read; supported: integers, floats, \
                         strings, booleans, binary (UTF-8), decimals, timestamps, dates, lists, maps \
                         and structs of these",
                        field.name(),
                        field.data_type()
                    ),
                ));
            };
            columns.push(Column {
                name: Arc::from(field.name().as_str()),
                kind,
            });
        }
        let rg_rows: Vec<u64> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect();
        let rg_sizes: Vec<u64> = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.compressed_size().max(0) as u64)
            .collect();
        let groups = rg_rows.len();

        let (mut rg, mut row) = (0usize, 0u64);
        if let Some((s_rg, s_row, s_rows)) = start {
            let fits = s_rg < groups && s_row <= rg_rows[s_rg] || s_rg == groups && s_row == 0;
            let before: u64 = rg_rows.iter().take(s_rg).sum::<u64>() + s_row;
            if !fits || before != s_rows {
                return Err(super::file_error(
                    path,
                    format!(
                        "cannot resume at row group {s_rg}, row {s_row} ({s_rows} rows before): the \
                         file has {groups} row groups of {rg_rows:?} rows; was it replaced?"
                    ),
                ));
            }
            (rg, row) = (s_rg, s_row);
        }
        let mut reader = ParquetReader {
            path: path.to_path_buf(),
            file,
            meta,
            reader: None,
            reader_rg: 0,
            columns,
            batch: None,
            batch_row: 0,
            bytes: rg_sizes.iter().take(rg).sum(),
            rg_rows,
            rg_sizes,
            rg,
            row_in_rg: row,
            rows: start.map_or(0, |s| s.2),
            done: false,
        };
        reader.normalise();
        if reader.rg >= groups {
            reader.done = true;
        }
        Ok(reader)
    }

    /// Check the pages of row group `rg` (the next row's) and open a reader of it, from the row
    /// `row_in_rg`.
    fn start_group(&mut self) -> Result<(), String> {
        let g = self.rg;
        let checked = catch_unwind(AssertUnwindSafe(|| self.check_group(g)))
            .map_err(|p| format!("row group {g}: the Parquet decoder failed: {}", panic_text(&p)))?;
        checked?;
        let file = self.file.try_clone().map_err(|e| format!("cannot reopen: {e}"))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone());
        let offset = self.row_in_rg as usize;
        let built = catch_unwind(AssertUnwindSafe(|| {
            builder
                .with_row_groups(vec![g])
                .with_offset(offset)
                .with_batch_size(BATCH_SIZE)
                .build()
        }))
        .map_err(|p| format!("row group {g}: the Parquet decoder failed: {}", panic_text(&p)))?;
        let inner = built.map_err(|e| format!("row group {g}: cannot read: {e}"))?;
        self.reader = Some(inner);
        self.reader_rg = g;
        Ok(())
    }

    /// Read and decompress every page of row group `g`, one page at a time: checks each page's
    /// CRC-32 where the writer stored one, and that every page can be read at all.
    fn check_group(&self, g: usize) -> Result<(), String> {
        let metadata = self.meta.metadata();
        let group = metadata.row_group(g);
        let file = Arc::new(self.file.try_clone().map_err(|e| format!("cannot reopen: {e}"))?);
        let total_rows = usize::try_from(group.num_rows()).unwrap_or(0);
        for column in group.columns() {
            let name = column.column_path().string();
            let fail = |e: parquet::errors::ParquetError| {
                let text = e.to_string();
                let what = if text.contains("CRC") {
                    "a page fails its CRC-32 checksum (the file is corrupt)".to_string()
                } else {
                    format!("a page cannot be read (corrupt or truncated?): {text}")
                };
                format!("row group {g}, column {name:?}: {what}; no row of this row group was used")
            };
            let pages = SerializedPageReader::new(file.clone(), column, total_rows, None).map_err(fail)?;
            for page in pages {
                page.map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Move past the ends of row groups, so that the end of a group reads as (next group, 0).
    fn normalise(&mut self) {
        while self.rg < self.rg_rows.len() && self.row_in_rg >= self.rg_rows[self.rg] {
            self.bytes += self.rg_sizes[self.rg];
            self.rg += 1;
            self.row_in_rg = 0;
        }
    }

    fn fail(&mut self, message: String) -> Option<Result<RawRow, ReadError>> {
        self.done = true;
        self.batch = None;
        self.reader = None;
        Some(Err(super::file_error(&self.path, message)))
    }
}

impl RowReader for ParquetReader {
    fn next_row(&mut self) -> Option<Result<RawRow, ReadError>> {
        if self.done {
            return None;
        }
        loop {
            match &self.batch {
                Some(b) if self.batch_row < b.num_rows() => break,
                _ => {}
            }
            self.batch = None;
            if self.reader.is_none() {
                if self.rg >= self.rg_rows.len() {
                    self.done = true;
                    return None;
                }
                if let Err(message) = self.start_group() {
                    return self.fail(message);
                }
            }
            let g = self.reader_rg;
            let reader = self.reader.as_mut()?;
            match catch_unwind(AssertUnwindSafe(|| reader.next())) {
                Ok(Some(Ok(b))) => {
                    if b.num_columns() != self.columns.len() {
                        let (got, want) = (b.num_columns(), self.columns.len());
                        return self.fail(format!("row group {g}: a batch has {got} columns, not {want}"));
                    }
                    self.batch = Some(b);
                    self.batch_row = 0;
                }
                Ok(Some(Err(e))) => {
                    return self.fail(format!("row group {g}: cannot read (corrupt or truncated?): {e}"));
                }
                Ok(None) => {
                    if self.rg == g {
                        let (row, n) = (self.row_in_rg, self.rg_rows[g]);
                        return self.fail(format!("row group {g} ended after {row} of its {n} rows"));
                    }
                    self.reader = None;
                }
                Err(p) => {
                    return self.fail(format!("row group {g}: the Parquet decoder failed: {}", panic_text(&p)));
                }
            }
        }
        if self.rg != self.reader_rg {
            let g = self.reader_rg;
            let n = self.rg_rows[g];
            return self.fail(format!("row group {g} holds more rows than the {n} its metadata gives"));
        }
        let i = self.batch_row;
        self.batch_row += 1;
        self.rows += 1;
        self.row_in_rg += 1;
        self.normalise();
        let end = Position::RowGroup {
            row_group: self.rg,
            row: self.row_in_rg,
            rows: self.rows,
        };

        let batch = self.batch.as_ref()?;
        let mut cells = Vec::with_capacity(self.columns.len());
        let mut errors: Vec<(usize, String, serde_json::Value)> = Vec::new();
        for (j, (col, array)) in self.columns.iter().zip(batch.columns()).enumerate() {
            match cell(&col.kind, array, i) {
                Ok(c) => cells.push((col.name.clone(), c)),
                Err(CellError { message, raw }) => {
                    errors.push((j, format!("column {:?}: {message}", col.name), raw));
                    cells.push((col.name.clone(), Cell::Null));
                }
            }
        }
        if errors.is_empty() {
            return Some(Ok(RawRow {
                row: self.rows,
                cells,
                end,
            }));
        }
        let mut raw = RawRow {
            row: self.rows,
            cells,
            end,
        }
        .to_json();
        let mut messages = Vec::new();
        for (j, message, value) in errors {
            if let Some(slot) = raw.as_object_mut().and_then(|o| o.get_mut(&*self.columns[j].name)) {
                *slot = value;
            }
            messages.push(message);
        }
        Some(Err(ReadError::Row {
            file: self.path.clone(),
            row: self.rows,
            end,
            raw,
            message: messages.join("; "),
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

// ---- classification (at open) ----

fn classify(dt: &DataType) -> Option<Kind> {
    if let Some(s) = scalar_kind(dt) {
        return Some(Kind::Scalar(s));
    }
    match dt {
        DataType::Dictionary(_, values) => scalar_kind(values)
            .map(Kind::Dict)
            .or_else(|| json_ok(values).then_some(Kind::Json)),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => match elem_kind(f.data_type()) {
            Some(e) => Some(Kind::List(e)),
            None => json_ok(f.data_type()).then_some(Kind::Json),
        },
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return None;
            };
            if kv.len() == 2 && is_str(kv[0].data_type()) && is_number(kv[1].data_type()) {
                Some(Kind::SparseMap)
            } else {
                json_ok(dt).then_some(Kind::Json)
            }
        }
        DataType::Struct(fields) => {
            if !fields.is_empty() && fields.iter().all(|f| is_number(f.data_type())) {
                Some(Kind::SparseStruct)
            } else {
                json_ok(dt).then_some(Kind::Json)
            }
        }
        _ => None,
    }
}

fn scalar_kind(dt: &DataType) -> Option<Scalar> {
    use DataType as D;
    Some(match dt {
        D::Null => Scalar::Null,
        D::Boolean => Scalar::Bool,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => Scalar::Int,
        D::UInt64 => Scalar::UInt64,
        D::Float16 | D::Float32 => Scalar::Float32,
        D::Float64 => Scalar::Float64,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Scalar::Str,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => Scalar::Binary,
        D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..) => Scalar::Decimal,
        D::Timestamp(unit, tz) => Scalar::Timestamp(*unit, tz.as_deref().and_then(parse_offset)),
        D::Date32 => Scalar::Date32,
        D::Date64 => Scalar::Date64,
        _ => return None,
    })
}

fn elem_kind(dt: &DataType) -> Option<Elem> {
    use DataType as D;
    Some(match dt {
        D::Float16 | D::Float32 => Elem::F32,
        D::Float64 => Elem::F64,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Elem::Str,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => Elem::Int,
        _ => return None,
    })
}

fn is_str(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(dt: &DataType) -> bool {
    use DataType as D;
    matches!(
        dt,
        D::Float16
            | D::Float32
            | D::Float64
            | D::Int8
            | D::Int16
            | D::Int32
            | D::Int64
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::UInt64
    )
}

/// Whether [`json_at`] can turn values of this type into JSON.
fn json_ok(dt: &DataType) -> bool {
    if scalar_kind(dt).is_some() {
        return true;
    }
    match dt {
        DataType::Dictionary(_, v) => json_ok(v),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => json_ok(f.data_type()),
        DataType::Map(entries, _) => json_ok(entries.data_type()),
        DataType::Struct(fields) => fields.iter().all(|f| json_ok(f.data_type())),
        _ => false,
    }
}

/// A timestamp column's time zone as a fixed offset: `+08:00`, `+0800`, `+08`, `UTC`, `Z`.
/// Named zones (`Europe/Paris`) give `None`: their values are shown in UTC.
fn parse_offset(tz: &str) -> Option<FixedOffset> {
    let tz = tz.trim();
    if matches!(tz, "UTC" | "utc" | "Z" | "z" | "GMT" | "Etc/UTC" | "Etc/GMT") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

// ---- conversion (per row) ----

struct CellError {
    message: String,
    /// The value as far as it can be shown, for the dead-letter record.
    raw: serde_json::Value,
}

fn err(message: impl Into<String>) -> CellError {
    CellError {
        message: message.into(),
        raw: serde_json::Value::Null,
    }
}

fn type_mismatch(a: &dyn Array) -> String {
    format!("unexpected array type {}", a.data_type())
}

fn cell(kind: &Kind, a: &ArrayRef, i: usize) -> Result<Cell, CellError> {
    let a: &dyn Array = a.as_ref();
    if matches!(kind, Kind::Scalar(Scalar::Null)) || a.is_null(i) {
        return Ok(Cell::Null);
    }
    match kind {
        Kind::Scalar(s) => scalar(*s, a, i),
        Kind::Dict(s) => {
            let d = a.as_any_dictionary_opt().ok_or_else(|| err(type_mismatch(a)))?;
            let key = int_at(d.keys(), i).map_err(err)?;
            let values = d.values().as_ref();
            let k = usize::try_from(key)
                .ok()
                .filter(|k| *k < values.len())
                .ok_or_else(|| err("dictionary key out of range"))?;
            if values.is_null(k) {
                Ok(Cell::Null)
            } else {
                scalar(*s, values, k)
            }
        }
        Kind::List(e) => list(*e, a, i),
        Kind::SparseMap => {
            let m = a.as_map_opt().ok_or_else(|| err(type_mismatch(a)))?;
            let offsets = m.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            let (keys, values) = (m.keys().as_ref(), m.values().as_ref());
            let mut out = Vec::with_capacity(end - start);
            for j in start..end {
                let key = str_at(keys, j).ok_or_else(|| err(type_mismatch(keys)))?;
                if values.is_null(j) {
                    return Err(CellError {
                        message: format!("the value for key {key:?} is null"),
                        raw: json_at(a, i, true).unwrap_or(serde_json::Value::Null),
                    });
                }
                out.push((key.to_string(), number_at(values, j).map_err(err)?));
            }
            Ok(Cell::Sparse(out))
        }
        Kind::SparseStruct => {
            let s = a.as_struct_opt().ok_or_else(|| err(type_mismatch(a)))?;
            let mut out = Vec::with_capacity(s.num_columns());
            for (name, child) in s.column_names().into_iter().zip(s.columns()) {
                if !child.is_null(i) {
                    out.push((name.to_string(), number_at(child.as_ref(), i).map_err(err)?));
                }
            }
            Ok(Cell::Sparse(out))
        }
        Kind::Json => json_at(a, i, false).map(Cell::Json).map_err(err),
    }
}

fn scalar(s: Scalar, a: &dyn Array, i: usize) -> Result<Cell, CellError> {
    let mismatch = || err(type_mismatch(a));
    Ok(match s {
        Scalar::Null => Cell::Null,
        Scalar::Bool => Cell::Bool(a.as_boolean_opt().ok_or_else(mismatch)?.value(i)),
        Scalar::Int => Cell::Int(int_at(a, i).map_err(err)?),
        Scalar::UInt64 => {
            let v = a.as_primitive_opt::<UInt64Type>().ok_or_else(mismatch)?.value(i);
            match i64::try_from(v) {
                Ok(v) => Cell::Int(v),
                Err(_) => Cell::Json(serde_json::Value::from(v)),
            }
        }
        Scalar::Float32 => match a.data_type() {
            DataType::Float16 => Cell::Float32(
                a.as_primitive_opt::<Float16Type>()
                    .ok_or_else(mismatch)?
                    .value(i)
                    .to_f32(),
            ),
            _ => Cell::Float32(a.as_primitive_opt::<Float32Type>().ok_or_else(mismatch)?.value(i)),
        },
        Scalar::Float64 => Cell::Float(a.as_primitive_opt::<Float64Type>().ok_or_else(mismatch)?.value(i)),
        Scalar::Str => Cell::Text(str_at(a, i).ok_or_else(mismatch)?.to_string()),
        Scalar::Binary => {
            let bytes = bytes_at(a, i).ok_or_else(mismatch)?;
            match std::str::from_utf8(bytes) {
                Ok(s) => Cell::Text(s.to_string()),
                Err(_) => {
                    return Err(CellError {
                        message: "binary value is not valid UTF-8".into(),
                        raw: serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
                    });
                }
            }
        }
        Scalar::Decimal => Cell::Text(decimal_at(a, i).ok_or_else(mismatch)?),
        Scalar::Timestamp(unit, tz) => Cell::Timestamp(timestamp_at(a, i, unit, tz).map_err(err)?),
        Scalar::Date32 => {
            let days = a.as_primitive_opt::<Date32Type>().ok_or_else(mismatch)?.value(i);
            let dt = DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .ok_or_else(|| err(format!("date {days} days from 1970 is out of range")))?;
            Cell::Timestamp(rfc3339(dt, None))
        }
        Scalar::Date64 => {
            let ms = a.as_primitive_opt::<Date64Type>().ok_or_else(mismatch)?.value(i);
            let dt = DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| err(format!("date {ms} ms from 1970 is out of range")))?;
            Cell::Timestamp(rfc3339(dt, None))
        }
    })
}

fn rfc3339(dt: DateTime<Utc>, tz: Option<FixedOffset>) -> String {
    match tz {
        Some(off) => dt.with_timezone(&off).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    }
}

fn timestamp_at(a: &dyn Array, i: usize, unit: TimeUnit, tz: Option<FixedOffset>) -> Result<String, String> {
    let mismatch = || type_mismatch(a);
    let (v, dt) = match unit {
        TimeUnit::Second => {
            let v = a
                .as_primitive_opt::<TimestampSecondType>()
                .ok_or_else(mismatch)?
                .value(i);
            (v, DateTime::from_timestamp(v, 0))
        }
        TimeUnit::Millisecond => {
            let v = a
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(mismatch)?
                .value(i);
            (v, DateTime::from_timestamp_millis(v))
        }
        TimeUnit::Microsecond => {
            let v = a
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(mismatch)?
                .value(i);
            (v, DateTime::from_timestamp_micros(v))
        }
        TimeUnit::Nanosecond => {
            let v = a
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(mismatch)?
                .value(i);
            (v, Some(DateTime::from_timestamp_nanos(v)))
        }
    };
    let dt = dt.ok_or_else(|| format!("timestamp {v} ({unit:?}) is out of range"))?;
    Ok(rfc3339(dt, tz))
}

fn int_at(a: &dyn Array, i: usize) -> Result<i64, String> {
    use DataType as D;
    macro_rules! get {
        ($t:ty) => {
            a.as_primitive_opt::<$t>()
                .map(|p| i64::from(p.value(i)))
                .ok_or_else(|| type_mismatch(a))
        };
    }
    match a.data_type() {
        D::Int8 => get!(Int8Type),
        D::Int16 => get!(Int16Type),
        D::Int32 => get!(Int32Type),
        D::Int64 => get!(Int64Type),
        D::UInt8 => get!(UInt8Type),
        D::UInt16 => get!(UInt16Type),
        D::UInt32 => get!(UInt32Type),
        D::UInt64 => {
            let v = a
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| type_mismatch(a))?
                .value(i);
            i64::try_from(v).map_err(|_| format!("{v} does not fit a signed 64-bit integer"))
        }
        _ => Err(type_mismatch(a)),
    }
}

/// A number as `f64`; `f32`/`f16` via their shortest decimal form.
fn number_at(a: &dyn Array, i: usize) -> Result<f64, String> {
    let mismatch = || type_mismatch(a);
    match a.data_type() {
        DataType::Float16 => Ok(super::f32_to_f64_shortest(
            a.as_primitive_opt::<Float16Type>()
                .ok_or_else(mismatch)?
                .value(i)
                .to_f32(),
        )),
        DataType::Float32 => Ok(super::f32_to_f64_shortest(
            a.as_primitive_opt::<Float32Type>().ok_or_else(mismatch)?.value(i),
        )),
        DataType::Float64 => Ok(a.as_primitive_opt::<Float64Type>().ok_or_else(mismatch)?.value(i)),
        DataType::UInt64 => Ok(a.as_primitive_opt::<UInt64Type>().ok_or_else(mismatch)?.value(i) as f64),
        _ => int_at(a, i).map(|v| v as f64),
    }
}

fn str_at(a: &dyn Array, i: usize) -> Option<&str> {
    match a.data_type() {
        DataType::Utf8 => a.as_string_opt::<i32>().map(|s| s.value(i)),
        DataType::LargeUtf8 => a.as_string_opt::<i64>().map(|s| s.value(i)),
        DataType::Utf8View => a.as_string_view_opt().map(|s| s.value(i)),
        _ => None,
    }
}

fn bytes_at(a: &dyn Array, i: usize) -> Option<&[u8]> {
    match a.data_type() {
        DataType::Binary => a.as_binary_opt::<i32>().map(|s| s.value(i)),
        DataType::LargeBinary => a.as_binary_opt::<i64>().map(|s| s.value(i)),
        DataType::BinaryView => a.as_binary_view_opt().map(|s| s.value(i)),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary_opt().map(|s| s.value(i)),
        _ => None,
    }
}

fn decimal_at(a: &dyn Array, i: usize) -> Option<String> {
    match a.data_type() {
        DataType::Decimal32(..) => a.as_primitive_opt::<Decimal32Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal64(..) => a.as_primitive_opt::<Decimal64Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal128(..) => a.as_primitive_opt::<Decimal128Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal256(..) => a.as_primitive_opt::<Decimal256Type>().map(|d| d.value_as_string(i)),
        _ => None,
    }
}

/// The child values and the element range of list `i`.
fn list_range(a: &dyn Array, i: usize) -> Option<(&ArrayRef, usize, usize)> {
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list_opt::<i32>()?;
            let o = l.value_offsets();
            Some((l.values(), usize::try_from(o[i]).ok()?, usize::try_from(o[i + 1]).ok()?))
        }
        DataType::LargeList(_) => {
            let l = a.as_list_opt::<i64>()?;
            let o = l.value_offsets();
            Some((l.values(), usize::try_from(o[i]).ok()?, usize::try_from(o[i + 1]).ok()?))
        }
        DataType::FixedSizeList(..) => {
            let l = a.as_fixed_size_list_opt()?;
            let start = l.value_offset_at(i);
            Some((l.values(), start, start + usize::try_from(l.value_length()).ok()?))
        }
        _ => None,
    }
}

fn list(e: Elem, a: &dyn Array, i: usize) -> Result<Cell, CellError> {
    let (values, start, end) = list_range(a, i).ok_or_else(|| err(type_mismatch(a)))?;
    let values = values.as_ref();
    if end > values.len() || start > end {
        return Err(err("list offsets out of range"));
    }
    if values.null_count() > 0
        && let Some(k) = (start..end).find(|j| values.is_null(*j))
    {
        return Err(CellError {
            message: format!("element {} of the list is null", k - start),
            raw: json_at(a, i, true).unwrap_or(serde_json::Value::Null),
        });
    }
    let mismatch = || err(type_mismatch(values));
    Ok(match e {
        Elem::F32 => match values.data_type() {
            DataType::Float16 => Cell::F32List(
                values.as_primitive_opt::<Float16Type>().ok_or_else(mismatch)?.values()[start..end]
                    .iter()
                    .map(|h| h.to_f32())
                    .collect(),
            ),
            _ => Cell::F32List(
                values.as_primitive_opt::<Float32Type>().ok_or_else(mismatch)?.values()[start..end].to_vec(),
            ),
        },
        Elem::F64 => {
            Cell::F64List(values.as_primitive_opt::<Float64Type>().ok_or_else(mismatch)?.values()[start..end].to_vec())
        }
        Elem::Str => Cell::StrList(
            (start..end)
                .map(|j| str_at(values, j).map(str::to_string).ok_or_else(mismatch))
                .collect::<Result<_, _>>()?,
        ),
        Elem::Int => Cell::IntList(
            (start..end)
                .map(|j| int_at(values, j))
                .collect::<Result<_, _>>()
                .map_err(|m| CellError {
                    message: m,
                    raw: json_at(a, i, true).unwrap_or(serde_json::Value::Null),
                })?,
        ),
    })
}

/// Any supported value as JSON (nested lists, maps and structs included). With `lossy`,
/// undecodable binary becomes lossy text (for dead-letter records) instead of an error.
fn json_at(a: &dyn Array, i: usize, lossy: bool) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    if a.is_null(i) || matches!(a.data_type(), DataType::Null) {
        return Ok(Value::Null);
    }
    if let Some(s) = scalar_kind(a.data_type()) {
        let c = match scalar(s, a, i) {
            Ok(c) => c,
            Err(CellError {
                raw: Value::String(s), ..
            }) if lossy => return Ok(Value::String(s)),
            Err(e) => return Err(e.message),
        };
        return Ok(c.to_json());
    }
    match a.data_type() {
        DataType::Dictionary(..) => {
            let d = a.as_any_dictionary_opt().ok_or_else(|| type_mismatch(a))?;
            let k = int_at(d.keys(), i)?;
            let k = usize::try_from(k)
                .ok()
                .filter(|k| *k < d.values().len())
                .ok_or("dictionary key out of range")?;
            json_at(d.values().as_ref(), k, lossy)
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let (values, start, end) = list_range(a, i).ok_or_else(|| type_mismatch(a))?;
            if end > values.len() || start > end {
                return Err("list offsets out of range".into());
            }
            (start..end)
                .map(|j| json_at(values.as_ref(), j, lossy))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        DataType::Map(..) => {
            let m = a.as_map_opt().ok_or_else(|| type_mismatch(a))?;
            let o = m.value_offsets();
            let mut out = serde_json::Map::new();
            for j in o[i] as usize..o[i + 1] as usize {
                let key = match json_at(m.keys().as_ref(), j, lossy)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, json_at(m.values().as_ref(), j, lossy)?);
            }
            Ok(Value::Object(out))
        }
        DataType::Struct(_) => {
            let s = a.as_struct_opt().ok_or_else(|| type_mismatch(a))?;
            let mut out = serde_json::Map::new();
            for (name, child) in s.column_names().into_iter().zip(s.columns()) {
                out.insert(name.to_string(), json_at(child.as_ref(), i, lossy)?);
            }
            Ok(Value::Object(out))
        }
        _ => Err(format!("values of type {} cannot be read", a.data_type())),
    }
}

#[cfg(test)]
mod tests;
