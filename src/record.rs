//! Typed rows: the values a row carries once it has been coerced to the collection's schema.
//!
//! Owns: `Value` (with its exact JSON form: f32 stays f32, i64 never passes through f64; a
//! vector's written by `write_f32_array`, the rows' fast path for it, in `f32_json`, or packed
//! by `write_f32_base64` in `f32_base64`) and `Record`,
//! the unit that flows from the schema stage to the batcher. `PrimaryKey` and `Op` are
//! re-exported from `vikingdb-types`, which the emulator shares.
//! Never: parses source formats (that is `source`) or decides what is valid (that is `schema`).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

pub use vikingdb_types::{Op, PrimaryKey};

mod f32_base64;
mod f32_json;

pub(crate) use f32_base64::{f32_base64_len, le_f32s, write_f32_base64};
pub(crate) use f32_json::write_f32_array;

/// A vector as compact JSON text (`[0.5,-1,2e-3]`): an array of JSON numbers, each a finite
/// `f32`, copied from the source as it was written. The schema checks the text before it builds
/// one; rows are serialised with the text as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorText(Box<str>);

impl VectorText {
    /// `text` must already be checked (see `schema::vector_text`).
    pub(crate) fn checked(text: String) -> VectorText {
        VectorText(text.into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The elements as `f32`s (each read as an `f64` and narrowed, as a JSON value's would be).
    pub fn to_f32s(&self) -> Vec<f32> {
        let inner = self.0.trim_start_matches('[').trim_end_matches(']');
        inner
            .split(',')
            .filter_map(|t| t.parse::<f64>().ok())
            .map(|x| x as f32)
            .collect()
    }
}

/// A field value in the exact form it is written to VikingDB.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f32),
    Bool(bool),
    /// string, text, date_time (RFC 3339), geo_point (`"lon,lat"`), image (URL).
    Str(String),
    StrList(Vec<String>),
    IntList(Vec<i64>),
    Vector(Vec<f32>),
    /// A vector read from text, checked by the schema and written on as it came (see
    /// `schema::vector_text`).
    VectorText(VectorText),
    /// sparse_vector: token → weight, written as a JSON object.
    Sparse(Vec<(String, f32)>),
}

impl Value {
    /// About how many bytes this value takes as JSON (for sizing buffers; never a limit).
    pub fn json_size_hint(&self) -> usize {
        match self {
            Value::Int(_) | Value::Float(_) => 20,
            Value::Bool(_) => 5,
            Value::Str(s) => s.len() + 2,
            Value::StrList(v) => v.iter().map(|s| s.len() + 3).sum::<usize>() + 2,
            Value::IntList(v) => v.len() * 21 + 2,
            // What `write_f32_array` needs an element: an f32's longest form (a sign, `0.00000` and nine
            // digits) is 17 bytes, 18 with the comma (less would make it grow the row's buffer).
            Value::Vector(v) => v.len() * 18 + 2,
            Value::VectorText(v) => v.as_str().len(),
            Value::Sparse(v) => v.iter().map(|(k, _)| k.len() + 20).sum::<usize>() + 2,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f32(*f),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Str(v) => s.serialize_str(v),
            Value::StrList(v) => v.serialize(s),
            Value::IntList(v) => v.serialize(s),
            Value::VectorText(v) => v.to_f32s().serialize(s),
            Value::Vector(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            Value::Sparse(v) => {
                let mut map = s.serialize_map(Some(v.len()))?;
                for (k, w) in v {
                    map.serialize_entry(k, w)?;
                }
                map.end()
            }
        }
    }
}

/// Where a row came from: enough to name it in an error and to place it in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Index of the file in the run's ordered file list.
    pub file: usize,
    /// 1-based data row number within the file (header excluded).
    pub row: u64,
    /// Run-wide sequence number, increasing in read order; the acknowledgement tracker's key.
    pub seq: u64,
}

/// A row ready to send: its key, its op, its request-level TTL and its fields serialised once.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: PrimaryKey,
    pub op: Op,
    /// Seconds (0 = never expire), when the source sets one; `None` sends no `ttl` and leaves the
    /// server's default. Request-level in VikingDB, so it groups batches.
    pub ttl: Option<u32>,
    /// The row as a JSON object (primary key included), serialised once when the row was typed.
    /// Empty for deletes, which send only the key.
    pub json: Box<str>,
    pub origin: Origin,
}
