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
//! Input: a local file, or an object (`super::object::ObjectFile`) read with ranged GETs: the
//! footer with one ranged read of its last 8 bytes and one of the metadata, then the pages of a
//! row group's column chunks through windows of 1 MiB (one GET per window, at most 64 MiB of
//! windows kept), as the `parquet` crate asks through its sync `ChunkReader` (both behind
//! [`Chunks`]). A resume reads nothing before its row group.
//!
//! Page checksums: before the first row of a row group is handed out, every page of every column
//! chunk of that group is read as stored (neither decompressed nor decoded), which checks the
//! CRC-32 of each page that carries one (the `parquet` crate's `crc` feature; the checksum covers
//! the stored bytes). A page that fails, or cannot be read, stops the file with a
//! `ReadError::File` naming the row group and the column, and no row of that group is handed out.
//! Pages written without a checksum (the Rust writer's, and pyarrow's default) cannot be checked:
//! one that fails to decompress or decode stops the file when its batch is decoded, and no row of
//! that batch is handed out.
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

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

use super::object::ObjectFile;
use super::{Cell, Position, RawRow, ReadError, RowReader};

/// Where a Parquet file's bytes come from: a local file or an object (ranged GETs).
enum Chunks {
    Local(File),
    Object(Arc<ObjectChunks>),
}

/// Windows are a quarter of a sequential read's chunk: 1 MiB (more when a page is larger).
const WINDOW_PER_CHUNK: u64 = 4;
/// The windows kept: the oldest go first beyond this (a row group's columns are read side by
/// side, so each column's current window should stay).
const WINDOWS_MAX_BYTES: usize = 64 * 1024 * 1024;

/// An object read through windows of 1 MiB (a quarter of `ObjectFile::chunk_bytes`): the `parquet` crate asks for each page
/// header with `get_read` and for its body with `get_bytes`, so a page costs one GET per window
/// instead of two requests. The windows are shared by the clones of the reader (one per row
/// group, and the page checker).
struct ObjectChunks {
    file: ObjectFile,
    windows: std::sync::Mutex<std::collections::VecDeque<(u64, bytes::Bytes)>>,
}

impl ObjectChunks {
    /// The bytes from `start` to the end of the window holding `start..start + min_len` (fetched
    /// if no window holds it).
    fn from(&self, start: u64, min_len: u64) -> std::io::Result<bytes::Bytes> {
        let end = start.saturating_add(min_len);
        {
            let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            for (at, bytes) in windows.iter() {
                let window_end = at + bytes.len() as u64;
                if *at <= start && end <= window_end {
                    let from = usize::try_from(start - at).unwrap_or(usize::MAX);
                    return Ok(bytes.slice(from..));
                }
            }
        }
        let window = (self.file.chunk_bytes() / WINDOW_PER_CHUNK).max(1);
        let fetch_end = start.saturating_add(window).min(self.file.size).max(end);
        let bytes = self.file.get_range(start, fetch_end)?;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.push_back((start, bytes.clone()));
        let mut total: usize = windows.iter().map(|(_, b)| b.len()).sum();
        while total > WINDOWS_MAX_BYTES && windows.len() > 1 {
            if let Some((_, old)) = windows.pop_front() {
                total -= old.len();
            }
        }
        Ok(bytes)
    }
}

impl Chunks {
    fn object(file: ObjectFile) -> Chunks {
        Chunks::Object(Arc::new(ObjectChunks {
            file,
            windows: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }))
    }

    fn try_clone(&self) -> std::io::Result<Chunks> {
        Ok(match self {
            Chunks::Local(f) => Chunks::Local(f.try_clone()?),
            Chunks::Object(o) => Chunks::Object(o.clone()),
        })
    }
}

impl parquet::file::reader::Length for Chunks {
    fn len(&self) -> u64 {
        match self {
            Chunks::Local(f) => f.len(),
            Chunks::Object(o) => o.file.size,
        }
    }
}

impl ChunkReader for Chunks {
    type T = Box<dyn std::io::Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(match self {
            Chunks::Local(f) => Box::new(f.get_read(start)?),
            Chunks::Object(o) => {
                if start >= o.file.size {
                    return Ok(Box::new(std::io::empty()));
                }
                let head = o
                    .from(start, 1)
                    .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
                let rest = start + head.len() as u64;
                // Past the window (a header longer than what is left of it): a stream from there.
                Box::new(std::io::Read::chain(
                    std::io::Cursor::new(head),
                    o.file.reader(rest, o.file.size),
                ))
            }
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        match self {
            Chunks::Local(f) => f.get_bytes(start, length),
            Chunks::Object(o) => {
                let end = start.saturating_add(length as u64);
                if end > o.file.size {
                    return Err(parquet::errors::ParquetError::EOF(format!(
                        "bytes {start}..{end} are past the end of the object ({} bytes)",
                        o.file.size
                    )));
                }
                let bytes = o
                    .from(start, length as u64)
                    .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
                Ok(bytes.slice(..length))
            }
        }
    }
}

/// Rows per record batch. A batch's arrays are allocated afresh for each batch (a 768-dim f32
/// vector column is 3 MiB at 1,024 rows, plus its levels): 256 rows keep them small enough to be
/// reused from the heap, and peak RSS fell by 8-16 MiB (bench/cost.py at dim 768, medians:
/// 81 -> 72 MiB with 2,000-row groups, 94 -> 80 MiB with one 100k-row group) at no cost in CPU
/// per row.
const BATCH_SIZE: usize = 256;

struct Column {
    name: Arc<str>,
    kind: Kind,
}

pub(super) struct ParquetReader {
    path: PathBuf,
    file: Chunks,
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
    pub(super) fn open(
        path: &Path,
        object: Option<&ObjectFile>,
        start: Option<(usize, u64, u64)>,
    ) -> Result<Self, ReadError> {
        let file = match object {
            Some(o) => Chunks::object(o.clone()),
            None => Chunks::Local(File::open(path).map_err(|e| super::file_error(path, format!("cannot open: {e}")))?),
        };
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

    /// Read every page of row group `g`, one page at a time, without decompressing it: checks
    /// each page's CRC-32 (computed over the page as stored) where the writer stored one, and that
    /// every page header and body can be read at all. Decompressing here as well would run the
    /// codec twice per page (the decode does it again); a page without a checksum that does not
    /// decompress fails when it is decoded, and no row of its batch is handed out.
    fn check_group(&self, g: usize) -> Result<(), String> {
        let metadata = self.meta.metadata();
        let group = metadata.row_group(g);
        let file = Arc::new(self.file.try_clone().map_err(|e| format!("cannot reopen: {e}"))?);
        let total_rows = usize::try_from(group.num_rows()).unwrap_or(0);
        for column in group.columns() {
            let name = column.column_path().string();
            // The page reader decompresses with the column chunk's codec: told there is none, it
            // hands each page on as stored, after its CRC check.
            let column = &column
                .clone()
                .into_builder()
                .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                .build()
                .map_err(|e| format!("row group {g}, column {name:?}: {e}"))?;
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

mod cells;
use cells::*;

#[cfg(test)]
mod tests;
