//! `vikingsync validate`: reads the sources (or a sample of each file) and types every row.
//!
//! Owns: the validate report (files, rows, the rows that would be rejected).
//! Never: sends, opens the state directory, or writes anything.

use super::RunError;
use super::plan::source_files;
use super::read::{Item, typed, unreadable};
use crate::config::Config;
use crate::deadletter::Entry;
use crate::record::Origin;
use crate::schema::Schema;
use crate::source::{self, ReadError};

/// What `vikingsync validate` found.
#[derive(Debug, Default)]
pub struct ValidateReport {
    pub files: usize,
    pub rows: u64,
    pub rejected: Vec<Entry>,
}

/// Reads the sources (up to `sample` rows per file) and types every row, sending nothing.
pub fn validate(config: &Config, sample: Option<u64>) -> Result<ValidateReport, RunError> {
    let (files, mappings) = source_files(config)?;
    let schema = Schema::from_config(&config.collection);
    let mut report = ValidateReport {
        files: files.len(),
        ..ValidateReport::default()
    };
    for (index, file) in files.iter().enumerate() {
        let name = file.path.display().to_string();
        let mut reader = source::open(&file.path, &file.options, None)?;
        let mut n = 0u64;
        while let Some(next) = reader.next_row() {
            if sample.is_some_and(|s| n >= s) {
                break;
            }
            n += 1;
            report.rows += 1;
            let origin = Origin {
                file: index,
                row: n,
                seq: report.rows,
            };
            let item = match next {
                Ok(raw) => typed(&schema, &mappings[file.mapping], raw, origin, &name),
                Err(ReadError::Row {
                    row, end, raw, message, ..
                }) => unreadable(
                    &name,
                    Origin { row, ..origin },
                    end,
                    raw,
                    message,
                    mappings[file.mapping].op,
                ),
                Err(e) => return Err(e.into()),
            };
            if let Item::Rejected { entry, .. } = item {
                report.rejected.push(entry);
            }
        }
    }
    Ok(report)
}
