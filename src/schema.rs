//! The collection's schema and the coercion of untyped source rows into typed `Record`s.
//!
//! Owns: the rules that turn a `source::Cell` into a `record::Value` (or, on the hot path, into a
//! value borrowed from the cell and written into the row's JSON as it is), and the per-row checks
//! made before anything is sent (primary key present and non-zero, fields known, values of their
//! type, vector dimension).
//! Never: reads files, talks to the network, or drops a row: a row that fails is returned as a
//! `RowRejection` for the dead-letter file. `FieldType` and its names are re-exported from
//! `vikingdb-types` (shared with the emulator).

pub use vikingdb_types::FieldType;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{CollectionConfig, SourceConfig, VectorEncoding};
use crate::record::{Op, Origin, PrimaryKey, Record, Value, VectorText};
use crate::source::{ArrayText, Cell, NumberArray, RawRow, compact, json_array_value, scan_numbers};

/// Why a row was not sent. It goes to the dead-letter file with these details.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRejection {
    pub key: Option<PrimaryKey>,
    pub op: Option<Op>,
    pub reason: String,
}

/// The collection's fields and the rules for coercing rows into them.
#[derive(Debug, Clone)]
pub struct Schema {
    pub primary_key: Arc<str>,
    pub key_type: FieldType,
    pub fields: HashMap<Arc<str>, FieldType>,
    pub dim: Option<usize>,
    pub vectorize: bool,
    pub ignore_unknown_fields: bool,
    /// The wire form of vectors held as `f32`s; vectors held as text go as their text.
    pub vector_encoding: VectorEncoding,
}

/// How one source's columns map onto the schema.
#[derive(Debug, Clone)]
pub struct SourceMapping {
    pub op: Option<Op>,
    pub op_column: Option<String>,
    pub ttl: Option<u32>,
    pub ttl_column: Option<String>,
    pub renames: BTreeMap<String, String>,
}

impl SourceMapping {
    /// The schema field a source column feeds (its rename, or its own name).
    pub fn field<'a>(&'a self, col: &'a str) -> &'a str {
        self.renames.get(col).map_or(col, String::as_str)
    }

    pub fn from_config(s: &SourceConfig) -> SourceMapping {
        SourceMapping {
            op: s.op,
            op_column: s.op_column.clone(),
            ttl: s.ttl,
            ttl_column: s.ttl_column.clone(),
            renames: s.columns.clone(),
        }
    }
}

impl Schema {
    pub fn from_config(c: &CollectionConfig) -> Schema {
        let key_type = c.fields.get(&c.primary_key).copied().unwrap_or(FieldType::String);
        Schema {
            primary_key: Arc::from(c.primary_key.as_str()),
            key_type,
            fields: c.fields.iter().map(|(k, v)| (Arc::from(k.as_str()), *v)).collect(),
            dim: c.dim,
            vectorize: c.vectorize,
            ignore_unknown_fields: c.ignore_unknown_fields,
            vector_encoding: c.vector_encoding,
        }
    }

    /// Coerces and checks one row. On success the row's JSON is serialised once, here.
    pub fn coerce(&self, raw: &RawRow, map: &SourceMapping, origin: Origin) -> Result<Record, RowRejection> {
        let mut op = map.op;
        let mut ttl = map.ttl;
        let mut key: Option<PrimaryKey> = None;
        let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(raw.cells.len());
        let mut problems: Vec<String> = Vec::new();

        // The op and TTL first: a rejection should say which op the row was.
        for (col, cell) in &raw.cells {
            if map.op_column.as_deref() == Some(col.as_ref()) {
                op = match cell_text(cell) {
                    Some(s) => match Op::parse(&s) {
                        Some(o) => Some(o),
                        None => {
                            problems.push(format!("op column `{col}`: `{s}` is not update, upsert or delete"));
                            None
                        }
                    },
                    None => {
                        problems.push(format!("op column `{col}` is empty"));
                        None
                    }
                };
            } else if map.ttl_column.as_deref() == Some(col.as_ref()) {
                match cell {
                    Cell::Null => {}
                    other => match coerce_int(other) {
                        Ok(v) if (0..=i64::from(u32::MAX)).contains(&v) => ttl = Some(v as u32),
                        Ok(v) => problems.push(format!("ttl column `{col}`: {v} is not a TTL in seconds (0..2^32)")),
                        Err(e) => problems.push(format!("ttl column `{col}`: {e}")),
                    },
                }
            }
        }

        for (col, cell) in &raw.cells {
            let col: &str = col;
            if map.op_column.as_deref() == Some(col) || map.ttl_column.as_deref() == Some(col) {
                continue;
            }
            let name = map.field(col);
            if name == &*self.primary_key {
                match self.coerce_key(cell) {
                    Ok(k) => key = Some(k),
                    Err(e) => problems.push(e),
                }
                continue;
            }
            if matches!(cell, Cell::Null) || op == Some(Op::Delete) {
                continue; // absent; a delete sends only the key
            }
            let Some(ty) = self.fields.get(name) else {
                if !self.ignore_unknown_fields {
                    problems.push(format!("unknown field `{name}` (not in [collection.fields])"));
                }
                continue;
            };
            let packed = (*ty == FieldType::Vector && self.vector_encoding == VectorEncoding::Base64)
                .then(|| packed_vector(cell, self.dim))
                .flatten();
            match packed.unwrap_or_else(|| coerce_field(cell, *ty, self.dim)) {
                Ok(v) => fields.push((name, v)),
                Err(e) => problems.push(format!("field `{name}` ({ty}): {e}")),
            }
        }

        if op.is_none() && problems.is_empty() {
            problems.push(match &map.op_column {
                Some(c) if c == crate::source::DEAD_LETTER_OP_COLUMN => {
                    "the dead-letter entry has no op; set `op` on this source to say what to do with it".to_string()
                }
                Some(c) => format!("op column `{c}` is missing from this row"),
                None => "no op: set `op` or `op_column` on the source".to_string(),
            });
        }
        if key.is_none() && !problems.iter().any(|p| p.starts_with("primary key")) {
            problems.push(format!("primary key `{}` is missing", self.primary_key));
        }
        let (Some(key), Some(op), true) = (key.clone(), op, problems.is_empty()) else {
            return Err(RowRejection {
                key,
                op,
                reason: problems.join("; "),
            });
        };
        let json = if op == Op::Delete {
            Box::from("")
        } else {
            // Only upsertData documents the packed form (doc 2173269); updates go as arrays.
            let vectors = if op == Op::Upsert {
                self.vector_encoding
            } else {
                VectorEncoding::Array
            };
            serialise_row(&self.primary_key, &key, &fields, vectors)
        };
        Ok(Record {
            key,
            op,
            ttl,
            json,
            origin,
        })
    }

    /// The primary key [`Schema::coerce`] would give this row, valid or not (the same columns,
    /// renames and coercion, the last readable one winning), without typing the other fields: a
    /// shard decides which rows are its own with it.
    pub fn key_of(&self, raw: &RawRow, map: &SourceMapping) -> Option<PrimaryKey> {
        let mut key = None;
        for (col, cell) in &raw.cells {
            let col: &str = col;
            if map.op_column.as_deref() == Some(col) || map.ttl_column.as_deref() == Some(col) {
                continue;
            }
            let name = map.field(col);
            if name == &*self.primary_key
                && let Ok(k) = self.coerce_key(cell)
            {
                key = Some(k);
            }
        }
        key
    }

    /// Whether a vector field's cell of `raw` is a list of numbers (a Parquet list, a short
    /// JSONL array): the only cells that can go packed.
    pub fn has_vector_list(&self, raw: &RawRow, map: &SourceMapping) -> bool {
        raw.cells.iter().any(|(col, cell)| {
            let name = map.field(col);
            self.fields.get(name) == Some(&FieldType::Vector)
                && matches!(
                    cell,
                    Cell::F32List(_) | Cell::F64List(_) | Cell::IntList(_) | Cell::Json(serde_json::Value::Array(_))
                )
        })
    }

    /// The vector an upsert `record` sends packed (base64 text, see
    /// [`crate::config::VectorEncoding`]): its field's name and the `f32`s the text holds; `None`
    /// when the record sends no vector that way. For `vector_encoding = "auto"`'s check, once a run.
    pub fn packed_vector_of(&self, record: &Record) -> Option<(String, Vec<f32>)> {
        use base64::Engine as _;
        if record.op != Op::Upsert {
            return None;
        }
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&record.json).ok()?;
        let (name, text) = row.iter().find_map(|(name, value)| {
            (self.fields.get(name.as_str()) == Some(&FieldType::Vector))
                .then(|| value.as_str())
                .flatten()
                .map(|t| (name.clone(), t))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
        (bytes.len() % 4 == 0 && !bytes.is_empty()).then(|| (name, crate::record::le_f32s(&bytes)))
    }

    fn coerce_key(&self, cell: &Cell) -> Result<PrimaryKey, String> {
        let pk = &self.primary_key;
        match (self.key_type, cell) {
            (_, Cell::Null) => Err(format!("primary key `{pk}` is empty")),
            (FieldType::Int64, c) => match coerce_int(c) {
                Ok(0) => Err(format!("primary key `{pk}` is 0, which VikingDB does not allow")),
                Ok(i) => Ok(PrimaryKey::Int(i)),
                Err(e) => Err(format!("primary key `{pk}` (int64): {e}")),
            },
            (_, c) => match coerce_string(c) {
                Ok(s) if s.is_empty() => Err(format!("primary key `{pk}` is empty")),
                Ok(s) => Ok(PrimaryKey::Str(Arc::from(s))),
                Err(e) => Err(format!("primary key `{pk}` (string): {e}")),
            },
        }
    }
}

/// A field's typed value as it goes into the row's JSON: borrowed from the row's cell where the
/// cell already holds it in its final form (a vector's text or `f32`s, a string), so that the
/// row is the only copy made of it here; otherwise an owned [`Value`].
#[derive(Debug)]
enum Field<'a> {
    Value(Value),
    /// A vector's checked, compact text (see [`vector_text`]), written as it is.
    VectorText(&'a str),
    /// A vector's elements, each finite, written by [`crate::record::write_f32_array`].
    Vector(&'a [f32]),
    /// A string value, written as [`Value::Str`] is.
    Str(&'a str),
    /// A list of strings, written as [`Value::StrList`] is.
    StrList(&'a [String]),
}

impl Field<'_> {
    /// The value owned.
    fn into_value(self) -> Value {
        match self {
            Field::Value(v) => v,
            Field::VectorText(t) => Value::VectorText(VectorText::checked(t.to_owned())),
            Field::Vector(v) => Value::Vector(v.to_vec()),
            Field::Str(s) => Value::Str(s.to_owned()),
            Field::StrList(v) => Value::StrList(v.to_vec()),
        }
    }

    /// As [`Value::json_size_hint`], for vectors in `encoding`.
    fn json_size_hint(&self, encoding: VectorEncoding) -> usize {
        match self {
            Field::Value(Value::Vector(v)) if encoding == VectorEncoding::Base64 => {
                crate::record::f32_base64_len(v.len())
            }
            Field::Vector(v) if encoding == VectorEncoding::Base64 => crate::record::f32_base64_len(v.len()),
            Field::Value(v) => v.json_size_hint(),
            Field::VectorText(t) => t.len(),
            Field::Vector(v) => v.len() * 18 + 2,
            Field::Str(s) => s.len() + 2,
            Field::StrList(v) => v.iter().map(|s| s.len() + 3).sum::<usize>() + 2,
        }
    }
}

/// Writes a vector held as `f32`s in `encoding`.
fn write_vector(out: &mut Vec<u8>, v: &[f32], encoding: VectorEncoding) {
    match encoding {
        // The schema is given a settled encoding; unsettled, `auto` is `array`.
        VectorEncoding::Array | VectorEncoding::Auto => crate::record::write_f32_array(out, v),
        VectorEncoding::Base64 => crate::record::write_f32_base64(out, v),
    }
}

fn serialise_row(pk_name: &str, key: &PrimaryKey, fields: &[(&str, Field<'_>)], vectors: VectorEncoding) -> Box<str> {
    // Sized for the whole row: growing a vector's row by doubling copied it several times.
    let size: usize = fields
        .iter()
        .map(|(name, value)| name.len() + 4 + value.json_size_hint(vectors))
        .sum();
    let mut out = Vec::with_capacity(64 + size);
    out.push(b'{');
    // Serialising these types to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, pk_name);
    out.push(b':');
    let _ = serde_json::to_writer(&mut out, key);
    for (name, value) in fields {
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        match value {
            Field::Value(Value::VectorText(v)) => out.extend_from_slice(v.as_str().as_bytes()),
            Field::Value(Value::Vector(v)) => write_vector(&mut out, v, vectors),
            Field::Value(value) => {
                let _ = serde_json::to_writer(&mut out, value);
            }
            Field::VectorText(t) => out.extend_from_slice(t.as_bytes()),
            Field::Vector(v) => write_vector(&mut out, v, vectors),
            Field::Str(s) => {
                let _ = serde_json::to_writer(&mut out, s);
            }
            Field::StrList(v) => {
                let _ = serde_json::to_writer(&mut out, v);
            }
        }
    }
    out.push(b'}');
    // serde_json writes valid UTF-8, so this takes the buffer as it is.
    match String::from_utf8(out) {
        Ok(s) => s.into_boxed_str(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into(),
    }
}

fn cell_text(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Text(s) => Some(s.clone()),
        Cell::Json(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(s) => {
            let short: String = s.chars().take(40).collect();
            format!("`{short}`{}", if s.chars().count() > 40 { "…" } else { "" })
        }
        Cell::Json(v) => {
            let s = v.to_string();
            let short: String = s.chars().take(40).collect();
            format!("`{short}`")
        }
        Cell::JsonArray(t) => describe(&Cell::Json(json_array_value(t))),
        Cell::Int(i) => format!("integer {i}"),
        Cell::BigInt(s) => format!("integer {s}"),
        Cell::Float(f) => format!("number {f}"),
        Cell::Float32(f) => format!("number {f}"),
        Cell::Bool(b) => format!("bool {b}"),
        Cell::F32List(v) => format!("float list of {}", v.len()),
        Cell::F64List(v) => format!("float list of {}", v.len()),
        Cell::StrList(v) => format!("string list of {}", v.len()),
        Cell::IntList(v) => format!("integer list of {}", v.len()),
        Cell::Sparse(v) => format!("map of {}", v.len()),
        Cell::Timestamp(s) => format!("timestamp {s}"),
    }
}

/// 2^63 as f64: floats at or beyond it (in magnitude) are outside int64.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// An integer literal as written (optional sign, then digits): text that did not parse as an
/// i64 but matches this is an integer out of range, not a malformed value.
fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// "value N is out of range for int64", with N as the source wrote it (very long values are
/// shortened in the message; the dead-letter record keeps them whole).
fn out_of_int64_range(literal: &str) -> String {
    const SHOWN: usize = 64;
    let shown = if literal.len() > SHOWN {
        format!(
            "{}… ({} digits)",
            literal.get(..SHOWN).unwrap_or(literal),
            literal.trim_start_matches(['-', '+']).len()
        )
    } else {
        literal.to_string()
    };
    format!("value {shown} is out of range for int64 (-9223372036854775808 to 9223372036854775807)")
}

/// An integral float outside int64: the digits past the 17th were lost when it was read as a float,
/// so it is shown in exponent form rather than with invented digits.
fn float_out_of_int64_range(f: f64) -> String {
    format!("number {f:e} is out of range for int64 (-9223372036854775808 to 9223372036854775807)")
}

fn coerce_int(cell: &Cell) -> Result<i64, String> {
    let from_f64 = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            Ok(f as i64)
        } else if f.fract() == 0.0 && f.abs() >= TWO_POW_63 {
            Err(float_out_of_int64_range(f))
        } else {
            Err(format!("number {f} is not an exact integer"))
        }
    };
    match cell {
        Cell::Int(i) => Ok(*i),
        Cell::Text(s) => {
            let t = s.trim();
            match t.parse::<i64>() {
                Ok(i) => Ok(i),
                Err(_) if is_integer_literal(t) => Err(out_of_int64_range(t)),
                Err(_) => Err(format!("{} is not an integer", describe(cell))),
            }
        }
        Cell::Json(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(i),
            // serde_json keeps integers up to u64::MAX exactly: the message has the digits.
            None if n.is_u64() => Err(out_of_int64_range(&n.to_string())),
            None => from_f64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Cell::BigInt(s) => Err(out_of_int64_range(s)),
        Cell::Float(f) => from_f64(*f),
        Cell::Float32(f) => from_f64(f64::from(*f)),
        other => Err(format!("{} is not an integer", describe(other))),
    }
}

/// A `list<int64>` element that is not an int64, explained. `text` is the cell's JSON text when
/// it came from CSV: an integer literal too big for i64 is then quoted from it as written.
fn bad_int_list_element(
    items: &[serde_json::Value],
    index: usize,
    x: &serde_json::Value,
    text: Option<&str>,
) -> String {
    let literal = text.and_then(|t| {
        // Every element is a number here, so splitting on commas finds each one's text.
        let inner = t.trim().strip_prefix('[')?.strip_suffix(']')?;
        let all_numbers = items.iter().all(serde_json::Value::is_number);
        let token = inner.split(',').nth(index)?.trim();
        (all_numbers && is_integer_literal(token)).then_some(token)
    });
    match (literal, x) {
        (Some(t), _) => format!("list element {}", out_of_int64_range(t)),
        (None, serde_json::Value::Number(n)) if n.is_u64() => {
            format!("list element {}", out_of_int64_range(&n.to_string()))
        }
        (None, serde_json::Value::Number(n))
            if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() >= TWO_POW_63) =>
        {
            format!(
                "list element {}",
                float_out_of_int64_range(n.as_f64().unwrap_or(f64::NAN))
            )
        }
        _ => format!("list element `{}` is not an int64", short_json(x)),
    }
}

fn finite_f32(f: f64) -> Result<f32, String> {
    let v = f as f32;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{f} is not a finite float32"))
    }
}

fn coerce_f32(cell: &Cell) -> Result<f32, String> {
    match cell {
        Cell::Float32(f) if f.is_finite() => Ok(*f),
        Cell::Float32(f) => Err(format!("{f} is not a finite float32")),
        Cell::Float(f) => finite_f32(*f),
        Cell::Int(i) => Ok(*i as f32),
        Cell::Text(s) | Cell::BigInt(s) => match s.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{} is not a finite number", describe(cell))),
        },
        Cell::Json(serde_json::Value::Number(n)) => finite_f32(n.as_f64().unwrap_or(f64::NAN)),
        other => Err(format!("{} is not a number", describe(other))),
    }
}

fn coerce_string(cell: &Cell) -> Result<String, String> {
    match cell {
        Cell::Text(s) => Ok(s.clone()),
        Cell::Json(serde_json::Value::String(s)) => Ok(s.clone()),
        // Integers become strings losslessly (numeric ids in a string key are common).
        Cell::Int(i) => Ok(i.to_string()),
        Cell::BigInt(s) => Ok(s.clone()),
        Cell::Json(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(format!("{} is not a string", describe(other))),
    }
}

fn coerce_bool(cell: &Cell) -> Result<bool, String> {
    match cell {
        Cell::Bool(b) => Ok(*b),
        Cell::Json(serde_json::Value::Bool(b)) => Ok(*b),
        Cell::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{} is not true or false", describe(cell))),
        },
        other => Err(format!("{} is not true or false", describe(other))),
    }
}

/// A CSV cell holding JSON text (vectors, lists, sparse vectors) or a JSONL value, borrowed
/// when it is already JSON (no copy of a vector on the hot path).
fn json_of(cell: &Cell) -> Result<Option<Cow<'_, serde_json::Value>>, String> {
    match cell {
        Cell::Json(v) => Ok(Some(Cow::Borrowed(v))),
        Cell::Text(s) => serde_json::from_str(s.trim())
            .map(|v| Some(Cow::Owned(v)))
            .map_err(|e| format!("{} is not valid JSON ({e})", describe(cell))),
        _ => Ok(None),
    }
}

fn json_array<'a>(v: &'a serde_json::Value, what: &str) -> Result<&'a [serde_json::Value], String> {
    match v {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(format!("expected a JSON array of {what}, got `{}`", short_json(other))),
    }
}

fn short_json(v: &serde_json::Value) -> String {
    v.to_string().chars().take(40).collect()
}

/// A vector cell's text (`[0.5, -1, 2e-3]`) checked and kept as text: a flat JSON array of JSON
/// numbers, each a finite `f32`, written on compactly as it came. Parsing 768 numbers into `f32`s
/// and formatting them again for the request was half the CPU of a 768-dim CSV row; the server
/// reads the same digits into the same `f32` either way. `None` for anything else (the general
/// path then parses it and says what is wrong, with the same messages as ever).
#[cfg(test)]
fn vector_text(text: &str) -> Option<(String, usize)> {
    vector_text_of(text).map(|(t, n)| (t.into_owned(), n))
}

/// [`vector_text`], borrowing the text when it is already compact.
fn vector_text_of(text: &str) -> Option<(Cow<'_, str>, usize)> {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let b = text.as_bytes();
    let start = b.iter().position(|c| !is_ws(c))?;
    let array = scan_numbers(b, start)?;
    if !b[array.end..].iter().all(is_ws) {
        return None;
    }
    kept_text(text.get(start..array.end)?, &array)
}

/// An array's text (see [`crate::source::NumberArray`]) as it is kept: compact (borrowed when it
/// is already), with its length; `None` unless every number is a finite `f32` and there is one
/// at least.
fn kept_text<'a>(text: &'a str, array: &NumberArray) -> Option<(Cow<'a, str>, usize)> {
    if array.count == 0 || !array.finite_f32 {
        return None;
    }
    let kept = if array.spaced {
        Cow::Owned(compact(text))
    } else {
        Cow::Borrowed(text)
    };
    Some((kept, array.count))
}

/// A vector kept as its text (see [`vector_text`]), its dimensions checked; `None` when the text
/// is not of the kind that is kept.
fn kept_vector(text: &str, dim: Option<usize>) -> Option<Result<Field<'_>, String>> {
    kept(vector_text_of(text)?, dim)
}

/// A long JSONL array kept as its text (see [`kept_vector`]), checked by the reader already or here.
fn kept_array(t: &ArrayText, dim: Option<usize>) -> Option<Result<Field<'_>, String>> {
    match t.checked_numbers() {
        Some(array) => kept_text(t, array).and_then(|k| kept(k, dim)),
        None => kept_vector(t, dim),
    }
}

fn kept((text, n): (Cow<'_, str>, usize), dim: Option<usize>) -> Option<Result<Field<'_>, String>> {
    Some(check_dimensions(n, dim).map(|()| match text {
        Cow::Borrowed(t) => Field::VectorText(t),
        Cow::Owned(t) => Field::Value(Value::VectorText(VectorText::checked(t))),
    }))
}

fn coerce_vector(cell: &Cell, dim: Option<usize>) -> Result<Field<'_>, String> {
    if let Cell::Text(s) = cell
        && let Some(v) = kept_vector(s, dim)
    {
        return v;
    }
    let v: Vec<f32> = match cell {
        Cell::F32List(v) => return check_vector(v, dim).map(|()| Field::Vector(v)),
        Cell::F64List(v) => v.iter().map(|x| *x as f32).collect(),
        Cell::IntList(v) => v.iter().map(|x| *x as f32).collect(),
        other => match json_of(other)? {
            Some(j) => json_array(&j, "numbers")?
                .iter()
                .map(|x| match x {
                    serde_json::Value::Number(n) => finite_f32(n.as_f64().unwrap_or(f64::NAN)),
                    other => Err(format!("vector element `{}` is not a number", short_json(other))),
                })
                .collect::<Result<_, _>>()?,
            None => return Err(format!("{} is not a vector", describe(other))),
        },
    };
    check_vector(&v, dim)?;
    Ok(Field::Value(Value::Vector(v)))
}

/// With `vector_encoding = "base64"`: a vector given as text that is not an array (an array's
/// text starts with `[`, which base64 never does), read as V2's packed form, standard padded
/// base64 of little-endian float32s (or float64s, when there are 8 × `dim` bytes): what that
/// setting sends, and so what a dead-letter entry then holds. `None` for a cell that is not such
/// text: the general path then says what is wrong with it.
fn packed_vector(cell: &Cell, dim: Option<usize>) -> Option<Result<Field<'static>, String>> {
    use base64::Engine as _;
    let text = match cell {
        Cell::Text(s) => s.trim(),
        Cell::Json(serde_json::Value::String(s)) => s.trim(),
        _ => return None,
    };
    if text.starts_with('[') {
        return None;
    }
    let bytes = match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(b) => b,
        Err(e) => {
            return Some(Err(format!(
                "{} is neither a JSON array of numbers nor base64 of packed float32s ({e})",
                describe(cell)
            )));
        }
    };
    let n = bytes.len();
    let v: Vec<f32> = match dim {
        Some(d) if n == 8 * d && n != 0 => bytes
            .chunks_exact(8)
            .map(|b| b.first_chunk::<8>().map_or(f32::NAN, |b| f64::from_le_bytes(*b) as f32))
            .collect(),
        _ if n % 4 != 0 || n == 0 => {
            return Some(Err(format!(
                "base64 of {n} bytes is not a packed vector (whole float32s, 4 bytes each)"
            )));
        }
        _ => crate::record::le_f32s(&bytes),
    };
    if let Some(d) = dim
        && v.len() != d
    {
        return Some(Err(format!(
            "base64 of {n} bytes holds {} float32s; the collection's dim {d} needs {} bytes (or {} as float64s)",
            n / 4,
            4 * d,
            8 * d
        )));
    }
    Some(check_vector(&v, dim).map(|()| Field::Value(Value::Vector(v))))
}

/// Every element finite, and the collection's number of them.
fn check_vector(v: &[f32], dim: Option<usize>) -> Result<(), String> {
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(format!("vector element {bad} is not finite"));
    }
    check_dimensions(v.len(), dim)
}

fn check_dimensions(n: usize, dim: Option<usize>) -> Result<(), String> {
    if let Some(d) = dim
        && n != d
    {
        return Err(format!("vector has {n} dimensions, the collection's is {d}"));
    }
    if n == 0 {
        return Err("vector is empty".into());
    }
    Ok(())
}

/// A cell typed as `ty` (see [`Field`]).
fn coerce_field(cell: &Cell, ty: FieldType, dim: Option<usize>) -> Result<Field<'_>, String> {
    match (ty, cell) {
        (FieldType::Vector, Cell::Text(_) | Cell::F32List(_)) => coerce_vector(cell, dim),
        (FieldType::String | FieldType::Text, Cell::Text(s)) => Ok(Field::Str(s)),
        (FieldType::DateTime, Cell::Timestamp(s)) => Ok(Field::Str(s)),
        (FieldType::DateTime, Cell::Text(s)) if valid_date_time(s) => Ok(Field::Str(s)),
        (FieldType::ListString, Cell::StrList(v)) => Ok(Field::StrList(v)),
        (_, Cell::JsonArray(t)) => {
            // A long JSONL array: a vector straight from its text (checked by the reader already,
            // or here), anything else parsed first.
            if ty == FieldType::Vector
                && let Some(v) = kept_array(t, dim)
            {
                return v;
            }
            coerce_value(&Cell::Json(json_array_value(t)), ty, dim).map(Field::Value)
        }
        _ => coerce_value(cell, ty, dim).map(Field::Value),
    }
}

fn coerce_value(cell: &Cell, ty: FieldType, dim: Option<usize>) -> Result<Value, String> {
    if let Cell::JsonArray(_) = cell {
        return coerce_field(cell, ty, dim).map(Field::into_value);
    }
    match ty {
        FieldType::Int64 => coerce_int(cell).map(Value::Int),
        FieldType::Float32 => coerce_f32(cell).map(Value::Float),
        FieldType::Bool => coerce_bool(cell).map(Value::Bool),
        FieldType::String | FieldType::Text => coerce_string(cell).map(Value::Str),
        FieldType::Vector => coerce_vector(cell, dim).map(Field::into_value),
        FieldType::ListString => match cell {
            Cell::StrList(v) => Ok(Value::StrList(v.clone())),
            other => match json_of(other)? {
                Some(j) => json_array(&j, "strings")?
                    .iter()
                    .map(|x| match x {
                        serde_json::Value::String(s) => Ok(s.clone()),
                        other => Err(format!("list element `{}` is not a string", short_json(other))),
                    })
                    .collect::<Result<_, _>>()
                    .map(Value::StrList),
                None => Err(format!("{} is not a list of strings", describe(other))),
            },
        },
        FieldType::ListInt64 => match cell {
            Cell::IntList(v) => Ok(Value::IntList(v.clone())),
            other => match json_of(other)? {
                Some(j) => {
                    let items = json_array(&j, "integers")?;
                    let text = match other {
                        Cell::Text(s) => Some(s.as_str()),
                        _ => None,
                    };
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| x.as_i64().ok_or_else(|| bad_int_list_element(items, i, x, text)))
                        .collect::<Result<_, _>>()
                        .map(Value::IntList)
                }
                None => Err(format!("{} is not a list of integers", describe(other))),
            },
        },
        FieldType::SparseVector => match cell {
            Cell::Sparse(v) => v
                .iter()
                .map(|(k, w)| finite_f32(*w).map(|w| (k.clone(), w)))
                .collect::<Result<_, _>>()
                .map(Value::Sparse),
            other => match json_of(other)?.as_deref() {
                Some(serde_json::Value::Object(m)) => m
                    .iter()
                    .map(|(k, w)| match w {
                        serde_json::Value::Number(n) => {
                            finite_f32(n.as_f64().unwrap_or(f64::NAN)).map(|w| (k.clone(), w))
                        }
                        other => Err(format!(
                            "sparse weight for `{k}` is `{}`, not a number",
                            short_json(other)
                        )),
                    })
                    .collect::<Result<_, _>>()
                    .map(Value::Sparse),
                Some(j) => Err(format!(
                    "expected a JSON object token → weight, got `{}`",
                    short_json(j)
                )),
                None => Err(format!("{} is not a sparse vector", describe(other))),
            },
        },
        FieldType::DateTime => {
            let s = match cell {
                Cell::Timestamp(s) => return Ok(Value::Str(s.clone())),
                other => coerce_string(other)?,
            };
            if valid_date_time(&s) {
                Ok(Value::Str(s))
            } else {
                Err(format!(
                    "`{s}` is not an RFC 3339 date-time with a zone (e.g. 2025-08-12T11:33:56+08:00)"
                ))
            }
        }
        FieldType::GeoPoint => {
            let s = coerce_string(cell)?;
            let parsed = s
                .split_once(',')
                .and_then(|(lon, lat)| Some((lon.trim().parse::<f64>().ok()?, lat.trim().parse::<f64>().ok()?)));
            match parsed {
                Some((lon, lat)) if lon > -180.0 && lon < 180.0 && lat > -90.0 && lat < 90.0 => Ok(Value::Str(s)),
                _ => Err(format!(
                    "`{s}` is not \"longitude,latitude\" within (-180,180) and (-90,90)"
                )),
            }
        }
        FieldType::Image => {
            let s = coerce_string(cell)?;
            if s.starts_with("tos://") || s.starts_with("http://") || s.starts_with("https://") {
                Ok(Value::Str(s))
            } else {
                Err(format!("`{s}` is not a tos:// or http(s):// image location"))
            }
        }
    }
}

/// RFC 3339 at second or millisecond precision, or at minute precision (`2025-08-12T11:33+08:00`).
pub fn valid_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M%:z").is_ok()
        || s.strip_suffix('Z')
            .is_some_and(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M").is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Position;

    fn schema() -> Schema {
        let mut fields = BTreeMap::new();
        for (k, v) in [
            ("id", "int64"),
            ("name", "string"),
            ("score", "float32"),
            ("ok", "bool"),
            ("vec", "vector"),
            ("tags", "list<string>"),
            ("nums", "list<int64>"),
            ("sp", "sparse_vector"),
            ("at", "date_time"),
            ("geo", "geo_point"),
            ("img", "image"),
        ] {
            fields.insert(k.to_string(), v.parse().expect("type"));
        }
        Schema::from_config(&CollectionConfig {
            async_upsert: false,
            name: Some("c".into()),
            resource_id: None,
            alias: None,
            primary_key: "id".into(),
            vectorize: false,
            dim: Some(4),
            ignore_unknown_fields: false,
            vector_encoding: VectorEncoding::Array,
            fields,
        })
    }

    fn row(cells: &[(&str, Cell)]) -> RawRow {
        RawRow {
            row: 7,
            cells: cells.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect(),
            end: Position::Offset {
                byte: 0,
                rows: 7,
                line: None,
            },
        }
    }

    fn mapping(op: Op) -> SourceMapping {
        SourceMapping {
            op: Some(op),
            op_column: None,
            ttl: None,
            ttl_column: None,
            renames: BTreeMap::new(),
        }
    }

    fn origin() -> Origin {
        Origin {
            file: 0,
            row: 7,
            seq: 0,
        }
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    /// Row `{id, vec}` typed by `s` for `op`: its JSON, or why it was refused.
    fn typed_vector(s: &Schema, id: i64, vec: Cell, op: Op) -> Result<Box<str>, String> {
        s.coerce(&row(&[("id", Cell::Int(id)), ("vec", vec)]), &mapping(op), origin())
            .map(|r| r.json)
            .map_err(|e| e.reason)
    }

    #[test]
    fn key_of_is_the_key_coerce_gives_valid_or_not() {
        let s = schema();
        let mut renamed = mapping(Op::Upsert);
        renamed.renames.insert("key".into(), "id".into());
        let mut by_column = mapping(Op::Upsert);
        by_column.op = None;
        by_column.op_column = Some("id".into());
        let cases: Vec<(RawRow, &SourceMapping)> = vec![
            (row(&[("id", text("007")), ("score", text("0.5"))]), &renamed),
            (row(&[("id", text("12")), ("score", text("abc"))]), &renamed),
            (row(&[("id", text("x1")), ("score", text("1"))]), &renamed),
            (row(&[("id", Cell::Null), ("score", text("1"))]), &renamed),
            (row(&[("key", text("5")), ("score", text("1"))]), &renamed),
            (row(&[("key", text("5")), ("id", text("6"))]), &renamed),
            (row(&[("id", text("bad")), ("key", text("8"))]), &renamed),
            (row(&[("score", text("1"))]), &renamed),
            // `id` is the op column here: not the key.
            (row(&[("id", text("upsert")), ("score", text("1"))]), &by_column),
        ];
        for (r, m) in cases {
            let from_coerce = match s.coerce(&r, m, origin()) {
                Ok(rec) => Some(rec.key),
                Err(rej) => rej.key,
            };
            assert_eq!(s.key_of(&r, m), from_coerce, "{:?}", r.cells);
        }
    }

    #[test]
    fn csv_text_cells_coerce_to_every_type() {
        let r = row(&[
            ("id", text("9007199254740993")),
            ("name", text("北京")),
            ("score", text("0.1")),
            ("ok", text("true")),
            ("vec", text("[0.1, 0.2, 0.3, 4e-7]")),
            ("tags", text(r#"["a","b"]"#)),
            ("nums", text("[1, 9007199254740993]")),
            ("sp", text(r#"{"tok": 0.5}"#)),
            ("at", text("2025-08-12T11:33:56+08:00")),
            ("geo", text("116.408108,39.915023")),
            ("img", text("tos://bucket/a.jpg")),
        ]);
        let rec = schema().coerce(&r, &mapping(Op::Upsert), origin()).expect("valid");
        assert_eq!(rec.key, PrimaryKey::Int(9007199254740993));
        assert_eq!(
            &*rec.json,
            r#"{"id":9007199254740993,"name":"北京","score":0.1,"ok":true,"vec":[0.1,0.2,0.3,4e-7],"tags":["a","b"],"nums":[1,9007199254740993],"sp":{"tok":0.5},"at":"2025-08-12T11:33:56+08:00","geo":"116.408108,39.915023","img":"tos://bucket/a.jpg"}"#
        );
    }

    #[test]
    fn empty_cells_are_absent_fields() {
        let r = row(&[("id", text("5")), ("name", Cell::Null), ("score", Cell::Null)]);
        let rec = schema().coerce(&r, &mapping(Op::Update), origin()).expect("valid");
        assert_eq!(&*rec.json, r#"{"id":5}"#);
    }

    #[test]
    fn bad_rows_are_rejected_with_every_reason() {
        let s = schema();
        let zero = s
            .coerce(&row(&[("id", text("0"))]), &mapping(Op::Upsert), origin())
            .expect_err("zero");
        assert!(zero.reason.contains("is 0"), "{}", zero.reason);
        let missing = s
            .coerce(&row(&[("name", text("x"))]), &mapping(Op::Upsert), origin())
            .expect_err("missing");
        assert!(missing.reason.contains("missing"), "{}", missing.reason);
        let r = row(&[
            ("id", text("3")),
            ("score", text("abc")),
            ("vec", text("[1,2,3]")),
            ("zzz", text("1")),
        ]);
        let e = s.coerce(&r, &mapping(Op::Upsert), origin()).expect_err("bad");
        assert_eq!(e.key, Some(PrimaryKey::Int(3)));
        assert!(
            e.reason.contains("score") && e.reason.contains("3 dimensions") && e.reason.contains("zzz"),
            "{}",
            e.reason
        );
        let e = s
            .coerce(
                &row(&[("id", text("3")), ("geo", text("200,1"))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("geo");
        assert!(e.reason.contains("longitude"));
        let e = s
            .coerce(
                &row(&[("id", text("3")), ("ok", text("yes"))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("bool");
        assert!(e.reason.contains("true or false"));
    }

    #[test]
    fn deletes_need_only_the_key_and_op_column_is_read() {
        let mut m = mapping(Op::Upsert);
        m.op = None;
        m.op_column = Some("op".into());
        let r = row(&[("op", text("DELETE")), ("id", text("12")), ("score", text("junk"))]);
        let rec = schema().coerce(&r, &m, origin()).expect("delete");
        assert_eq!(rec.op, Op::Delete);
        let missing = schema()
            .coerce(&row(&[("id", text("1"))]), &m, origin())
            .expect_err("no op");
        assert!(
            missing.reason.contains("op column `op` is missing"),
            "{}",
            missing.reason
        );
        let bad = schema().coerce(&row(&[("op", text("merge")), ("id", text("1"))]), &m, origin());
        assert!(bad.expect_err("bad op").reason.contains("merge"));
    }

    #[test]
    fn f32_stays_f32_and_ttl_column_applies() {
        let mut m = mapping(Op::Upsert);
        m.ttl_column = Some("ttl".into());
        let r = row(&[
            ("id", Cell::Int(1)),
            ("vec", Cell::F32List(vec![0.1, 0.2, 0.3, 0.4])),
            ("ttl", Cell::Int(60)),
        ]);
        let rec = schema().coerce(&r, &m, origin()).expect("valid");
        assert_eq!(rec.ttl, Some(60));
        assert_eq!(&*rec.json, r#"{"id":1,"vec":[0.1,0.2,0.3,0.4]}"#);
    }

    #[test]
    fn base64_encoding_packs_f32_vectors_and_keeps_vector_text_as_it_came() {
        let mut s = schema();
        s.vector_encoding = VectorEncoding::Base64;
        let list = || Cell::F32List(vec![1.0, -2.0, 0.0, 0.5]);
        // A Parquet list: 1.0, -2.0, 0.0, 0.5 little-endian, base64.
        assert_eq!(
            &*typed_vector(&s, 1, list(), Op::Upsert).expect("valid"),
            r#"{"id":1,"vec":"AACAPwAAAMAAAAAAAAAAPw=="}"#
        );
        // An update goes as an array: only upsertData documents the packed form.
        assert_eq!(
            &*typed_vector(&s, 1, list(), Op::Update).expect("valid"),
            r#"{"id":1,"vec":[1.0,-2.0,0.0,0.5]}"#
        );
        // Parsed from JSON numbers (an owned vector): packed too.
        let parsed = Cell::Json(serde_json::json!([1, -2, 0, 0.5]));
        assert_eq!(
            &*typed_vector(&s, 2, parsed, Op::Upsert).expect("valid"),
            r#"{"id":2,"vec":"AACAPwAAAMAAAAAAAAAAPw=="}"#
        );
        // A CSV cell's text goes as it came.
        assert_eq!(
            &*typed_vector(&s, 3, text("[1,-2,0,0.5]"), Op::Upsert).expect("valid"),
            r#"{"id":3,"vec":[1,-2,0,0.5]}"#
        );
    }

    #[test]
    fn a_packed_vector_read_back_from_a_dead_letter_is_checked_and_resent() {
        // With base64 encoding, text that is base64 of whole little-endian f32s is a vector: what
        // that setting sends, and so what a dead-letter entry holds. It is checked like any other,
        // packed again for an upsert and written as an array for an update.
        let mut s = schema();
        s.vector_encoding = VectorEncoding::Base64;
        let f64s: Vec<u8> = [1.0f64, -2.0, 0.0, 0.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let f64s = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(f64s)
        };
        for cell in [
            text("AACAPwAAAMAAAAAAAAAAPw=="),
            Cell::Json(serde_json::json!("AACAPwAAAMAAAAAAAAAAPw==")),
            text(&f64s),
        ] {
            let upsert = typed_vector(&s, 1, cell.clone(), Op::Upsert).expect("valid");
            assert_eq!(&*upsert, r#"{"id":1,"vec":"AACAPwAAAMAAAAAAAAAAPw=="}"#);
            let update = typed_vector(&s, 1, cell, Op::Update).expect("valid");
            assert_eq!(&*update, r#"{"id":1,"vec":[1.0,-2.0,0.0,0.5]}"#);
        }
        for (cell, why) in [
            (
                text("AACAPwAAAMAAAAAA"),
                "base64 of 12 bytes holds 3 float32s; the collection's dim 4 needs 16 bytes (or 32 as float64s)",
            ),
            (text("AACAPwAAwH8AAAAAAAAAPw=="), "vector element NaN is not finite"),
            (
                text("AACAPwAAAMA"),
                "neither a JSON array of numbers nor base64 of packed float32s",
            ),
            (text("AACA"), "base64 of 3 bytes is not a packed vector"),
            (text("[1,2,3]"), "vector has 3 dimensions, the collection's is 4"),
        ] {
            let e = typed_vector(&s, 1, cell, Op::Upsert).expect_err("refused");
            assert!(e.contains(why), "{why}: {e}");
        }
        // With array encoding (the default) base64 text is not a vector: a hash or an id that
        // lands in the vector column is refused, never read as numbers.
        for t in ["AACAPwAAAMAAAAAAAAAAPw==", "d41d8cd98f00b204e9800998ecf8427e"] {
            let e = typed_vector(&schema(), 1, text(t), Op::Upsert).expect_err("not a vector");
            assert!(e.contains("is not valid JSON"), "{e}");
        }
    }

    #[test]
    fn parquet_f32_vectors_are_written_as_serde_json_writes_them_and_non_finite_ones_rejected() {
        let s = schema();
        let tricky = vec![-0.0, f32::MIN_POSITIVE, f32::from_bits(0x3dcc_ccd3), f32::MAX];
        let rec = s
            .coerce(
                &row(&[("id", Cell::Int(2)), ("vec", Cell::F32List(tricky.clone()))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect("valid");
        let want = serde_json::to_string(&Value::Vector(tricky)).expect("json");
        assert_eq!(&*rec.json, format!(r#"{{"id":2,"vec":{want}}}"#));
        assert_eq!(want, "[-0.0,1.1754944e-38,0.100000046,3.4028235e+38]");
        for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
            let e = s
                .coerce(
                    &row(&[("id", Cell::Int(3)), ("vec", Cell::F32List(vec![0.5, bad, 0.25, 1.0]))]),
                    &mapping(Op::Upsert),
                    origin(),
                )
                .expect_err("not finite");
            assert_eq!(e.key, Some(PrimaryKey::Int(3)));
            assert!(
                e.reason
                    .contains(&format!("field `vec` (vector): vector element {shown} is not finite")),
                "{}",
                e.reason
            );
        }
    }
    #[test]
    fn integers_beyond_int64_are_named_with_their_digits() {
        let s = schema();
        let cases = [
            (
                text("99999999999999999999"),
                "value 99999999999999999999 is out of range for int64",
            ),
            (
                text(" -9223372036854775809 "),
                "value -9223372036854775809 is out of range for int64",
            ),
            (
                text("+18446744073709551616"),
                "value +18446744073709551616 is out of range for int64",
            ),
            (
                Cell::Json(serde_json::json!(18446744073709551615u64)),
                "value 18446744073709551615 is out of range for int64",
            ),
            (
                Cell::Json(serde_json::from_str("18446744073709551616").expect("json")),
                "number 1.8446744073709552e19 is out of range for int64",
            ),
            (Cell::Float(1e20), "number 1e20 is out of range for int64"),
            (text("12a"), "`12a` is not an integer"),
            (text("1e3"), "`1e3` is not an integer"),
        ];
        for (cell, expected) in cases {
            assert_eq!(
                coerce_int(&cell).expect_err("out of range").split(" (").next(),
                Some(expected),
                "{cell:?}"
            );
            // The same cell as the primary key.
            let e = s
                .coerce(&row(&[("id", cell.clone())]), &mapping(Op::Upsert), origin())
                .expect_err("key");
            assert!(
                e.reason.contains(expected) && e.reason.contains("primary key `id`"),
                "{}",
                e.reason
            );
        }
        let long = "9".repeat(200);
        let e = coerce_int(&text(&long)).expect_err("long");
        assert!(e.contains("(200 digits)") && e.len() < 200, "{e}");
        // In range, at the edges.
        assert_eq!(coerce_int(&text("-9223372036854775808")), Ok(i64::MIN));
        assert_eq!(coerce_int(&text("9223372036854775807")), Ok(i64::MAX));
    }

    #[test]
    fn list_int64_elements_beyond_int64_keep_their_digits() {
        let s = schema();
        let e = s
            .coerce(
                &row(&[("id", text("5")), ("nums", text("[1, 99999999999999999999 ,3]"))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("big element");
        assert!(
            e.reason
                .contains("list element value 99999999999999999999 is out of range for int64"),
            "{}",
            e.reason
        );
        let json = |t: &str| Cell::Json(serde_json::from_str(t).expect("json"));
        let e = s
            .coerce(
                &row(&[("id", text("5")), ("nums", json("[1, 9223372036854775808]"))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("u64 element");
        assert!(
            e.reason.contains("value 9223372036854775808 is out of range"),
            "{}",
            e.reason
        );
        let e = s
            .coerce(
                &row(&[("id", text("5")), ("nums", text(r#"["a,b", 99999999999999999999]"#))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("mixed");
        assert!(e.reason.contains("`\"a,b\"` is not an int64"), "{}", e.reason);
        let e = s
            .coerce(
                &row(&[("id", text("5")), ("nums", text("[1.5]"))]),
                &mapping(Op::Upsert),
                origin(),
            )
            .expect_err("fraction");
        assert!(e.reason.contains("`1.5` is not an int64"), "{}", e.reason);
    }

    #[test]
    fn a_ttl_beyond_int64_is_explained() {
        let mut m = mapping(Op::Upsert);
        m.ttl_column = Some("ttl".into());
        let e = schema()
            .coerce(
                &row(&[("id", text("1")), ("ttl", text("99999999999999999999"))]),
                &m,
                origin(),
            )
            .expect_err("ttl");
        assert!(
            e.reason
                .contains("ttl column `ttl`: value 99999999999999999999 is out of range"),
            "{}",
            e.reason
        );
    }
}

#[cfg(test)]
mod vector_text_tests {
    use super::*;

    /// The general path: the cell parsed as JSON, each number read as an `f64` and narrowed.
    fn slow(text: &str) -> Result<Vec<f32>, String> {
        let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| e.to_string())?;
        let items = v.as_array().ok_or("not an array")?;
        items
            .iter()
            .map(|x| {
                let f = x.as_f64().ok_or("not a number")? as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err("not finite".to_string())
                }
            })
            .collect()
    }

    #[test]
    fn text_kept_only_when_it_is_an_array_of_finite_f32_json_numbers_and_means_the_same() {
        let cases = [
            "[0.5,-1,2e-3]",
            " [ 0.5 , -1 ,\t2E+3 ]\n",
            "[0]",
            "[-0]",
            "[-0.0]",
            "[1e38]",
            "[3.4e38]",
            "[3.5e38]",
            "[1e39]",
            "[1e-50]",
            "[123456789012345678901234567890123456789]",
            "[12345678901234567890123456789012345678]",
            "[0.1000000000000000055511151231257827]",
            "[1.]",
            "[.5]",
            "[+1]",
            "[01]",
            "[NaN]",
            "[inf]",
            "[1,,2]",
            "[1,]",
            "[,1]",
            "[]",
            "[ ]",
            "[[1]]",
            "[1 2]",
            "[1e]",
            "[1e+]",
            "[-]",
            "[\"1\"]",
            "[true]",
            "1,2",
            "[1,2",
            "",
        ];
        let mut kept = 0;
        for text in cases {
            match vector_text(text) {
                Some((compact, n)) => {
                    kept += 1;
                    let want = slow(text).unwrap_or_else(|e| panic!("{text:?} kept but the general path says {e}"));
                    let got = VectorText::checked(compact.clone()).to_f32s();
                    assert_eq!(got, want, "{text:?} -> {compact:?}");
                    assert_eq!(n, want.len(), "{text:?}");
                    assert!(!compact.contains(char::is_whitespace), "{compact:?}");
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&compact).is_ok(),
                        "{compact:?}"
                    );
                }
                // Not kept: the general path decides, as before (an error, or values it accepts
                // that are not JSON numbers of the plain kind).
                None => assert!(
                    slow(text).is_err() || slow(text).is_ok_and(|v| v.is_empty()),
                    "{text:?} refused by the fast check but fine for the general path"
                ),
            }
        }
        assert!(kept >= 10, "{kept}");
    }

    #[test]
    fn a_long_jsonl_array_types_as_the_parsed_one_does() {
        let long = |items: &str| format!("[{}]", vec![items; 40].join(", "));
        for (text, ty, dim) in [
            (long("0.5"), FieldType::Vector, Some(40)),
            (long("0.5"), FieldType::Vector, Some(3)),
            (long("\"x\""), FieldType::Vector, None),
            (long("7"), FieldType::ListInt64, None),
            (long("\"x\""), FieldType::ListString, None),
            (long("7"), FieldType::String, None),
        ] {
            let kept = coerce_value(&Cell::JsonArray(text.clone().into()), ty, dim);
            let parsed = coerce_value(&Cell::Json(serde_json::from_str(&text).expect("json")), ty, dim);
            let as_json = |v: &Result<Value, String>| {
                v.as_ref()
                    .map(|v| serde_json::to_string(v).expect("json"))
                    .map_err(String::clone)
            };
            assert_eq!(as_json(&kept), as_json(&parsed), "{ty} {text}");
        }
    }

    #[test]
    fn a_long_jsonl_array_checked_by_the_reader_types_as_an_unchecked_one_does() {
        let long = |items: &str| format!("[{}]", vec![items; 40].join(", "));
        for (text, ty, dim) in [
            (long("0.5"), FieldType::Vector, Some(40)),
            (long("0.5"), FieldType::Vector, Some(3)),
            (long("-0"), FieldType::Vector, None),
            (long("1e39"), FieldType::Vector, None),
            (long("3.4028235e38"), FieldType::Vector, None),
            (long("7").replace(' ', ""), FieldType::Vector, Some(40)),
            (long("7"), FieldType::ListInt64, None),
            (long("7"), FieldType::String, None),
            ("[ ]".to_string(), FieldType::Vector, None),
        ] {
            let array = crate::source::scan_numbers(text.as_bytes(), 0).expect("numbers");
            assert_eq!(array.end, text.len());
            let checked = crate::source::ArrayText::numbers(&text, array);
            let kept = coerce_value(&Cell::JsonArray(checked), ty, dim);
            let unchecked = coerce_value(&Cell::JsonArray(text.clone().into()), ty, dim);
            let as_json = |v: &Result<Value, String>| {
                v.as_ref()
                    .map(|v| serde_json::to_string(v).expect("json"))
                    .map_err(String::clone)
            };
            assert_eq!(as_json(&kept), as_json(&unchecked), "{ty} {text}");
        }
    }

    #[test]
    fn a_borrowed_field_is_written_as_its_owned_value_is() {
        let text = |s: &str| Cell::Text(s.into());
        let long = |items: &str| format!("[{}]", vec![items; 40].join(","));
        let checked = |t: &str| {
            let array = crate::source::scan_numbers(t.as_bytes(), 0).expect("numbers");
            Cell::JsonArray(crate::source::ArrayText::numbers(t, array))
        };
        let cases = [
            (text("[0.5,-1,2e-3,8]"), FieldType::Vector, Some(4)),
            (text(" [ 0.5, -1 ,2e-3, 8 ] "), FieldType::Vector, Some(4)),
            (text("[0.5,-1,2e-3]"), FieldType::Vector, Some(4)),
            (text("[0.5,\"x\",1,2]"), FieldType::Vector, Some(4)),
            (text("[1e39,1,2,3]"), FieldType::Vector, Some(4)),
            (text("[]"), FieldType::Vector, None),
            (
                Cell::F32List(vec![0.1, -0.0, 1e-45, f32::MAX]),
                FieldType::Vector,
                Some(4),
            ),
            (Cell::F32List(vec![0.1, f32::NAN, 1.0, 2.0]), FieldType::Vector, Some(4)),
            (Cell::F32List(vec![0.1]), FieldType::Vector, Some(4)),
            (Cell::F32List(vec![]), FieldType::Vector, None),
            (Cell::JsonArray(long("0.5").into()), FieldType::Vector, Some(40)),
            (checked(&long("0.5")), FieldType::Vector, Some(40)),
            (checked(&long("0.5")), FieldType::Vector, Some(3)),
            (checked(&long("1e39")), FieldType::Vector, None),
            (Cell::JsonArray(long("\"x\"").into()), FieldType::Vector, None),
            (text("héllo \"quoted\"\n\u{1}"), FieldType::String, None),
            (text("x"), FieldType::Text, None),
            (Cell::Int(7), FieldType::String, None),
            (text("2025-08-12T11:33:56+08:00"), FieldType::DateTime, None),
            (text("2025-08-12T11:33Z"), FieldType::DateTime, None),
            (text("2025-08-12"), FieldType::DateTime, None),
            (
                Cell::Timestamp("1970-01-01T00:00:00Z".into()),
                FieldType::DateTime,
                None,
            ),
            (
                Cell::StrList(vec!["a".into(), "\"b\"".into()]),
                FieldType::ListString,
                None,
            ),
            (Cell::StrList(vec![]), FieldType::ListString, None),
            (text("[\"a\",\"b\"]"), FieldType::ListString, None),
            (text("12"), FieldType::Int64, None),
        ];
        for (cell, ty, dim) in cases {
            let fast = coerce_field(&cell, ty, dim)
                .map(|f| serialise_row("id", &PrimaryKey::Int(1), &[("f", f)], VectorEncoding::Array));
            let owned = coerce_value(&cell, ty, dim).map(|v| {
                serialise_row(
                    "id",
                    &PrimaryKey::Int(1),
                    &[("f", Field::Value(v))],
                    VectorEncoding::Array,
                )
            });
            assert_eq!(fast, owned, "{cell:?} as {ty}");
            if let Ok(row) = &fast {
                // The same bytes as serde_json writes for the owned value (a kept vector text as it is).
                let v = coerce_value(&cell, ty, dim).expect("typed");
                if !matches!(v, Value::VectorText(_)) {
                    let want = format!("{{\"id\":1,\"f\":{}}}", serde_json::to_string(&v).expect("json"));
                    assert_eq!(&**row, want, "{cell:?} as {ty}");
                }
            }
        }
    }

    #[test]
    fn a_row_carries_the_vector_text_compactly_and_errors_are_unchanged() {
        let cell = Cell::Text("[ 0.5, -1 ,2e-3, 8 ]".into());
        let v = coerce_vector(&cell, Some(4)).expect("vector");
        let json = serialise_row("id", &PrimaryKey::Int(1), &[("vec", v)], VectorEncoding::Array);
        assert_eq!(&*json, r#"{"id":1,"vec":[0.5,-1,2e-3,8]}"#);
        assert_eq!(
            coerce_vector(&Cell::Text("[1,2,3]".into()), Some(4)).expect_err("dim"),
            "vector has 3 dimensions, the collection's is 4"
        );
        assert_eq!(
            coerce_vector(&Cell::Text("[ ]".into()), None).expect_err("empty"),
            "vector is empty"
        );
        assert!(coerce_vector(&Cell::Text("[1e39]".into()), None).is_err());
        assert!(
            coerce_vector(&Cell::Text("[1,\"x\"]".into()), None)
                .expect_err("string")
                .contains("is not a number")
        );
    }
}
