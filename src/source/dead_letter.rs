//! The dead-letter format: reads vikingsync's own `dead-letter.jsonl` (or a fixed copy of it) as a
//! source, so rejected rows can be corrected and sent again.
//!
//! Owns: unwrapping each entry's `record` into cells and carrying its `op` in the
//! `DEAD_LETTER_OP_COLUMN` cell. Never: changes a record, or guesses one that could not be parsed
//! when it was rejected (that entry is a row error saying to fix it first).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::jsonl_reader::{JsonlReader, json_cell};
use super::{Cell, RawRow, ReadError, RowReader};

/// The cell holding an entry's op (`op_column` defaults to it for dead-letter sources).
pub const DEAD_LETTER_OP_COLUMN: &str = "__dead_letter_op";

pub(super) struct DeadLetterReader {
    path: PathBuf,
    inner: JsonlReader,
    op_name: Arc<str>,
}

impl DeadLetterReader {
    pub(super) fn new(path: &Path, inner: JsonlReader) -> DeadLetterReader {
        DeadLetterReader {
            path: path.to_path_buf(),
            inner,
            op_name: Arc::from(DEAD_LETTER_OP_COLUMN),
        }
    }
}

impl RowReader for DeadLetterReader {
    fn next_row(&mut self) -> Option<Result<RawRow, ReadError>> {
        let raw = match self.inner.next_row()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        let mut record = None;
        let mut op = None;
        for (name, cell) in &raw.cells {
            match (name.as_ref(), cell) {
                ("record", Cell::Json(serde_json::Value::Object(map))) => record = Some(map.clone()),
                ("op", Cell::Text(o)) => op = Some(o.clone()),
                _ => {}
            }
        }
        let Some(record) = record else {
            return Some(Err(ReadError::Row {
                file: self.path.clone(),
                row: raw.row,
                end: raw.end,
                raw: raw.to_json(),
                message: "the entry's `record` is not a JSON object (the row could not be parsed when it was \
                          rejected); replace it with the corrected row before replaying"
                    .into(),
            }));
        };
        let mut cells: Vec<(Arc<str>, Cell)> = record.into_iter().map(|(k, v)| (Arc::from(k), json_cell(v))).collect();
        if let Some(op) = op {
            cells.push((self.op_name.clone(), Cell::Text(op)));
        }
        Some(Ok(RawRow {
            row: raw.row,
            cells,
            end: raw.end,
        }))
    }

    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }
}
