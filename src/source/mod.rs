//! Source readers: turn data files (CSV, JSONL, Parquet; plain, gzip or zstd) into a stream of
//! untyped rows, each with the position to resume from after it.
//!
//! Owns: file discovery (globs, sorted), format and compression detection, decoding, streaming
//! with bounded memory, and positions (byte offsets for CSV/JSONL, row group + row for Parquet).
//! Never: knows the collection's schema, coerces types, or decides whether a row is valid: a cell
//! is handed on as it was read. A row that cannot be read is reported with its file and row number,
//! never skipped and never a panic.
//!
//! Integrity (docs/input-integrity.md): no row is handed on from bytes that failed, or have not
//! yet passed, a check the format offers. A gzip or zstd file is decompressed once before its
//! first row (every gzip member's CRC-32 and ISIZE, every zstd frame's checksum when it has one),
//! and only the bytes so verified are read. A Parquet row group's page CRCs are checked before
//! its first row. A CSV quoted field still open at the end of the file (or longer than 1 MiB)
//! stops the file at the record that opened it; `.tsv` has no quoting. A resumed CSV/JSONL read
//! must start on a line, else the file changed in place since its checkpoint.
//!
//! Objects (`s3://`, `tos://`; `object`): the same readers over ranged GETs of the version listed
//! at the start of the run (`ReadOptions::object`); a path is then the object's URL. A compressed
//! object is streamed twice (the verification pass, then the rows), never held whole.
//!
//! Layout: this file holds the contract types shared with the rest of the crate, plus `expand`
//! (globs), `detect` (extensions), `open` (dispatch), decompression, verification of compressed
//! streams and byte counting.
//! `csv_reader`, `jsonl_reader` and `parquet_reader` hold one reader each (`csv_split` splits CSV
//! records for `csv_reader`); `object` the S3 client;
//! `numbers` the one-pass check of a flat JSON array of numbers (JSONL arrays, vector text).

// `ReadError` is the shared contract type: its `Row` variant carries the row's raw JSON and
// position by value, by design (row errors are expected and cheap to hand on).
#![allow(clippy::result_large_err)]

mod csv_reader;
mod csv_split;
mod dead_letter;
pub use dead_letter::DEAD_LETTER_OP_COLUMN;
mod jsonl_reader;
mod numbers;
pub use numbers::NumberArray;
pub(crate) use numbers::{compact, scan as scan_numbers};
pub mod object;
mod parquet_reader;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One cell as read from the source, before schema coercion.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent: SQL/Parquet null, JSON null, or an empty CSV cell.
    Null,
    /// Raw text: every CSV cell, and Parquet/JSON strings.
    Text(String),
    /// A JSON value from a JSONL row (objects, arrays, numbers, bools; strings come as `Text`).
    Json(serde_json::Value),
    /// A long JSON array from a JSONL row (at least [`LONG_ARRAY_BYTES`]), as its raw text: a
    /// vector is read straight from it, anything else is parsed when it is typed.
    JsonArray(ArrayText),
    Int(i64),
    /// A JSON integer literal beyond the range of u64, as written (JSON parsers read it as a
    /// float, which would lose its digits).
    BigInt(String),
    Float(f64),
    Float32(f32),
    Bool(bool),
    /// Parquet list<float32> / fixed_size_list<float32>.
    F32List(Vec<f32>),
    /// Parquet list<float64>.
    F64List(Vec<f64>),
    /// Parquet list<utf8>.
    StrList(Vec<String>),
    /// Parquet list<int8..int64>.
    IntList(Vec<i64>),
    /// Parquet map<utf8, float> or struct of floats: token → weight.
    Sparse(Vec<(String, f64)>),
    /// Parquet timestamp / date, already formatted as RFC 3339.
    Timestamp(String),
}

/// A [`Cell::JsonArray`]'s text, and what the reader's check of it found when it holds JSON
/// numbers only ([`NumberArray`], its `end` the text's length): a vector is then kept from it
/// without checking it again. Equal when the texts are (the rest follows from the text).
#[derive(Debug, Clone)]
pub struct ArrayText {
    text: Box<str>,
    numbers: Option<NumberArray>,
}

impl ArrayText {
    /// A text [`numbers::scan`] found to be `numbers`, from its first byte to its last.
    pub(crate) fn numbers(text: &str, numbers: NumberArray) -> ArrayText {
        ArrayText {
            text: text.into(),
            numbers: Some(numbers),
        }
    }

    /// What the reader found the text to be, when it checked it.
    pub fn checked_numbers(&self) -> Option<&NumberArray> {
        self.numbers.as_ref()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for ArrayText {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl std::ops::Deref for ArrayText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for ArrayText {
    fn from(text: &str) -> Self {
        ArrayText {
            text: text.into(),
            numbers: None,
        }
    }
}

impl From<String> for ArrayText {
    fn from(text: String) -> Self {
        ArrayText {
            text: text.into(),
            numbers: None,
        }
    }
}

/// Where to resume reading a file: the position just after a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// Byte offset into the (decompressed) CSV or JSONL stream, plus the data rows before it,
    /// and the line it lies on (1 + the line feeds before it), so that a resumed read still names
    /// lines. `None` in checkpoints written before the line was kept: a resumed read then names
    /// the row and the byte.
    Offset {
        byte: u64,
        rows: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u64>,
    },
    /// Parquet: next row `row` of row group `row_group`; `rows` data rows before it in the file.
    RowGroup { row_group: usize, row: u64, rows: u64 },
}

impl Position {
    /// The number of data rows before this position.
    pub fn rows(&self) -> u64 {
        match self {
            Position::Offset { rows, .. } | Position::RowGroup { rows, .. } => *rows,
        }
    }
}

/// One row read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// 1-based data row number within the file (CSV: records after the header; JSONL: non-blank
    /// lines; Parquet: rows).
    pub row: u64,
    /// Column name → cell, in source column order. Names are shared between rows.
    pub cells: Vec<(Arc<str>, Cell)>,
    /// Where reading resumes after this row.
    pub end: Position,
}

/// A failure to read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// One row is unreadable (bad CSV record, invalid UTF-8, bad JSON line): it goes to the
    /// dead-letter file and reading continues after it.
    #[error("{file}: row {row}: {message}")]
    Row {
        file: PathBuf,
        row: u64,
        end: Position,
        /// The row as far as it could be recovered (lossy text for undecodable bytes).
        raw: serde_json::Value,
        message: String,
    },
    /// The file cannot be read any further (missing, truncated Parquet, corrupt gzip): the run stops.
    #[error("{file}: {message}")]
    File { file: PathBuf, message: String },
}

/// File format, from the extension (before any `.gz` / `.zst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
    /// vikingsync's own dead-letter file: each line's `record` is the row and `op` its op, so
    /// fixed rows can be sent again. Only by `format = "dead-letter"`, never by extension.
    #[serde(rename = "dead-letter")]
    DeadLetter,
}

/// Stream compression, from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Reader options that come from the source's config.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// CSV field delimiter.
    pub delimiter: u8,
    /// Override of the format detected from the extension.
    pub format: Option<Format>,
    /// Plain CSV/JSONL only: read up to the file's last line end, never a last line still being
    /// written (`serve` follows growing files this way).
    pub complete_lines: bool,
    /// The object this file is (`s3://` / `tos://` sources), as listed: reads are ranged GETs of
    /// exactly this version. `None`: a local file.
    pub object: Option<object::ObjectFile>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            delimiter: b',',
            format: None,
            complete_lines: false,
            object: None,
        }
    }
}

/// A stream of rows from one file. Runs on a blocking thread.
pub trait RowReader: Send {
    /// The next row, a row-level error (reading goes on), or a file-level error (the last item).
    fn next_row(&mut self) -> Option<Result<RawRow, ReadError>>;
    /// Bytes of the file consumed so far (compressed bytes for compressed files), for progress.
    fn bytes_read(&self) -> u64;
}

impl Cell {
    /// This cell as JSON, for dead-letter records. `f32` values keep their shortest decimal form
    /// (`0.1f32` → `0.1`, never `0.10000000149011612`); NaN and ±infinity, which JSON cannot
    /// hold, become the strings `"NaN"`, `"inf"` and `"-inf"`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cell::Null => Value::Null,
            Cell::Text(s) | Cell::Timestamp(s) => Value::String(s.clone()),
            Cell::Json(v) => v.clone(),
            Cell::JsonArray(t) => json_array_value(t),
            Cell::Int(i) => Value::from(*i),
            // The digits as written: a JSON number would lose them.
            Cell::BigInt(s) => Value::String(s.clone()),
            Cell::Float(f) => f64_json(*f),
            Cell::Float32(f) => f32_json(*f),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::F32List(v) => Value::Array(v.iter().map(|x| f32_json(*x)).collect()),
            Cell::F64List(v) => Value::Array(v.iter().map(|x| f64_json(*x)).collect()),
            Cell::StrList(v) => Value::Array(v.iter().map(|s| Value::String(s.clone())).collect()),
            Cell::IntList(v) => Value::Array(v.iter().map(|i| Value::from(*i)).collect()),
            Cell::Sparse(v) => Value::Object(v.iter().map(|(k, w)| (k.clone(), f64_json(*w))).collect()),
        }
    }
}

impl RawRow {
    /// The row as a JSON object (column → value, in column order), for dead-letter records.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.cells
                .iter()
                .map(|(name, cell)| (name.to_string(), cell.to_json()))
                .collect(),
        )
    }
}

/// A JSONL array at least this long (in bytes) is kept as text ([`Cell::JsonArray`]): parsing a
/// 768-dim vector into JSON values, then into `f32`s, then formatting it again was most of the
/// CPU of a JSONL row. Shorter arrays are parsed as they always were.
pub const LONG_ARRAY_BYTES: usize = 256;

/// The value of a [`Cell::JsonArray`]'s text. The reader took the text from a parsed line, so it
/// is valid JSON; if it ever were not, it is kept as a string rather than lost.
pub fn json_array_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// An `f64` as JSON; non-finite values, which JSON cannot hold, as strings.
pub(crate) fn f64_json(x: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => serde_json::Value::Number(n),
        None => serde_json::Value::String(non_finite_name(x).to_string()),
    }
}

/// An `f32` as JSON with its shortest decimal form (see [`f32_to_f64_shortest`]).
pub(crate) fn f32_json(x: f32) -> serde_json::Value {
    f64_json(f32_to_f64_shortest(x))
}

fn non_finite_name(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Widen an `f32` to the `f64` nearest to its shortest decimal form, so that `0.1f32` becomes
/// `0.1f64` (which prints as `0.1`) rather than `0.10000000149011612`. Narrowing the result back
/// to `f32` gives the original value. Non-finite values are widened unchanged.
pub fn f32_to_f64_shortest(x: f32) -> f64 {
    use std::io::Write;
    if !x.is_finite() {
        return f64::from(x);
    }
    // Rust's float `Display` prints the shortest string that round-trips, without an exponent:
    // at most 48 bytes for an f32 (the smallest subnormal, with a sign).
    let mut buf = [0u8; 64];
    let mut cursor = &mut buf[..];
    if write!(cursor, "{x}").is_err() {
        return f64::from(x);
    }
    let remaining = cursor.len();
    let written = buf.len() - remaining;
    std::str::from_utf8(&buf[..written])
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::from(x))
}

/// Expand a source's `path` setting into the files it names, in sorted order.
///
/// `pattern` is a file path or a glob (`*`, `?`, `[..]`, `**`); a relative one is resolved against
/// `base_dir` (the config file's directory); an existing file is taken literally even if its
/// name contains glob characters. A glob that matches no file, or a plain path that
/// does not exist or is not a regular file, is an error. Globs match regular files only, and
/// wildcards skip hidden names (a leading `.` must be written out), so `*.csv` does not pick up
/// an editor's or uploader's `.part.csv` temporary.
pub fn expand(pattern: &str, base_dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    expand_with(pattern, base_dir, false)
}

/// [`expand`], but a pattern that matches nothing (or a plain path that does not exist yet) is
/// an empty list: `serve` waits for files to arrive.
pub fn expand_allow_empty(pattern: &str, base_dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    expand_with(pattern, base_dir, true)
}

/// The directory a pattern's files live in: its path up to the first component with a glob
/// character (or the plain path's parent), joined to `base_dir` when relative.
pub fn watch_dir(pattern: &str, base_dir: &Path) -> PathBuf {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base_dir.join(pattern)
    };
    let mut dir = PathBuf::new();
    let mut globbed = false;
    for c in full.components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            globbed = true;
            break;
        }
        dir.push(c);
    }
    if globbed {
        dir
    } else {
        full.parent().map(Path::to_path_buf).unwrap_or(dir)
    }
}

fn expand_with(pattern: &str, base_dir: &Path, allow_empty: bool) -> Result<Vec<PathBuf>, ReadError> {
    let as_path = Path::new(pattern);
    let full = if as_path.is_absolute() {
        as_path.to_path_buf()
    } else {
        base_dir.join(as_path)
    };
    // A file whose name happens to contain glob characters is taken literally.
    if !pattern.contains(['*', '?', '[']) || full.is_file() {
        return match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => Ok(vec![full]),
            Ok(_) => Err(ReadError::File {
                file: full,
                message: "not a regular file".into(),
            }),
            Err(e) if allow_empty && e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ReadError::File {
                file: full,
                message: format!("cannot open: {e}"),
            }),
        };
    }
    let full_pattern = if as_path.is_absolute() {
        pattern.to_string()
    } else {
        let Some(base) = base_dir.to_str() else {
            return Err(ReadError::File {
                file: base_dir.to_path_buf(),
                message: format!("directory name is not valid UTF-8, cannot expand glob {pattern:?}"),
            });
        };
        let escaped = glob::Pattern::escape(base);
        match Path::new(&escaped).join(pattern).to_str() {
            Some(s) => s.to_string(),
            None => pattern.to_string(),
        }
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&full_pattern, options).map_err(|e| ReadError::File {
        file: PathBuf::from(pattern),
        message: format!("invalid glob pattern: {e}"),
    })?;
    let mut files = Vec::new();
    for entry in paths {
        match entry {
            Ok(p) => {
                if p.is_file() {
                    files.push(p);
                }
            }
            Err(e) => {
                return Err(ReadError::File {
                    file: e.path().to_path_buf(),
                    message: format!("cannot read while expanding {pattern:?}: {}", e.error()),
                });
            }
        }
    }
    if files.is_empty() && !allow_empty {
        return Err(ReadError::File {
            file: PathBuf::from(pattern),
            message: format!("the pattern matches no files (looked for {full_pattern})"),
        });
    }
    files.sort();
    files.dedup();
    Ok(files)
}

const SUPPORTED_EXTENSIONS: &str = ".csv, .tsv, .jsonl, .ndjson, .json (one object per line), \
     .parquet or .pq, optionally followed by .gz, .zst or .zstd (not for Parquet)";

/// The format and compression of a file, from its extension (case-insensitive):
/// `.csv`/`.tsv` → CSV, `.jsonl`/`.ndjson`/`.json` → JSONL, `.parquet`/`.pq` → Parquet, each
/// optionally followed by `.gz` (gzip) or `.zst`/`.zstd` (zstd). `override_format` replaces the
/// format from the extension (the compression suffix still counts). Compressed Parquet is an
/// error: Parquet compresses its pages itself and needs random access.
pub fn detect(path: &Path, override_format: Option<Format>) -> Result<(Format, Compression), ReadError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let (stem, compression) = split_compression(&name);
    let format = match override_format {
        Some(f) => f,
        None => match extension(stem) {
            Some("csv" | "tsv") => Format::Csv,
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("parquet" | "pq") => Format::Parquet,
            _ => {
                return Err(ReadError::File {
                    file: path.to_path_buf(),
                    message: format!(
                        "unknown file type; supported extensions: {SUPPORTED_EXTENSIONS}; \
                         or set the source's format"
                    ),
                });
            }
        },
    };
    if format == Format::Parquet && compression != Compression::None {
        return Err(ReadError::File {
            file: path.to_path_buf(),
            message: "compressed Parquet is not supported: Parquet compresses its pages itself \
                      and must be read with random access; decompress the file first"
                .into(),
        });
    }
    Ok((format, compression))
}

fn split_compression(name: &str) -> (&str, Compression) {
    match extension(name) {
        Some("gz") => (&name[..name.len() - 3], Compression::Gzip),
        Some("zst") => (&name[..name.len() - 4], Compression::Zstd),
        Some("zstd") => (&name[..name.len() - 5], Compression::Zstd),
        _ => (name, Compression::None),
    }
}

fn extension(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(_, ext)| ext)
}

/// Whether a CSV file is tab-separated by name (`.tsv`, `.tsv.gz`, ...).
fn is_tsv(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    extension(split_compression(&name).0) == Some("tsv")
}

/// Open a file for reading, from the start (`start = None`) or from a position returned in an
/// earlier row's `end` (then exactly the rows after that position are read).
///
/// CSV and JSONL positions are byte offsets into the decompressed stream: plain files seek to
/// them, compressed files are decompressed and the bytes before them skipped. Parquet positions
/// select the row group and the row within it. A position past the end of the file, or of the
/// wrong kind for the format, is a `ReadError::File`: the file was truncated or replaced.
///
/// For CSV the delimiter is `opts.delimiter`, except that a `.tsv` file with the default `,`
/// uses a tab; `.tsv` files have no quoting (`"` is an ordinary character).
///
/// Integrity (see docs/input-integrity.md): a gzip or zstd file is decompressed once to check its
/// checksums before any row is read, and only the bytes so verified are read; Parquet row groups
/// have their page checksums checked before any of their rows is handed out; a CSV quoted field
/// that never closes stops the file; a resumed CSV/JSONL read must start on a line.
pub fn open(path: &Path, opts: &ReadOptions, start: Option<Position>) -> Result<Box<dyn RowReader>, ReadError> {
    let (format, compression) = detect(path, opts.format)?;
    let object = opts.object.as_ref();
    let limit = match (format, compression) {
        // An object does not grow: it is replaced whole (a new ETag).
        _ if object.is_some() => None,
        (Format::Jsonl, Compression::None) if opts.complete_lines => Some(complete_lines_end(path)?),
        (Format::Csv, Compression::None) if opts.complete_lines && !is_tsv(path) => {
            let from = match start {
                Some(Position::Offset { byte, .. }) => byte,
                _ => 0,
            };
            Some(complete_records_end(path, from)?)
        }
        (Format::Csv, Compression::None) if opts.complete_lines => Some(complete_lines_end(path)?),
        _ => None,
    };
    let wrong_kind = |expected: &str| ReadError::File {
        file: path.to_path_buf(),
        message: format!(
            "the checkpoint position {start:?} does not fit a {format:?} file (expected {expected}); \
             was the file replaced by one of another format?"
        ),
    };
    match format {
        Format::DeadLetter => {
            let start = match start {
                None => None,
                Some(Position::Offset { byte, rows, line }) => Some((byte, rows, line)),
                Some(Position::RowGroup { .. }) => return Err(wrong_kind("a byte offset")),
            };
            let inner = jsonl_reader::JsonlReader::open(path, object, compression, start, None)?;
            Ok(Box::new(dead_letter::DeadLetterReader::new(path, inner)))
        }
        Format::Csv | Format::Jsonl => {
            let start = match start {
                None => None,
                Some(Position::Offset { byte, rows, line }) => Some((byte, rows, line)),
                Some(Position::RowGroup { .. }) => return Err(wrong_kind("a byte offset")),
            };
            if format == Format::Csv {
                let delimiter = if opts.delimiter == b',' && is_tsv(path) {
                    b'\t'
                } else {
                    opts.delimiter
                };
                // IANA text/tab-separated-values has no quoting: in a .tsv file `"` is a character.
                let quoting = !is_tsv(path);
                Ok(Box::new(csv_reader::CsvReader::open(
                    path,
                    object,
                    compression,
                    delimiter,
                    quoting,
                    start,
                    limit,
                )?))
            } else {
                Ok(Box::new(jsonl_reader::JsonlReader::open(
                    path,
                    object,
                    compression,
                    start,
                    limit,
                )?))
            }
        }
        Format::Parquet => {
            let start = match start {
                None => None,
                Some(Position::RowGroup { row_group, row, rows }) => Some((row_group, row, rows)),
                Some(Position::Offset { .. }) => return Err(wrong_kind("a row group position")),
            };
            Ok(Box::new(parquet_reader::ParquetReader::open(path, object, start)?))
        }
    }
}

/// Bytes of the raw (possibly compressed) file consumed so far, shared with the reader that
/// counts them.
type ByteCounter = Arc<AtomicU64>;

/// Counts the bytes read from the raw file.
struct Counting<R> {
    inner: R,
    count: ByteCounter,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decompressed byte stream positioned `skip` bytes into the decompressed data, the counter of
/// raw bytes consumed, and the number of raw bytes that the stream releases.
///
/// Compressed files are verified first (see [`verify_compressed`]) unless `verified` gives the
/// raw length an earlier call of the same reader verified; the stream then stops at that length,
/// so bytes appended after the verification are never released. For a plain file, `verified` is
/// where the stream stops (the end of its complete lines, or its length at the first open). A
/// `skip` > 0 must fall on a line start (see [`check_line_start`]).
fn open_stream(
    path: &Path,
    object: Option<&object::ObjectFile>,
    compression: Compression,
    skip: u64,
    verified: Option<u64>,
) -> Result<(Box<dyn Read + Send>, ByteCounter, u64), ReadError> {
    if let Some(obj) = object {
        return open_object_stream(path, obj, compression, skip, verified);
    }
    let mut file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| file_error(path, format!("cannot stat: {e}")))?
        .len();
    let count: ByteCounter = Arc::new(AtomicU64::new(0));
    if compression == Compression::None {
        let len = verified.map_or(len, |v| v.min(len));
        let mut head = Vec::new();
        if skip > 0 {
            if len < skip {
                return Err(past_end(path, skip, len));
            }
            file.seek(SeekFrom::Start(skip - 1))
                .map_err(|e| file_error(path, format!("cannot seek: {e}")))?;
            count.store(skip - 1, Ordering::Relaxed);
            head = read_up_to(&mut file, 2).map_err(|e| stream_error(path, compression, &e))?;
            count.fetch_add(head.len() as u64, Ordering::Relaxed);
            check_line_start(path, skip, &head)?;
            head.remove(0);
            head.truncate(usize::try_from(len - skip).unwrap_or(usize::MAX));
            count.store(skip, Ordering::Relaxed);
        }
        let rest = len.saturating_sub(skip + head.len() as u64);
        let stream = Counting {
            inner: file.take(rest),
            count: count.clone(),
        };
        return Ok((Box::new(io::Cursor::new(head).chain(stream)), count, len));
    }
    let verified = match verified {
        Some(v) => v,
        None => verify_compressed(path, None, compression)?,
    };
    if verified == 0 {
        // A zero-byte file (perhaps just created): no rows, as for an empty plain file.
        if skip > 0 {
            return Err(past_end(path, skip, 0));
        }
        return Ok((Box::new(io::empty()), count, 0));
    }
    decompressed(path, Box::new(file.take(verified)), count, compression, skip, verified)
}

/// The decompressed stream of `raw` (its first `verified` bytes, already verified), positioned
/// `skip` bytes in (on a line start).
fn decompressed(
    path: &Path,
    raw: Box<dyn Read + Send>,
    count: ByteCounter,
    compression: Compression,
    skip: u64,
    verified: u64,
) -> Result<(Box<dyn Read + Send>, ByteCounter, u64), ReadError> {
    let raw = Counting {
        inner: raw,
        count: count.clone(),
    };
    let mut stream: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        _ => Box::new(zstd::stream::read::Decoder::new(raw).map_err(|e| stream_error(path, compression, &e))?),
    };
    if skip > 0 {
        let skipped = io::copy(&mut (&mut stream).take(skip - 1), &mut io::sink())
            .map_err(|e| stream_error(path, compression, &e))?;
        if skipped < skip - 1 {
            return Err(past_end(path, skip, skipped));
        }
        let mut head = read_up_to(&mut stream, 2).map_err(|e| stream_error(path, compression, &e))?;
        if head.is_empty() {
            return Err(past_end(path, skip, skipped));
        }
        check_line_start(path, skip, &head)?;
        head.remove(0);
        stream = Box::new(io::Cursor::new(head).chain(stream));
    }
    Ok((stream, count, verified))
}

/// [`open_stream`] for an object: the same contract, with ranged GETs instead of seeks.
fn open_object_stream(
    path: &Path,
    obj: &object::ObjectFile,
    compression: Compression,
    skip: u64,
    verified: Option<u64>,
) -> Result<(Box<dyn Read + Send>, ByteCounter, u64), ReadError> {
    let count: ByteCounter = Arc::new(AtomicU64::new(0));
    if compression == Compression::None {
        let len = verified.map_or(obj.size, |v| v.min(obj.size));
        let mut head = Vec::new();
        if skip > 0 {
            if len < skip {
                return Err(past_end(path, skip, len));
            }
            head = obj
                .get_range(skip - 1, (skip + 1).min(len))
                .map_err(|e| stream_error(path, compression, &e))?
                .to_vec();
            check_line_start(path, skip, &head)?;
            head.remove(0);
            count.store(skip + head.len() as u64, Ordering::Relaxed);
        }
        let stream = Counting {
            inner: obj.reader(skip + head.len() as u64, len),
            count: count.clone(),
        };
        return Ok((Box::new(io::Cursor::new(head).chain(stream)), count, len));
    }
    let verified = match verified {
        Some(v) => v,
        None => verify_compressed(path, Some(obj), compression)?,
    };
    if verified == 0 {
        if skip > 0 {
            return Err(past_end(path, skip, 0));
        }
        return Ok((Box::new(io::empty()), count, 0));
    }
    decompressed(
        path,
        Box::new(obj.reader(0, verified)),
        count,
        compression,
        skip,
        verified,
    )
}

/// Where the complete lines of a plain file end: just after its last `\n` (0 if it has none).
pub(crate) fn complete_lines_end(path: &Path) -> Result<u64, ReadError> {
    let mut file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| file_error(path, format!("cannot stat: {e}")))?
        .len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(chunk))
            .map_err(|e| file_error(path, format!("cannot read: {e}")))?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Where the complete records of a quoted CSV file end: just after its last `\n` outside a
/// quoted field, scanning from `from` (a record start). A line end inside a quoted field that is
/// still being written is not a record end.
pub(crate) fn complete_records_end(path: &Path, from: u64) -> Result<u64, ReadError> {
    let mut file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| file_error(path, format!("cannot seek: {e}")))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    let mut quoted = false;
    let mut end = from;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(file_error(path, format!("cannot read: {e}"))),
        };
        for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
            if buf[i] == b'"' {
                // `""` inside a quoted field toggles twice: the state is right either way.
                quoted = !quoted;
            } else if !quoted {
                end = at + i as u64 + 1;
            }
        }
        at += n as u64;
    }
    Ok(end)
}

/// Up to `n` bytes from `r` (fewer only at its end).
fn read_up_to(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// A resume at byte `skip` of a CSV/JSONL stream must start a line: `head` holds the byte before
/// `skip` and, unless the stream ends there, the byte at it. Positions are taken just after a
/// line end, or at the end of a last line that had none (then the stream ends there, or a later
/// append starts with a line end). Anything else means the bytes before the position changed
/// in place since the checkpoint: reading on would start in the middle of a line.
fn check_line_start(path: &Path, skip: u64, head: &[u8]) -> Result<(), ReadError> {
    let is_eol = |b: &u8| *b == b'\n' || *b == b'\r';
    let ok = match head {
        // The position is the end of the stream: nothing is read after it.
        [_] => true,
        [before, at] => is_eol(before) || is_eol(at),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(file_error(
        path,
        format!(
            "cannot resume at byte {skip}: it is not the start of a line, so the file was changed in \
             place since its checkpoint (same size and same first and last blocks, other bytes in \
             between) and the rows already counted no longer match its content. Restore the file, \
             or run again with --start-over to set the state aside and read every file from the start"
        ),
    ))
}

/// Decompress a whole gzip or zstd file into nothing, so that its checksums are checked before
/// any of its rows is released; returns the number of raw bytes verified (the file's length at
/// the time). gzip: every member's CRC-32 and ISIZE. zstd: every frame's content checksum when
/// the frame has one (frames written without a checksum cannot be verified).
///
/// An object is streamed for this pass (bounded ranged GETs, nothing kept), then streamed again
/// for the rows: twice the transfer, never the whole object in memory or on disk.
fn verify_compressed(
    path: &Path,
    object: Option<&object::ObjectFile>,
    compression: Compression,
) -> Result<u64, ReadError> {
    let (input, len): (Box<dyn Read + Send>, u64) = match object {
        Some(obj) => (Box::new(obj.reader(0, obj.size)), obj.size),
        None => {
            let file = File::open(path).map_err(|e| file_error(path, format!("cannot open: {e}")))?;
            let len = file
                .metadata()
                .map_err(|e| file_error(path, format!("cannot stat: {e}")))?
                .len();
            (Box::new(file.take(len)), len)
        }
    };
    let count: ByteCounter = Arc::new(AtomicU64::new(0));
    let raw = Counting {
        inner: input,
        count: count.clone(),
    };
    let mut input = io::BufReader::with_capacity(64 * 1024, raw);
    match compression {
        Compression::None => {}
        Compression::Gzip => {
            let mut member = 0u64;
            loop {
                let at_end = input
                    .fill_buf()
                    .map_err(|e| stream_error(path, compression, &e))?
                    .is_empty();
                if at_end {
                    break;
                }
                let start = count.load(Ordering::Relaxed) - input.buffer().len() as u64;
                member += 1;
                let mut decoder = flate2::bufread::GzDecoder::new(&mut input);
                if let Err(e) = io::copy(&mut decoder, &mut io::sink()) {
                    return Err(file_error(
                        path,
                        format!(
                            "gzip member {member} (starting at compressed byte {start}) is corrupt or \
                             truncated: {e}; no row of the file was used"
                        ),
                    ));
                }
            }
        }
        Compression::Zstd => {
            let result = zstd::stream::read::Decoder::with_buffer(&mut input)
                .and_then(|mut d| io::copy(&mut d, &mut io::sink()));
            if let Err(e) = result {
                let at = count.load(Ordering::Relaxed);
                return Err(file_error(
                    path,
                    format!(
                        "the zstd stream is corrupt or truncated (within the first {at} compressed \
                         bytes): {e}; no row of the file was used"
                    ),
                ));
            }
        }
    }
    Ok(len)
}

fn file_error(path: &Path, message: String) -> ReadError {
    ReadError::File {
        file: path.to_path_buf(),
        message,
    }
}

fn past_end(path: &Path, offset: u64, len: u64) -> ReadError {
    file_error(
        path,
        format!(
            "cannot resume at byte {offset}: the (decompressed) file has only {len} bytes; \
             was it truncated or replaced?"
        ),
    )
}

/// A read error in the (decompressed) stream: fatal for the file.
fn stream_error(path: &Path, compression: Compression, e: &io::Error) -> ReadError {
    let message = match compression {
        Compression::None => format!("read error: {e}"),
        Compression::Gzip => format!("cannot read the gzip stream (corrupt or truncated?): {e}"),
        Compression::Zstd => format!("cannot read the zstd stream (corrupt or truncated?): {e}"),
    };
    file_error(path, message)
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Drop a UTF-8 byte order mark from the start of `stream`; returns the stream and the number
/// of bytes dropped (0 or 3).
fn strip_bom(
    path: &Path,
    compression: Compression,
    mut stream: Box<dyn Read + Send>,
) -> Result<(Box<dyn Read + Send>, u64), ReadError> {
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(path, compression, &e)),
        }
    }
    if &head[..got] == UTF8_BOM {
        Ok((stream, 3))
    } else {
        Ok((Box::new(io::Cursor::new(head[..got].to_vec()).chain(stream)), 0))
    }
}

/// Interns column names so that rows share them; bounded so that files with ever-new keys
/// cannot grow it without limit.
#[derive(Default)]
struct Names {
    known: std::collections::HashSet<Arc<str>>,
}

impl Names {
    const MAX: usize = 4096;

    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.known.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        if self.known.len() < Self::MAX {
            self.known.insert(n.clone());
        }
        n
    }
}
