//! Parquet column types and cells: which Arrow types a column may have, and the conversion of
//! one value of such a column into a `Cell` (timestamps to RFC 3339, decimals as text, lists,
//! maps, JSON), with errors that name the problem.
//!
//! Owns: the type classification and every per-value conversion. Never: reads the file or
//! decides when rows are released (the reader does, after its row group's pages are verified).

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::super::Cell;

/// How a column's values become cells, decided once at open.
#[derive(Debug, Clone)]
pub(super) enum Kind {
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
pub(super) enum Scalar {
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
pub(super) enum Elem {
    F32,
    F64,
    Str,
    Int,
}

pub(super) fn classify(dt: &DataType) -> Option<Kind> {
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

pub(super) fn scalar_kind(dt: &DataType) -> Option<Scalar> {
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

pub(super) fn elem_kind(dt: &DataType) -> Option<Elem> {
    use DataType as D;
    Some(match dt {
        D::Float16 | D::Float32 => Elem::F32,
        D::Float64 => Elem::F64,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Elem::Str,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => Elem::Int,
        _ => return None,
    })
}

pub(super) fn is_str(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

pub(super) fn is_number(dt: &DataType) -> bool {
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
pub(super) fn json_ok(dt: &DataType) -> bool {
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
pub(super) fn parse_offset(tz: &str) -> Option<FixedOffset> {
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

pub(super) struct CellError {
    pub(super) message: String,
    /// The value as far as it can be shown, for the dead-letter record.
    pub(super) raw: serde_json::Value,
}

pub(super) fn err(message: impl Into<String>) -> CellError {
    CellError {
        message: message.into(),
        raw: serde_json::Value::Null,
    }
}

pub(super) fn type_mismatch(a: &dyn Array) -> String {
    format!("unexpected array type {}", a.data_type())
}

pub(super) fn cell(kind: &Kind, a: &ArrayRef, i: usize) -> Result<Cell, CellError> {
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

pub(super) fn scalar(s: Scalar, a: &dyn Array, i: usize) -> Result<Cell, CellError> {
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

pub(super) fn rfc3339(dt: DateTime<Utc>, tz: Option<FixedOffset>) -> String {
    match tz {
        Some(off) => dt.with_timezone(&off).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    }
}

pub(super) fn timestamp_at(a: &dyn Array, i: usize, unit: TimeUnit, tz: Option<FixedOffset>) -> Result<String, String> {
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

pub(super) fn int_at(a: &dyn Array, i: usize) -> Result<i64, String> {
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
pub(super) fn number_at(a: &dyn Array, i: usize) -> Result<f64, String> {
    let mismatch = || type_mismatch(a);
    match a.data_type() {
        DataType::Float16 => Ok(super::super::f32_to_f64_shortest(
            a.as_primitive_opt::<Float16Type>()
                .ok_or_else(mismatch)?
                .value(i)
                .to_f32(),
        )),
        DataType::Float32 => Ok(super::super::f32_to_f64_shortest(
            a.as_primitive_opt::<Float32Type>().ok_or_else(mismatch)?.value(i),
        )),
        DataType::Float64 => Ok(a.as_primitive_opt::<Float64Type>().ok_or_else(mismatch)?.value(i)),
        DataType::UInt64 => Ok(a.as_primitive_opt::<UInt64Type>().ok_or_else(mismatch)?.value(i) as f64),
        _ => int_at(a, i).map(|v| v as f64),
    }
}

pub(super) fn str_at(a: &dyn Array, i: usize) -> Option<&str> {
    match a.data_type() {
        DataType::Utf8 => a.as_string_opt::<i32>().map(|s| s.value(i)),
        DataType::LargeUtf8 => a.as_string_opt::<i64>().map(|s| s.value(i)),
        DataType::Utf8View => a.as_string_view_opt().map(|s| s.value(i)),
        _ => None,
    }
}

pub(super) fn bytes_at(a: &dyn Array, i: usize) -> Option<&[u8]> {
    match a.data_type() {
        DataType::Binary => a.as_binary_opt::<i32>().map(|s| s.value(i)),
        DataType::LargeBinary => a.as_binary_opt::<i64>().map(|s| s.value(i)),
        DataType::BinaryView => a.as_binary_view_opt().map(|s| s.value(i)),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary_opt().map(|s| s.value(i)),
        _ => None,
    }
}

pub(super) fn decimal_at(a: &dyn Array, i: usize) -> Option<String> {
    match a.data_type() {
        DataType::Decimal32(..) => a.as_primitive_opt::<Decimal32Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal64(..) => a.as_primitive_opt::<Decimal64Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal128(..) => a.as_primitive_opt::<Decimal128Type>().map(|d| d.value_as_string(i)),
        DataType::Decimal256(..) => a.as_primitive_opt::<Decimal256Type>().map(|d| d.value_as_string(i)),
        _ => None,
    }
}

/// The child values and the element range of list `i`.
pub(super) fn list_range(a: &dyn Array, i: usize) -> Option<(&ArrayRef, usize, usize)> {
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

pub(super) fn list(e: Elem, a: &dyn Array, i: usize) -> Result<Cell, CellError> {
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
pub(super) fn json_at(a: &dyn Array, i: usize, lossy: bool) -> Result<serde_json::Value, String> {
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
