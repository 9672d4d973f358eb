//! JSONL reader: one JSON object per line, read line by line into a reused buffer.
//!
//! Owns: line splitting, skipping blank lines, turning an object's members into cells in member
//! order (JSON null → `Cell::Null`, string → `Cell::Text`, a long array → `Cell::JsonArray` as its
//! text, anything else → `Cell::Json` with integers kept exact), and byte-offset positions in the
//! decompressed stream. A line is split by a quick path (a long array of numbers is checked in one
//! pass and handed on with what was found, names and strings without escapes are taken as they
//! are) and, whenever that path meets anything else, by serde_json as before: the same cells and
//! the same errors either way.
//! Never: reads more than one line (of at most `MAX_LINE` bytes) into memory, converts a JSON
//! value to another type, or stops the file for a bad line: a line that is not a JSON object is a
//! `ReadError::Row` carrying the line as text, and reading goes on.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::value::RawValue;

use super::{
    ArrayText, ByteCounter, Cell, Compression, LONG_ARRAY_BYTES, Names, Position, RawRow, ReadError, RowReader, numbers,
};

/// The longest line accepted; a longer one is taken for a corrupt or mislabelled file.
const MAX_LINE: usize = 256 * 1024 * 1024;

pub(super) struct JsonlReader {
    path: PathBuf,
    compression: Compression,
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    /// Offset in the decompressed stream just after the last line read.
    offset: u64,
    /// Data (non-blank) rows read so far, including those before the resume position.
    rows: u64,
    /// Physical line number of the last line read, when known (from the start, or from a
    /// checkpoint position that kept its line).
    line: Option<u64>,
    names: Names,
    counter: ByteCounter,
    done: bool,
}

impl JsonlReader {
    pub(super) fn open(
        path: &Path,
        object: Option<&super::object::ObjectFile>,
        compression: Compression,
        start: Option<(u64, u64, Option<u64>)>,
        limit: Option<u64>,
    ) -> Result<Self, ReadError> {
        let (byte, rows, line) = start.unwrap_or((0, 0, None));
        let (stream, counter, _) = super::open_stream(path, object, compression, byte, limit)?;
        Ok(JsonlReader {
            path: path.to_path_buf(),
            compression,
            reader: BufReader::with_capacity(64 * 1024, stream),
            buf: Vec::new(),
            offset: byte,
            rows,
            // The last line read is the one before the position's (a position is a line start);
            // at the start of the stream, none (line 0), whatever the position says.
            line: if byte == 0 {
                Some(0)
            } else {
                line.map(|l| l.saturating_sub(1))
            },
            names: Names::default(),
            counter,
            done: false,
        })
    }

    fn fail(&mut self, e: ReadError) -> Option<Result<RawRow, ReadError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl RowReader for JsonlReader {
    fn next_row(&mut self) -> Option<Result<RawRow, ReadError>> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf);
            let n = match read {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(n) => n,
                Err(e) => {
                    let e = super::stream_error(&self.path, self.compression, &e);
                    return self.fail(e);
                }
            };
            if n > MAX_LINE {
                let e = super::file_error(
                    &self.path,
                    format!(
                        "a line after byte {} is longer than {MAX_LINE} bytes; is this JSONL?",
                        self.offset
                    ),
                );
                return self.fail(e);
            }
            let line_start = self.offset;
            self.offset += n as u64;
            if let Some(l) = self.line.as_mut() {
                *l += 1;
            }
            let mut content: &[u8] = &self.buf;
            if line_start == 0 {
                content = content.strip_prefix(super::UTF8_BOM).unwrap_or(content);
            }
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.rows += 1;
            let end = Position::Offset {
                byte: self.offset,
                rows: self.rows,
                // The next line, unless this one ended the stream without a line feed.
                line: self.line.map(|l| l + u64::from(self.buf.ends_with(b"\n"))),
            };
            if let Some(cells) = quick_cells(content, &mut self.names) {
                return Some(Ok(RawRow {
                    row: self.rows,
                    cells,
                    end,
                }));
            }
            if let Some(members) = members(content) {
                let cells = members
                    .into_iter()
                    .map(|(k, raw)| (self.names.get(&k), raw_cell(raw.get())))
                    .collect();
                return Some(Ok(RawRow {
                    row: self.rows,
                    cells,
                    end,
                }));
            }
            // Not an object, or not JSON: parsed again as a value, for the message.
            let problem = match serde_json::from_slice::<serde_json::Value>(content) {
                Ok(serde_json::Value::Object(_)) => "invalid JSON object".to_string(),
                Ok(other) => format!("expected a JSON object, found {}", kind(&other)),
                Err(e) => format!("invalid JSON: {e}"),
            };
            let text = String::from_utf8_lossy(content);
            let text = text.trim_end_matches(['\n', '\r']);
            let message = match self.line {
                Some(l) => format!("line {l}: {problem}"),
                None => problem,
            };
            return Some(Err(ReadError::Row {
                file: self.path.clone(),
                row: self.rows,
                end,
                raw: serde_json::Value::String(text.to_string()),
                message,
            }));
        }
    }

    fn bytes_read(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

/// The members of a JSON object line in order, each with its raw text; a repeated name keeps its
/// first place and its last value (as a JSON map does). `None` when the line is not one object.
fn members(line: &[u8]) -> Option<Vec<(String, &RawValue)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Self::Value = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                match out.iter_mut().find(|(name, _)| *name == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    let members = de.deserialize_map(Members).ok()?;
    de.end().ok()?;
    Some(members)
}

/// JSON whitespace.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut at: usize) -> usize {
    while b.get(at).copied().is_some_and(is_ws) {
        at += 1;
    }
    at
}

/// A nested value with more brackets than this is left to [`members`]: serde_json's depth limit
/// counts the line's object too, which a value parsed on its own would not.
const QUICK_BRACKETS: usize = 64;

/// The cells of a JSON object line, as [`members`] and [`raw_cell`] make them, without serde_json
/// walking a long array of numbers (twice: once for the line, once for its raw text): such an
/// array is checked by [`numbers::scan`], which typing then trusts. Names without escapes are
/// taken as they are, strings without escapes too, other values are parsed by serde_json one at a
/// time. `None` for anything else (an escaped name, a deeply nested value, any error): the line
/// then takes the general path, which gives the same cells or says what is wrong.
fn quick_cells(line: &[u8], names: &mut Names) -> Option<Vec<(Arc<str>, Cell)>> {
    let mut at = skip_ws(line, 0);
    if line.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(line, at + 1);
    let mut out: Vec<(Arc<str>, Cell)> = Vec::with_capacity(8);
    if line.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            // The name: a string without escapes or control characters.
            if line.get(at) != Some(&b'"') {
                return None;
            }
            let (name, after) = plain_string(line, at + 1)?;
            at = skip_ws(line, after);
            if line.get(at) != Some(&b':') {
                return None;
            }
            at = skip_ws(line, at + 1);
            let (cell, after) = match line.get(at)? {
                b'[' => match numbers::scan(line, at) {
                    Some(scan) if scan.end - at >= LONG_ARRAY_BYTES => {
                        let text = std::str::from_utf8(&line[at..scan.end]).ok()?;
                        let array = numbers::NumberArray {
                            end: text.len(),
                            ..scan
                        };
                        (Cell::JsonArray(ArrayText::numbers(text, array)), scan.end)
                    }
                    _ => parsed_value(line, at)?,
                },
                b'"' => match plain_string(line, at + 1) {
                    Some((s, after)) => (Cell::Text(s.to_string()), after),
                    None => parsed_value(line, at)?,
                },
                _ => parsed_value(line, at)?,
            };
            match out.iter_mut().find(|(n, _)| **n == *name) {
                Some(slot) => slot.1 = cell,
                None => out.push((names.get(name), cell)),
            }
            at = skip_ws(line, after);
            match line.get(at)? {
                b',' => at = skip_ws(line, at + 1),
                b'}' => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    line[at..].iter().all(|c| is_ws(*c)).then_some(out)
}

/// The string whose text starts at `b[at]` (after its opening quote) and where it ends (after its
/// closing quote), when it has no escape, no control character and is UTF-8.
fn plain_string(b: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = b.get(at..)?;
    let len = memchr::memchr2(b'"', b'\\', rest)?;
    let text = &rest[..len];
    if rest[len] != b'"' || text.iter().any(|c| *c < 0x20) {
        return None;
    }
    Some((std::str::from_utf8(text).ok()?, at + len + 1))
}

/// The value at `b[at]`, parsed by serde_json on its own, as a cell, and where it ends.
fn parsed_value(b: &[u8], at: usize) -> Option<(Cell, usize)> {
    let mut values = serde_json::Deserializer::from_slice(b.get(at..)?).into_iter::<&RawValue>();
    let raw = values.next()?.ok()?;
    let text = raw.get();
    if memchr::memchr2_iter(b'[', b'{', text.as_bytes()).count() > QUICK_BRACKETS {
        return None;
    }
    Some((raw_cell(text), at + values.byte_offset()))
}

/// A member's raw text as a cell: null is absent, strings are text, an integer literal beyond
/// i64/u64 keeps its digits (a JSON parser would read it as a float), a long array stays text
/// ([`Cell::JsonArray`]), the rest is parsed as JSON.
fn raw_cell(t: &str) -> Cell {
    match t.as_bytes().first() {
        Some(b'[') if t.len() >= LONG_ARRAY_BYTES => return Cell::JsonArray(t.into()),
        Some(b'-' | b'0'..=b'9') => {
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.bytes().all(|b| b.is_ascii_digit()) && t.parse::<u64>().is_err() && t.parse::<i64>().is_err() {
                return Cell::BigInt(t.to_string());
            }
        }
        _ => {}
    }
    // The text was parsed once already, so it is valid JSON; were it ever not, it is kept as
    // text (a typing error later names it) rather than lost.
    match serde_json::from_str(t) {
        Ok(v) => json_cell(v),
        Err(_) => Cell::Text(t.to_string()),
    }
}

/// A JSON member as a cell: null is absent, strings are text, the rest stays JSON.
pub(super) fn json_cell(v: serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::String(s) => Cell::Text(s),
        other => Cell::Json(other),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{read_all, write};
    use super::super::{Cell, Position, ReadError, ReadOptions};

    #[test]
    fn members_become_cells_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "a.jsonl",
            b"{\"z\":1,\"a\":\"text\",\"n\":null,\"v\":[0.5,1],\"o\":{\"k\":true},\"b\":false,\"f\":1.5}\n",
        );
        let rows = read_all(&p, &ReadOptions::default(), None);
        let r = rows[0].as_ref().unwrap();
        let names: Vec<&str> = r.cells.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["z", "a", "n", "v", "o", "b", "f"]);
        assert_eq!(r.cells[0].1, Cell::Json(serde_json::json!(1)));
        assert_eq!(r.cells[1].1, Cell::Text("text".into()));
        assert_eq!(r.cells[2].1, Cell::Null);
        assert_eq!(r.cells[3].1, Cell::Json(serde_json::json!([0.5, 1])));
        assert_eq!(r.cells[4].1, Cell::Json(serde_json::json!({"k": true})));
        assert_eq!(r.cells[5].1, Cell::Json(serde_json::json!(false)));
        assert_eq!(r.cells[6].1, Cell::Json(serde_json::json!(1.5)));
        assert_eq!(
            r.end,
            Position::Offset {
                byte: std::fs::metadata(&p).unwrap().len(),
                rows: 1,
                line: Some(2),
            }
        );
    }

    #[test]
    fn integers_beyond_u64_keep_their_digits() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "big.jsonl",
            b"{\"a\":18446744073709551616,\"b\":-99999999999999999999,\"c\":1e20,\"d\":[18446744073709551616],\"e\":\"18446744073709551616\"}\n",
        );
        let rows = read_all(&p, &ReadOptions::default(), None);
        let row = rows[0].as_ref().unwrap();
        assert_eq!(row.cells[0].1, Cell::BigInt("18446744073709551616".into()));
        assert_eq!(row.cells[1].1, Cell::BigInt("-99999999999999999999".into()));
        // 1e20 is written as a float: it stays one. Nested values and strings are untouched.
        assert!(matches!(row.cells[2].1, Cell::Json(_)));
        assert!(matches!(row.cells[3].1, Cell::Json(_)));
        assert_eq!(row.cells[4].1, Cell::Text("18446744073709551616".into()));
    }

    #[test]
    fn big_integers_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "a.jsonl",
            b"{\"id\":9007199254740993,\"u\":18446744073709551615,\"n\":-9223372036854775808}\n",
        );
        let rows = read_all(&p, &ReadOptions::default(), None);
        let r = rows[0].as_ref().unwrap();
        match &r.cells[0].1 {
            Cell::Json(serde_json::Value::Number(n)) => {
                assert_eq!(n.as_i64(), Some(9007199254740993))
            }
            other => panic!("{other:?}"),
        }
        match &r.cells[1].1 {
            Cell::Json(serde_json::Value::Number(n)) => assert_eq!(n.as_u64(), Some(u64::MAX)),
            other => panic!("{other:?}"),
        }
        match &r.cells[2].1 {
            Cell::Json(serde_json::Value::Number(n)) => assert_eq!(n.as_i64(), Some(i64::MIN)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.to_json().to_string(),
            "{\"id\":9007199254740993,\"u\":18446744073709551615,\"n\":-9223372036854775808}"
        );
    }

    #[test]
    fn long_arrays_stay_text_and_repeated_names_keep_the_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let vec: Vec<String> = (0..100).map(|i| format!("{}.5", i - 50)).collect();
        let text = format!("[{}]", vec.join(", "));
        let line = format!("{{\"id\":1,\"v\":{text},\"id\":2,\"s\":[1,2]}}\n");
        let p = write(&dir, "long.jsonl", line.as_bytes());
        let rows = read_all(&p, &ReadOptions::default(), None);
        let r = rows[0].as_ref().unwrap();
        let names: Vec<&str> = r.cells.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["id", "v", "s"]);
        assert_eq!(r.cells[0].1, Cell::Json(serde_json::json!(2)));
        assert_eq!(r.cells[1].1, Cell::JsonArray(text.clone().into()));
        assert_eq!(r.cells[2].1, Cell::Json(serde_json::json!([1, 2])));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r.cells[1].1.to_json(), parsed);
    }

    #[test]
    fn bad_lines_are_row_errors_and_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "a.jsonl",
            b"{\"a\":1}\n\n   \r\n{\"a\":\n[1,2]\n{\"a\":\"\xFF\"}\n{\"a\":2}\r\n{\"a\":3}",
        );
        let rows = read_all(&p, &ReadOptions::default(), None);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].as_ref().unwrap().row, 1);
        match &rows[1] {
            Err(ReadError::Row { row, raw, message, .. }) => {
                assert_eq!(*row, 2);
                assert_eq!(raw, &serde_json::json!("{\"a\":"));
                assert!(message.starts_with("line 4: invalid JSON"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match &rows[2] {
            Err(ReadError::Row { row, raw, message, .. }) => {
                assert_eq!(*row, 3);
                assert_eq!(raw, &serde_json::json!("[1,2]"));
                assert!(message.contains("found an array"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match &rows[3] {
            Err(ReadError::Row { row, raw, .. }) => {
                assert_eq!(*row, 4);
                assert_eq!(raw, &serde_json::json!("{\"a\":\"\u{FFFD}\"}"));
            }
            other => panic!("{other:?}"),
        }
        let r = rows[4].as_ref().unwrap();
        assert_eq!((r.row, &r.cells[0].1), (5, &Cell::Json(serde_json::json!(2))));
        let r = rows[5].as_ref().unwrap();
        assert_eq!((r.row, &r.cells[0].1), (6, &Cell::Json(serde_json::json!(3))));
        assert_eq!(
            r.end,
            Position::Offset {
                byte: std::fs::metadata(&p).unwrap().len(),
                rows: 6,
                // The last line has no line feed: the position is on it, line 8.
                line: Some(8),
            }
        );
    }

    #[test]
    fn column_names_are_shared_between_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "a.jsonl", b"\xEF\xBB\xBF{\"id\":1}\n{\"id\":2}\n");
        let rows = read_all(&p, &ReadOptions::default(), None);
        let a = &rows[0].as_ref().unwrap().cells[0].0;
        let b = &rows[1].as_ref().unwrap().cells[0].0;
        assert_eq!(&**a, "id");
        assert!(Arc::ptr_eq(a, b));
    }

    /// The cells of a line by the general path (`members`, then `raw_cell`).
    fn general(line: &[u8]) -> Option<Vec<(String, Cell)>> {
        let members = super::members(line)?;
        Some(
            members
                .into_iter()
                .map(|(k, raw)| (k, super::raw_cell(raw.get())))
                .collect(),
        )
    }

    /// The cells of a line by `quick_cells` (what was found of a checked array checked against
    /// its text).
    fn quick(line: &[u8]) -> Option<Vec<(String, Cell)>> {
        let cells = super::quick_cells(line, &mut super::Names::default())?;
        let cells = cells.into_iter().map(|(n, c)| {
            if let Cell::JsonArray(t) = &c {
                assert!(t.len() >= super::LONG_ARRAY_BYTES);
                if let Some(a) = t.checked_numbers() {
                    assert_eq!(
                        super::numbers::scan(t.as_bytes(), 0).as_ref(),
                        Some(a),
                        "{}",
                        t.as_str()
                    );
                }
            }
            (n.to_string(), c)
        });
        Some(cells.collect())
    }

    /// `quick_cells` gives the general path's cells, or leaves the line to it.
    fn agree(line: &[u8]) -> bool {
        match quick(line) {
            Some(q) => {
                assert_eq!(Some(q), general(line), "{:?}", String::from_utf8_lossy(line));
                true
            }
            None => false,
        }
    }

    #[test]
    fn quick_cells_agree_with_the_general_path() {
        let long = (0..100).map(|i| format!("{}.25", i - 50)).collect::<Vec<_>>().join(",");
        let spaced = (0..100).map(|i| format!("{}e-3", i)).collect::<Vec<_>>().join(" , ");
        let mut taken = 0;
        let lines: Vec<String> = vec![
            format!(
                r#"{{"id":"k1","title":"delta gamma, item \"19527\"","score":-984.375,"tags":["t37","t1"],"vec":[{long}],"count":-476405993472,"ok":false,"at":"2026-08-21T02:08:32Z"}}"#
            ),
            format!("{{\"v\":[{long}]}}\r\n"),
            format!(" \t{{ \"v\" : [ {spaced} ] , \"w\" : [ {long} ] }} \n"),
            format!(r#"{{"a":1,"v":[{long}],"a":2,"v":[1,2]}}"#),
            format!(r#"{{"v":[{long}],"v":[{long},1e400]}}"#),
            format!(r#"{{"v":[{long},"x"]}}"#),
            format!(r#"{{"v":[{long},[1]]}}"#),
            format!(r#"{{"v":[{long},]}}"#),
            format!(r#"{{"v":[{long},,1]}}"#),
            format!(r#"{{"v":[{long}"#),
            format!(r#"{{"v":[{long}]"#),
            format!(r#"{{"v":[{long}]}}x"#),
            format!(r#"{{"v":[{long}]}},"#),
            format!(r#"{{"v":[{long}] "w":1}}"#),
            format!(r#"{{"v":[{long},1e39,-0,0.5E+2]}}"#),
            format!(r#"{{"v":[{long},01]}}"#),
            format!(r#"{{"s":"]\"[","v":[{long}]}}"#),
            format!(r#"{{"a\"b":[{long}]}}"#),
            format!(r#"{{"a\u0062":[{long}]}}"#),
            format!(r#"{{"é":[{long}],"ü":"ö"}}"#),
            format!(r#"{{"v":{{"w":[{long}]}}}}"#),
            r#"{}"#.into(),
            " { } \n".into(),
            r#"{,}"#.into(),
            r#"{"a":1,}"#.into(),
            r#"{"a"}"#.into(),
            r#"{"a":}"#.into(),
            r#"{"a" 1}"#.into(),
            r#"{a:1}"#.into(),
            r#"{"a":tru}"#.into(),
            r#"{"a":true,"b":false,"c":null}"#.into(),
            r#"{"a":-}"#.into(),
            r#"{"a":01}"#.into(),
            r#"{"a":1.}"#.into(),
            r#"{"a":1e400}"#.into(),
            r#"{"a":18446744073709551616,"b":-9223372036854775809,"c":1.5,"d":9007199254740993}"#.into(),
            r#"{"a":"x\ty"}"#.into(),
            "{\"a\":\"x\ty\"}".into(),
            "{\"a\tb\":1}".into(),
            r#"{"a":"\u00e9\ud83d\ude00","b":"\ud800"}"#.into(),
            r#"{"a":"\x"}"#.into(),
            r#"{"a":"unterminated}"#.into(),
            r#"{"a":[1,2],"b":[[1,[2]],{"c":[3]}],"d":{"e":"f"}}"#.into(),
            r#"[1,2]"#.into(),
            r#""a""#.into(),
            "".into(),
            "{\"a\":1}{\"b\":2}".into(),
            "{\"a\":1}\n{\"b\":2}".into(),
            format!("{{\"a\":{}{}}}", "[".repeat(127), "]".repeat(127)),
            format!("{{\"a\":{}{}}}", "[".repeat(128), "]".repeat(128)),
            format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63)),
        ];
        for line in &lines {
            taken += usize::from(agree(line.as_bytes()));
        }
        for bad in [
            &b"{\"a\":\"\xFF\"}"[..],
            b"{\"\xFF\":1}",
            b"{\"a\":1}\xFF",
            b"{\"v\":[1\xFF]}",
        ] {
            assert!(!agree(bad));
            assert!(general(bad).is_none());
        }
        assert!(taken >= 12, "{taken}");
    }

    #[test]
    fn quick_cells_agree_with_the_general_path_on_mutated_lines() {
        let long = (0..80).map(|i| format!("{}.5", i - 40)).collect::<Vec<_>>().join(",");
        let base =
            format!(r#"{{"id":"k1","t":"a \"b\" [c]","n":-1.5e3,"tags":["x","y"],"v":[{long}],"ok":true,"z":null}}"#);
        let alphabet: &[u8] = b"{}[]\",:\\ \t\r\n-+.eE0159atrufnlsx\x01\xC3\xA9\xFF";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut taken = 0;
        for _ in 0..30_000 {
            let mut line = base.clone().into_bytes();
            for _ in 0..1 + next(3) {
                let at = next(line.len());
                match next(3) {
                    0 => {
                        line.remove(at);
                    }
                    1 => line.insert(at, alphabet[next(alphabet.len())]),
                    _ => line[at] = alphabet[next(alphabet.len())],
                }
            }
            taken += usize::from(agree(&line));
        }
        assert!(taken > 1000, "{taken}");
    }
}
