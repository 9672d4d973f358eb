//! CSV reader: a header row, then one `RawRow` per record, every non-empty cell as `Cell::Text`.
//!
//! Owns: header handling (required; a UTF-8 byte order mark is dropped), field-count checks
//! against the header, UTF-8 checks per cell, and byte-offset positions in the decompressed
//! stream (the csv crate counts from where it started; the base is added here).
//! Never: interprets a cell (no numbers, no trimming), reads more than one record at a time, or
//! stops the file for a bad record: a record whose field count differs from the header's, or a
//! cell that is not UTF-8, is a `ReadError::Row` and reading goes on.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use csv::ByteRecord;

use super::{ByteCounter, Cell, Compression, Position, RawRow, ReadError, RowReader};

pub(super) struct CsvReader {
    path: PathBuf,
    compression: Compression,
    /// `None` for an empty file (no header, no rows).
    rdr: Option<csv::Reader<Box<dyn Read + Send>>>,
    record: ByteRecord,
    headers: Vec<Arc<str>>,
    /// Offset in the decompressed stream at which `rdr` started.
    base: u64,
    /// Data rows read so far, including those before the resume position.
    rows: u64,
    /// Whether the csv crate's line numbers are the file's (false after a seek).
    lines_known: bool,
    counter: ByteCounter,
    done: bool,
}

fn builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    // Field counts are checked against the header here, not by the csv crate, which compares
    // with the first record it reads (a data row after a resume).
    b.has_headers(false).flexible(true).delimiter(delimiter);
    b
}

impl CsvReader {
    pub(super) fn open(
        path: &Path,
        compression: Compression,
        delimiter: u8,
        start: Option<(u64, u64)>,
    ) -> Result<Self, ReadError> {
        let (stream, counter) = super::open_stream(path, compression, 0)?;
        let (stream, bom) = super::strip_bom(path, compression, stream)?;
        let mut rdr = builder(delimiter).from_reader(stream);
        let mut record = ByteRecord::new();
        let mut reader = CsvReader {
            path: path.to_path_buf(),
            compression,
            rdr: None,
            record: ByteRecord::new(),
            headers: Vec::new(),
            base: bom,
            rows: 0,
            lines_known: true,
            counter,
            done: false,
        };
        let has_header = rdr.read_byte_record(&mut record).map_err(|e| reader.csv_error(e))?;
        if !has_header {
            // An empty file: no header and no rows (it may still be being written).
            if let Some((byte, _)) = start
                && byte > bom
            {
                return Err(super::past_end(path, byte, bom));
            }
            reader.done = true;
            return Ok(reader);
        }
        reader.headers = headers(path, &record)?;
        let header_end = bom + rdr.position().byte();
        match start {
            Some((byte, rows)) if byte > header_end => {
                drop(rdr);
                let (stream, counter) = super::open_stream(path, compression, byte)?;
                reader.rdr = Some(builder(delimiter).from_reader(stream));
                reader.counter = counter;
                reader.base = byte;
                reader.rows = rows;
                reader.lines_known = false;
            }
            Some((_, rows)) => {
                reader.rdr = Some(rdr);
                reader.rows = rows;
            }
            None => reader.rdr = Some(rdr),
        }
        Ok(reader)
    }

    fn csv_error(&self, e: csv::Error) -> ReadError {
        match e.into_kind() {
            csv::ErrorKind::Io(io) => super::stream_error(&self.path, self.compression, &io),
            other => super::file_error(&self.path, format!("CSV error: {other:?}")),
        }
    }

    fn line_prefix(&self) -> String {
        match self.record.position() {
            Some(p) if self.lines_known => format!("line {}: ", p.line()),
            _ => String::new(),
        }
    }
}

fn headers(path: &Path, record: &ByteRecord) -> Result<Vec<Arc<str>>, ReadError> {
    let mut names: Vec<Arc<str>> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
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
        match rdr.read_byte_record(&mut self.record) {
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
        self.rows += 1;
        let end = Position::Offset {
            byte: self.base + rdr.position().byte(),
            rows: self.rows,
        };
        if self.record.len() != self.headers.len() {
            let raw = self
                .record
                .iter()
                .map(|f| serde_json::Value::String(String::from_utf8_lossy(f).into_owned()))
                .collect();
            return Some(Err(ReadError::Row {
                file: self.path.clone(),
                row: self.rows,
                end,
                raw: serde_json::Value::Array(raw),
                message: format!(
                    "{}expected {} fields as in the header, found {}",
                    self.line_prefix(),
                    self.headers.len(),
                    self.record.len()
                ),
            }));
        }
        let mut cells = Vec::with_capacity(self.headers.len());
        let mut bad: Vec<&str> = Vec::new();
        for (name, field) in self.headers.iter().zip(self.record.iter()) {
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
            let message = format!("{}column {} is not valid UTF-8", self.line_prefix(), quoted_list(&bad));
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
        assert_eq!(r2.end, Position::Offset { byte: 52, rows: 3 });
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 52);
    }

    #[test]
    fn delimiters_semicolon_and_tab() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.csv", b"a;b\n1;x,y\n");
        let opts = ReadOptions {
            delimiter: b';',
            format: None,
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
        assert_eq!(r0.end, Position::Offset { byte: 14, rows: 1 });
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
                assert_eq!(*end, Position::Offset { byte: 14, rows: 2 });
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
        let pos = Position::Offset { byte: 100, rows: 9 };
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
}
