//! The VikingDB vocabulary that vikingsync (the client) and vikingdb-emulator (the test server)
//! share, so that both sides name things the same way and sign requests with the same code.
//!
//! Owns: [`FieldType`] and its names (`int64`, `list<string>`, ...), [`Op`], [`PrimaryKey`],
//! [`ApiVersion`], the rows-per-request limit [`MAX_ROWS_PER_REQUEST`], and [`sign`] (SignerV4:
//! canonical request, hashing, signing key derivation, and the query/path decoding a verifier
//! needs).
//! Never: imports vikingsync or the emulator, does I/O, or decides what a valid value is (the
//! product's `schema` and the emulator's `store` each do that on their own, on purpose).
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

pub mod sign;

/// Rows (or ids) one write request may carry: VikingDB refuses more than 100.
pub const MAX_ROWS_PER_REQUEST: usize = 100;

/// A VikingDB field type, as named in the config and the API docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Int64,
    Float32,
    String,
    Bool,
    ListString,
    ListInt64,
    Vector,
    SparseVector,
    Text,
    DateTime,
    GeoPoint,
    Image,
}

impl FieldType {
    pub const ALL: [FieldType; 12] = [
        FieldType::Int64,
        FieldType::Float32,
        FieldType::String,
        FieldType::Bool,
        FieldType::ListString,
        FieldType::ListInt64,
        FieldType::Vector,
        FieldType::SparseVector,
        FieldType::Text,
        FieldType::DateTime,
        FieldType::GeoPoint,
        FieldType::Image,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Int64 => "int64",
            FieldType::Float32 => "float32",
            FieldType::String => "string",
            FieldType::Bool => "bool",
            FieldType::ListString => "list<string>",
            FieldType::ListInt64 => "list<int64>",
            FieldType::Vector => "vector",
            FieldType::SparseVector => "sparse_vector",
            FieldType::Text => "text",
            FieldType::DateTime => "date_time",
            FieldType::GeoPoint => "geo_point",
            FieldType::Image => "image",
        }
    }

    /// Types a primary key may have.
    pub fn can_be_primary_key(self) -> bool {
        matches!(self, FieldType::Int64 | FieldType::String)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FieldType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        FieldType::ALL.into_iter().find(|t| t.as_str() == norm).ok_or_else(|| {
            let names: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown field type `{s}`; expected one of {}", names.join(", "))
        })
    }
}

impl<'de> serde::Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for FieldType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which API generation to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V1,
    V2,
}

/// What a row asks the collection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Update,
    Upsert,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Update => "update",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }

    /// Parses an op name as written in an `op_column` cell (case-insensitive, trimmed).
    pub fn parse(s: &str) -> Option<Op> {
        match s.trim().to_ascii_lowercase().as_str() {
            "update" => Some(Op::Update),
            "upsert" | "insert" => Some(Op::Upsert),
            "delete" | "del" => Some(Op::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A primary key value. VikingDB keys are int64 or string, never 0 and never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrimaryKey {
    Int(i64),
    Str(Arc<str>),
}

impl PrimaryKey {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            PrimaryKey::Int(i) => serde_json::Value::from(*i),
            PrimaryKey::Str(s) => serde_json::Value::from(s.as_ref()),
        }
    }
}

impl Serialize for PrimaryKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PrimaryKey::Int(i) => s.serialize_i64(*i),
            PrimaryKey::Str(v) => s.serialize_str(v),
        }
    }
}

impl fmt::Display for PrimaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrimaryKey::Int(i) => write!(f, "{i}"),
            PrimaryKey::Str(s) => f.write_str(s),
        }
    }
}
