//! CSV reader: a header row, then one `RawRow` per record, every non-empty cell as `Cell::Text`.
//!
//! Owns: header handling (required; a UTF-8 byte order mark is dropped), field-count checks
//! against the header, UTF-8 checks per cell, quoted fields that never close, and byte-offset
//! positions in the decompressed stream (the record splitter, `csv_split`, counts from where it
//! started; the base is added here). Field counts are checked here, against the header: the
//! splitter takes any number of fields.
//! Never: interprets a cell (no numbers, no trimming), reads more than one record at a time, or
//! stops the file for a bad record: a record whose field count differs from the header's, or a
//! cell that is not UTF-8, is a `ReadError::Row` and reading goes on.
//!
//! Quoting: `.csv` files follow RFC 4180 (`"` opens a quoted field at the start of a field, `""`
//! inside it is a quote). A quoted field still open at the end of the file, or longer than
//! `MAX_QUOTED_FIELD` bytes, stops the file with a `ReadError::File` naming the row and the line
//! (after a resume, the row and the byte) where the quote opened: the csv crate would end such a field silently at
//! the end of the file and swallow every line after the quote into one cell. The record holding
//! the quote is never yielded. `.tsv` files (IANA text/tab-separated-values) have no quoting at
//! all: a `"` is an ordinary character, and a field cannot contain a tab or a line break.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::csv_split::Splitter;
use super::{ByteCounter, Cell, Compression, Position, RawRow, ReadError, RowReader};

pub(super) struct CsvReader {
    path: PathBuf,
    compression: Compression,
    /// `None` for an empty file (no header, no rows).
    rdr: Option<Splitter<QuoteTracker>>,
    headers: Vec<Arc<str>>,
    /// Offset in the decompressed stream at which `rdr` started.
    base: u64,
    /// Data rows read so far, including those before the resume position.
    rows: u64,
    /// Whether the splitter's line numbers are the file's (false after a seek).
    lines_known: bool,
    counter: ByteCounter,
    done: bool,
}

/// The longest quoted field accepted, in bytes: a longer one is taken for a quote that was never
/// closed (a later stray quote would otherwise close it and swallow the lines in between).
pub(super) const MAX_QUOTED_FIELD: u64 = 1024 * 1024;

/// A quoted field that never closes, found by [`QuoteTracker`].
#[derive(Debug)]
struct OpenQuote {
    /// Offset in the decompressed stream of the opening quote.
    byte: u64,
    /// Its line, when the tracker started at the start of the file.
    line: Option<u64>,
    /// Whether the file ended inside the field (else it grew past `MAX_QUOTED_FIELD`).
    at_eof: bool,
}

impl std::fmt::Display for OpenQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.line {
            Some(line) => format!("line {line} (byte {})", self.byte),
            None => format!("byte {}", self.byte),
        };
        if self.at_eof {
            write!(
                f,
                "a quoted field opened on {place} is still open at the end of the file: an unmatched \
                 '\"' (quote the whole field and double any quote inside it, or fix the stray quote)"
            )
        } else {
            write!(
                f,
                "a quoted field opened on {place} is longer than {MAX_QUOTED_FIELD} bytes: taken for \
                 an unmatched '\"' (quote the whole field and double any quote inside it, or fix the \
                 stray quote)"
            )
        }
    }
}

impl std::error::Error for OpenQuote {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QState {
    /// At the start of a field (or record).
    StartField,
    /// In an unquoted field: a quote is an ordinary character.
    InField,
    /// In a quoted field.
    InQuoted,
    /// Just after a quote inside a quoted field: the field's end, or the first of `""`.
    QuoteInQuoted,
}

/// Follows the csv crate's quoting rules (RFC 4180, `""` as an escaped quote, `\r`, `\n` or
/// `\r\n` ending a record) over the bytes it reads, and turns the end of the stream inside a
/// quoted field, or a quoted field longer than `MAX_QUOTED_FIELD`, into an `io::Error` wrapping
/// [`OpenQuote`]. It sits below the splitter's buffer, so that error reaches the splitter while it
/// reads the record holding the quote: the records before it have been handed out, that one never
/// is.
pub(super) struct QuoteTracker {
    inner: Box<dyn Read + Send>,
    delimiter: u8,
    /// `false` for TSV: nothing to track.
    quoting: bool,
    state: QState,
    /// Offset in the decompressed stream of the next byte read.
    offset: u64,
    /// Line of the next byte read, when known (read from the start of the file).
    line: Option<u64>,
    /// Where the open quoted field started: (byte, line).
    opened: (u64, Option<u64>),
    /// Set once an open quote was reported (`true`: at the end of the stream): later reads
    /// report it again.
    failed: Option<bool>,
}

impl QuoteTracker {
    pub(super) fn new(
        inner: Box<dyn Read + Send>,
        delimiter: u8,
        quoting: bool,
        offset: u64,
        line: Option<u64>,
    ) -> Self {
        QuoteTracker {
            inner,
            delimiter,
            quoting,
            state: QState::StartField,
            offset,
            line,
            opened: (0, None),
            failed: None,
        }
    }

    fn open_quote(&self, at_eof: bool) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            OpenQuote {
                byte: self.opened.0,
                line: self.opened.1,
                at_eof,
            },
        )
    }

    /// Follows the quoting state over `bytes`, a chunk at a time: runs of field bytes and of quoted
    /// bytes are skipped with `memchr` (a byte-at-a-time loop cost 30% of the CSV reader's time);
    /// lines are counted in bulk, and only up to where a quote opens.
    fn track(&mut self, bytes: &[u8]) -> Result<(), io::Error> {
        let n = bytes.len();
        let mut i = 0;
        let mut counted = 0;
        while i < n {
            match self.state {
                QState::StartField if bytes[i] == b'"' => {
                    self.count_lines(&bytes[counted..i]);
                    counted = i;
                    self.opened = (self.offset + i as u64, self.line);
                    self.state = QState::InQuoted;
                    i += 1;
                }
                // Any other byte starts an unquoted field (a delimiter or line end ends it at once).
                QState::StartField => self.state = QState::InField,
                QState::InField => match memchr::memchr3(self.delimiter, b'\n', b'\r', &bytes[i..]) {
                    Some(j) => {
                        i += j + 1;
                        self.state = QState::StartField;
                    }
                    None => i = n,
                },
                QState::InQuoted => match memchr::memchr(b'"', &bytes[i..]) {
                    Some(j) => {
                        i += j + 1;
                        self.state = QState::QuoteInQuoted;
                    }
                    None => i = n,
                },
                QState::QuoteInQuoted => {
                    let b = bytes[i];
                    self.state = if b == b'"' {
                        QState::InQuoted
                    } else if b == self.delimiter || b == b'\n' || b == b'\r' {
                        QState::StartField
                    } else {
                        QState::InField
                    };
                    i += 1;
                }
            }
            if matches!(self.state, QState::InQuoted | QState::QuoteInQuoted)
                && self.offset + i as u64 - self.opened.0 > MAX_QUOTED_FIELD
            {
                return Err(self.open_quote(false));
            }
        }
        self.count_lines(&bytes[counted..]);
        self.offset += n as u64;
        Ok(())
    }

    fn count_lines(&mut self, bytes: &[u8]) {
        if let Some(l) = self.line.as_mut() {
            *l += memchr::memchr_iter(b'\n', bytes).count() as u64;
        }
    }
}

impl Read for QuoteTracker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at_eof) = self.failed {
            return Err(self.open_quote(at_eof));
        }
        let n = self.inner.read(buf)?;
        if !self.quoting {
            return Ok(n);
        }
        if n == 0 && self.state == QState::InQuoted {
            self.failed = Some(true);
            return Err(self.open_quote(true));
        }
        if let Err(e) = self.track(&buf[..n]) {
            self.failed = Some(false);
            return Err(e);
        }
        Ok(n)
    }
}

impl CsvReader {
    pub(super) fn open(
        path: &Path,
        object: Option<&super::object::ObjectFile>,
        compression: Compression,
        delimiter: u8,
        quoting: bool,
        start: Option<(u64, u64, Option<u64>)>,
        limit: Option<u64>,
    ) -> Result<Self, ReadError> {
        let (stream, counter, verified) = super::open_stream(path, object, compression, 0, limit)?;
        let (stream, bom) = super::strip_bom(path, compression, stream)?;
        let tracker = QuoteTracker::new(stream, delimiter, quoting, bom, Some(1));
        let mut rdr = Splitter::new(tracker, delimiter, quoting);
        let mut reader = CsvReader {
            path: path.to_path_buf(),
            compression,
            rdr: None,
            headers: Vec::new(),
            base: bom,
            rows: 0,
            lines_known: true,
            counter,
            done: false,
        };
        let has_header = rdr.read_record().map_err(|e| reader.csv_error(e))?;
        if !has_header {
            // An empty file: no header and no rows (it may still be being written).
            if let Some((byte, _, _)) = start
                && byte > bom
            {
                return Err(super::past_end(path, byte, bom));
            }
            reader.done = true;
            return Ok(reader);
        }
        reader.headers = headers(path, rdr.fields())?;
        let header_end = bom + rdr.byte();
        match start {
            Some((byte, rows, line)) if byte > header_end => {
                drop(rdr);
                let (stream, counter, _) = super::open_stream(path, object, compression, byte, Some(verified))?;
                // The position's line, when the checkpoint kept it: messages still name lines.
                let tracker = QuoteTracker::new(stream, delimiter, quoting, byte, line);
                let mut splitter = Splitter::new(tracker, delimiter, quoting);
                if let Some(line) = line {
                    splitter.start_at_line(line);
                }
                reader.rdr = Some(splitter);
                reader.counter = counter;
                reader.base = byte;
                reader.rows = rows;
                reader.lines_known = line.is_some();
            }
            Some((_, rows, _)) => {
                reader.rdr = Some(rdr);
                reader.rows = rows;
            }
            None => reader.rdr = Some(rdr),
        }
        Ok(reader)
    }

    /// The splitter's only errors are the stream's (the csv crate's, with a flexible reader of
    /// byte records, were too).
    /// An open quote names the row it is in (the next one; the header before any), which is
    /// known after a resume too (the line only when the checkpoint kept it).
    fn csv_error(&self, io: io::Error) -> ReadError {
        match io.get_ref().and_then(|e| e.downcast_ref::<OpenQuote>()) {
            Some(open) if self.headers.is_empty() => super::file_error(&self.path, format!("header: {open}")),
            Some(open) => super::file_error(&self.path, format!("row {}: {open}", self.rows + 1)),
            None => super::stream_error(&self.path, self.compression, &io),
        }
    }
}

/// "line N: " for a message about the record just read, when lines are known.
fn line_prefix(rdr: &Splitter<QuoteTracker>, lines_known: bool) -> String {
    if lines_known {
        format!("line {}: ", rdr.record_line())
    } else {
        String::new()
    }
}

fn headers<'a>(path: &Path, fields: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Arc<str>>, ReadError> {
    let mut names: Vec<Arc<str>> = Vec::new();
    for (i, field) in fields.enumerate() {
        let Ok(name) = std::str::from_utf8(field) else {
            return Err(super::file_error(
                path,
                format!(
                    "header: column {} ({:?}) is not valid UTF-8",
                    i + 1,
                    String::from_utf8_lossy(field)
                ),
            ));
        };
        if names.iter().any(|n| &**n == name) {
            return Err(super::file_error(
                path,
                format!("header: column name {name:?} appears twice"),
            ));
        }
        names.push(Arc::from(name));
    }
    Ok(names)
}

impl RowReader for CsvReader {
    fn next_row(&mut self) -> Option<Result<RawRow, ReadError>> {
        if self.done {
            return None;
        }
        let rdr = self.rdr.as_mut()?;
        match rdr.read_record() {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(self.csv_error(e)));
            }
        }
        let rdr = &*rdr;
        self.rows += 1;
        let end = Position::Offset {
            byte: self.base + rdr.byte(),
            rows: self.rows,
            line: self.lines_known.then(|| rdr.line()),
        };
        if rdr.len() != self.headers.len() {
            let raw = rdr
                .fields()
                .map(|f| serde_json::Value::String(String::from_utf8_lossy(f).into_owned()))
                .collect();
            return Some(Err(ReadError::Row {
                file: self.path.clone(),
                row: self.rows,
                end,
                raw: serde_json::Value::Array(raw),
                message: format!(
                    "{}expected {} fields as in the header, found {}",
                    line_prefix(rdr, self.lines_known),
                    self.headers.len(),
                    rdr.len()
                ),
            }));
        }
        let mut cells = Vec::with_capacity(self.headers.len());
        let mut bad: Vec<&str> = Vec::new();
        for (name, field) in self.headers.iter().zip(rdr.fields()) {
            let cell = if field.is_empty() {
                Cell::Null
            } else {
                match std::str::from_utf8(field) {
                    Ok(s) => Cell::Text(s.to_owned()),
                    Err(_) => {
                        bad.push(name);
                        Cell::Text(String::from_utf8_lossy(field).into_owned())
                    }
                }
            };
            cells.push((name.clone(), cell));
        }
        if !bad.is_empty() {
            let message = format!(
                "{}column {} is not valid UTF-8",
                line_prefix(rdr, self.lines_known),
                quoted_list(&bad)
            );
            let row = RawRow {
                row: self.rows,
                cells,
                end,
            };
            return Some(Err(ReadError::Row {
                file: self.path.clone(),
                row: self.rows,
                end,
                raw: row.to_json(),
                message,
            }));
        }
        Some(Ok(RawRow {
            row: self.rows,
            cells,
            end,
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::tests::{gzip, read_all, summary, write};
    use super::super::{Cell, Position, ReadError, ReadOptions};

    fn texts(r: &super::super::RawRow) -> Vec<(String, Cell)> {
        r.cells.iter().map(|(n, c)| (n.to_string(), c.clone())).collect()
    }

    fn t(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn quoting_embedded_newlines_and_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "a.csv",
            b"id,text,n\n1,\"hello, \"\"world\"\"\",\n2,\"two\nlines\",3\n3,,\n",
        );
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 3);
        let r0 = rows[0].as_ref().unwrap();
        assert_eq!(r0.row, 1);
        assert_eq!(
            texts(r0),
            vec![
                ("id".into(), t("1")),
                ("text".into(), t("hello, \"world\"")),
                ("n".into(), Cell::Null)
            ]
        );
        let r1 = rows[1].as_ref().unwrap();
        assert_eq!(r1.cells[1].1, t("two\nlines"));
        assert_eq!(r1.row, 2);
        let r2 = rows[2].as_ref().unwrap();
        assert_eq!(r2.cells[1].1, Cell::Null);
        assert_eq!(
            r2.end,
            Position::Offset {
                byte: 52,
                rows: 3,
                line: Some(6)
            }
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 52);
    }

    #[test]
    fn delimiters_semicolon_and_tab() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"a;b\n1;x,y\n");
        let opts = ReadOptions {
            delimiter: b';',
            format: None,
            ..ReadOptions::default()
        };
        let rows = read_all(&p, &opts, None);
        assert_eq!(
            texts(rows[0].as_ref().unwrap()),
            vec![("a".into(), t("1")), ("b".into(), t("x,y"))]
        );

        let p = write(&dir, "b.csv", b"a\tb\n1\tx,y\n");
        let opts = ReadOptions {
            delimiter: b'\t',
            format: None,
            ..ReadOptions::default()
        };
        let rows = read_all(&p, &opts, None);
        assert_eq!(
            texts(rows[0].as_ref().unwrap()),
            vec![("a".into(), t("1")), ("b".into(), t("x,y"))]
        );

        // A .tsv file with the default delimiter is tab-separated.
        let p = write(&dir, "c.tsv", b"a\tb\n1\tx,y\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(
            texts(rows[0].as_ref().unwrap()),
            vec![("a".into(), t("1")), ("b".into(), t("x,y"))]
        );
    }

    #[test]
    fn bom_is_stripped_and_offsets_count_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"\xEF\xBB\xBF\"id\",v\n1,a\n2,b\n";
        let p = write(&dir, "a.csv", data);
        let rows = read_all(&p, &ReadOptions::default(), None);
        let r0 = rows[0].as_ref().unwrap();
        assert_eq!(&*r0.cells[0].0, "id");
        assert_eq!(
            r0.end,
            Position::Offset {
                byte: 14,
                rows: 1,
                line: Some(3)
            }
        );
        let resumed = read_all(&p, &ReadOptions::default(), Some(r0.end));
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].as_ref().unwrap().cells[1].1, t("b"));
        assert_eq!(resumed[0].as_ref().unwrap().row, 2);
    }

    #[test]
    fn wrong_field_count_is_a_row_error_and_reading_continues() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"a,b\n1,2\n3,4,5\n6\n7,8\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 4);
        assert!(rows[0].is_ok());
        match &rows[1] {
            Err(ReadError::Row {
                row, message, raw, end, ..
            }) => {
                assert_eq!(*row, 2);
                assert!(message.contains("line 3"), "{message}");
                assert!(message.contains("expected 2 fields"), "{message}");
                assert_eq!(raw, &serde_json::json!(["3", "4", "5"]));
                assert_eq!(
                    *end,
                    Position::Offset {
                        byte: 14,
                        rows: 2,
                        line: Some(4)
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&rows[2], Err(ReadError::Row { row: 3, .. })));
        let last = rows[3].as_ref().unwrap();
        assert_eq!(last.row, 4);
        assert_eq!(texts(last), vec![("a".into(), t("7")), ("b".into(), t("8"))]);
    }

    #[test]
    fn resumed_reader_checks_field_count_against_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"a,b\n1,2\n3,4,5\n7,8\n");
        let all = read_all(&p, &ReadOptions::default(), None);
        let end = all[0].as_ref().unwrap().end;
        let rest = read_all(&p, &ReadOptions::default(), Some(end));
        assert!(matches!(&rest[0], Err(ReadError::Row { row: 2, .. })));
        assert!(rest[1].is_ok());
    }

    #[test]
    fn invalid_utf8_names_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"id,name\n1,ok\n2,bad\xFF\xFEname\n3,fine\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 3);
        match &rows[1] {
            Err(e @ ReadError::Row { row, raw, message, .. }) => {
                assert_eq!(*row, 2);
                assert!(message.contains("\"name\""), "{message}");
                assert!(e.to_string().contains("row 2"), "{e}");
                assert_eq!(raw["id"], "2");
                assert_eq!(raw["name"], "bad\u{FFFD}\u{FFFD}name");
            }
            other => panic!("{other:?}"),
        }
        assert!(rows[2].is_ok());
    }

    #[test]
    fn header_problems_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"a,a\n1,2\n");
        assert!(matches!(
            super::super::open(&p, &ReadOptions::default(), None),
            Err(ReadError::File { .. })
        ));
        let p = write(&dir, "b.csv", b"");
        assert!(read_all(&p, &ReadOptions::default(), None).is_empty());
        let p = write(&dir, "c.csv", b"a,b\n");
        assert!(read_all(&p, &ReadOptions::default(), None).is_empty());
        // Resuming past the end of a file that shrank is an error.
        let pos = Position::Offset {
            byte: 100,
            rows: 9,
            line: None,
        };
        assert!(matches!(
            super::super::open(&p, &ReadOptions::default(), Some(pos)),
            Err(ReadError::File { .. })
        ));
    }

    #[test]
    fn crlf_line_endings() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"a,b\r\n1,2\r\n3,4\r\n5,6";
        let p = write(&dir, "a.csv", data);
        let all = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(all.len(), 3);
        for k in 0..=all.len() {
            let start = if k == 0 {
                None
            } else {
                Some(all[k - 1].as_ref().unwrap().end)
            };
            let rest = read_all(&p, &ReadOptions::default(), start);
            assert_eq!(summary(&rest), summary(&all[k..]), "resume after row {k}");
        }
        assert_eq!(all[2].as_ref().unwrap().cells[1].1, t("6"));
    }

    #[test]
    fn gzip_file_reads_and_counts_compressed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = b"a,b\n".to_vec();
        for i in 0..1000 {
            writeln!(data, "{i},value {i}").unwrap();
        }
        let gz = gzip(&data);
        let p = write(&dir, "a.csv.gz", &gz);
        let mut r = super::super::open(&p, &ReadOptions::default(), None).unwrap();
        let mut n = 0;
        while let Some(row) = r.next_row() {
            row.unwrap();
            n += 1;
        }
        assert_eq!(n, 1000);
        assert_eq!(r.bytes_read(), gz.len() as u64);
    }

    #[test]
    fn unterminated_quote_stops_at_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "q.csv", b"id,t\n1,a\n2,\"oops\n3,c\n4,d\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].as_ref().unwrap().cells[1].1, t("a"));
        match &rows[1] {
            Err(ReadError::File { message, .. }) => {
                assert!(
                    message.contains("row 2: a quoted field opened on line 3 (byte 11)"),
                    "{message}"
                );
                assert!(message.contains("end of the file"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Resumed after row 1: the position carries its line, and the message is the same.
        let end = rows[0].as_ref().unwrap().end;
        let rest = read_all(&p, &ReadOptions::default(), Some(end));
        match &rest[..] {
            [Err(ReadError::File { message, .. })] => assert!(
                message.contains("row 2: a quoted field opened on line 3 (byte 11)"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // From a checkpoint written before positions kept their line: the row and the byte.
        let Position::Offset { byte, rows, .. } = end else {
            panic!("{end:?}")
        };
        let old = Position::Offset { byte, rows, line: None };
        let rest = read_all(&p, &ReadOptions::default(), Some(old));
        match &rest[..] {
            [Err(ReadError::File { message, .. })] => {
                assert!(message.contains("row 2: a quoted field opened on byte 11"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // In the header.
        let p = write(&dir, "h.csv", b"id,\"t\n1,2\n");
        match super::super::open(&p, &ReadOptions::default(), None) {
            Err(ReadError::File { message, .. }) => assert!(message.contains("header: a quoted field"), "{message}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("an open quote in the header was read"),
        }
    }

    #[test]
    fn closed_quotes_in_every_form_are_not_flagged() {
        let dir = tempfile::tempdir().unwrap();
        // Escaped quotes, a quote inside an unquoted field, text after a closing quote, a quoted
        // field spanning lines, CRLF, a closing quote right at the end of the file.
        let data = b"a,b\r\n\"x\"\"y\",1\r\nab\"c,\"\"\r\n\"q\"r,\"two\nlines\"\n\"end\",\"\"\"\"";
        let p = write(&dir, "ok.csv", data);
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows.iter().all(Result::is_ok), "{rows:?}");
        assert_eq!(rows[0].as_ref().unwrap().cells[0].1, t("x\"y"));
        assert_eq!(rows[1].as_ref().unwrap().cells[0].1, t("ab\"c"));
        assert_eq!(rows[3].as_ref().unwrap().cells[1].1, t("\""));
    }

    #[test]
    fn quoted_field_over_the_bound_is_a_file_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = b"id,t\n1,\"".to_vec();
        data.resize(data.len() + super::MAX_QUOTED_FIELD as usize + 10, b'x');
        data.extend_from_slice(b"\"\n2,b\n");
        let p = write(&dir, "long.csv", &data);
        let rows = read_all(&p, &ReadOptions::default(), None);
        match &rows[..] {
            [Err(ReadError::File { message, .. })] => assert!(message.contains("line 2"), "{message}"),
            other => panic!("{:?}", other.len()),
        }
    }

    #[test]
    fn tsv_has_no_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "q.tsv", b"id\tt\n1\t\"oops\n2\t\"a\"\"b\"\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_ref().unwrap().cells[1].1, t("\"oops"));
        assert_eq!(rows[1].as_ref().unwrap().cells[1].1, t("\"a\"\"b\""));
    }
}
