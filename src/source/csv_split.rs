//! CSV records split exactly as the csv crate's `Reader::read_byte_record` splits them (with
//! `has_headers(false)`, `flexible(true)`, the reader's delimiter and quoting, and the default
//! 8 KiB buffer), with a fast path for plain records.
//!
//! Owns: the read buffer over the stream, the record positions the CSV reader needs (the byte
//! after a record, and the line number at the start of a read, counted as csv_core counts them),
//! and the fast path. A record of plain fields is split with `memchr`, and its fields stay
//! borrowed from the buffer (a quoted field holding `""` is copied, one quote for each pair). In
//! such a record a quoted field ends at a quote followed by the delimiter or a line end, and no
//! quoted field holds a line break. csv_core, the csv crate's own parser, takes every other
//! record, fed exactly as the csv crate feeds it: a line break inside quotes, text after a
//! closing quote, a record still open at the end of the stream, the first record a splitter
//! reads (csv_core drops a byte order mark there), one longer than `FAST_MAX` bytes, and any
//! record of a dialect whose delimiter is a quote or a line break.
//! Never: interprets a field, or reads the stream at another moment or in another size than the
//! csv crate does. It reads 8 KiB, only when the record being split needs more bytes than are
//! buffered. So an error of the stream, an unclosed quote reported by the `QuoteTracker` below
//! included, ends the same record as it did with the csv crate. The tests compare it with
//! `csv::Reader`, read call by read call, on hard cases and thousands of random documents.

use std::io::{self, Read};

/// The csv crate's default buffer capacity: the size of every read.
const READ_SIZE: usize = 8 * 1024;
/// The buffer kept between reads: room for several records before the buffered tail is moved to
/// the front.
const BUF_SIZE: usize = 64 * 1024;
/// A record longer than this goes to csv_core (which streams it) instead of being held whole.
const FAST_MAX: usize = 256 * 1024;

pub(super) struct Splitter<R> {
    inner: R,
    core: csv_core::Reader,
    delimiter: u8,
    quoting: bool,
    /// The fast path can split this dialect: its delimiter is neither a quote nor a line break.
    fast_dialect: bool,
    /// csv_core has read: it drops a UTF-8 byte order mark on its first read only.
    core_started: bool,
    buf: Vec<u8>,
    /// Buffered bytes not yet consumed: `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// A read of the fast path returned 0: the next refill for csv_core returns that end of the
    /// stream instead of reading again (the csv crate reads once there).
    eof_pending: bool,
    /// Like the csv crate's reader, no more records after the end or an error.
    stopped: bool,
    /// Bytes consumed since the start: the csv crate's `position().byte()`.
    byte: u64,
    /// csv_core's line number when the last read started: the csv crate's
    /// `record.position().line()`.
    record_line: u64,
    record: Record,
}

/// The fields of the last record read.
#[derive(Default)]
struct Record {
    /// Split by the fast path: the fields are `spans` of the splitter's buffer (from the record's
    /// start while it is split) or of `unescaped`.
    fast: bool,
    spans: Vec<Span>,
    unescaped: Vec<u8>,
    /// Split by csv_core: the fields' bytes and ends, as in a `csv::ByteRecord`.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Fields in a record split by csv_core.
    len: usize,
}

/// A field of a record split fast: bytes of the buffer, or of the record's `unescaped` bytes
/// (a quoted field holding `""`).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    unescaped: bool,
}

/// What [`scan`] found in the buffered bytes at the start of a record.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A plain record of `len` bytes (its line end included) holding `lines` line feeds.
    Done { len: usize, lines: u64 },
    /// Something only csv_core handles.
    Unusual,
    /// The record goes on past the buffered bytes. The field starting at `field` has no quote or
    /// line break before `searched` (where the next search may start).
    More { field: usize, searched: usize },
}

/// Splits the plain record at the start of `b` into `spans` and `unescaped` (both replaced).
/// `resume` is a previous [`Scan::More`]'s `(field, searched)` over a prefix of the same bytes.
fn scan(
    b: &[u8],
    delimiter: u8,
    quoting: bool,
    resume: (usize, usize),
    spans: &mut Vec<Span>,
    unescaped: &mut Vec<u8>,
) -> Scan {
    spans.clear();
    unescaped.clear();
    // Line ends before the record: csv_core skips them (empty lines), counting line feeds.
    let mut i = 0;
    let mut lines = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' => lines += 1,
            b'\r' => {}
            _ => break,
        }
        i += 1;
    }
    loop {
        // The start of a field.
        let Some(&first) = b.get(i) else {
            return Scan::More { field: i, searched: i };
        };
        let from = if resume.0 == i { resume.1.max(i) } else { i };
        let next = if quoting && first == b'"' {
            // Where the unescaped text of this field starts, once a `""` was met.
            let mut copied: Option<usize> = None;
            let mut segment = i + 1;
            let mut from = from.max(i + 1);
            loop {
                let Some(j) = memchr::memchr3(b'"', b'\n', b'\r', &b[from..]) else {
                    let searched = if copied.is_some() { i } else { b.len() };
                    return Scan::More { field: i, searched };
                };
                let close = from + j;
                if b[close] != b'"' {
                    // A line break inside quotes.
                    return Scan::Unusual;
                }
                let Some(&next) = b.get(close + 1) else {
                    let searched = if copied.is_some() { i } else { close };
                    return Scan::More { field: i, searched };
                };
                if next == b'"' {
                    // `""`: one quote of the field's text.
                    copied.get_or_insert(unescaped.len());
                    unescaped.extend_from_slice(&b[segment..=close]);
                    segment = close + 2;
                    from = close + 2;
                    continue;
                }
                spans.push(match copied {
                    None => Span {
                        start: i + 1,
                        end: close,
                        unescaped: false,
                    },
                    Some(start) => {
                        unescaped.extend_from_slice(&b[segment..close]);
                        Span {
                            start,
                            end: unescaped.len(),
                            unescaped: true,
                        }
                    }
                });
                i = close + 2;
                break next;
            }
        } else {
            let Some(j) = memchr::memchr3(delimiter, b'\n', b'\r', &b[from..]) else {
                return Scan::More {
                    field: i,
                    searched: b.len(),
                };
            };
            let stop = from + j;
            spans.push(Span {
                start: i,
                end: stop,
                unescaped: false,
            });
            i = stop + 1;
            b[stop]
        };
        match next {
            b'\n' => {
                return Scan::Done {
                    len: i,
                    lines: lines + 1,
                };
            }
            b'\r' => return Scan::Done { len: i, lines },
            c if c == delimiter => {}
            // Text after a closing quote.
            _ => return Scan::Unusual,
        }
    }
}

impl<R: Read> Splitter<R> {
    pub(super) fn new(inner: R, delimiter: u8, quoting: bool) -> Self {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(quoting)
            .build();
        Splitter {
            inner,
            core,
            delimiter,
            quoting,
            fast_dialect: !matches!(delimiter, b'"' | b'\n' | b'\r'),
            core_started: false,
            buf: vec![0; BUF_SIZE],
            pos: 0,
            end: 0,
            eof_pending: false,
            stopped: false,
            byte: 0,
            record_line: 1,
            record: Record::default(),
        }
    }

    /// Reads the next record, as `csv::Reader::read_byte_record` does: `Ok(false)` at the end,
    /// and after the end or an error.
    pub(super) fn read_record(&mut self) -> io::Result<bool> {
        self.record.fast = false;
        self.record.len = 0;
        self.record_line = self.core.line();
        self.eof_pending = false;
        if self.stopped {
            return Ok(false);
        }
        if self.fast_dialect && self.core_started && self.split_fast()? {
            return Ok(true);
        }
        self.split_core()
    }

    /// Splits a plain record; `false` leaves it, unconsumed, to csv_core.
    fn split_fast(&mut self) -> io::Result<bool> {
        let mut resume = (usize::MAX, 0);
        loop {
            let b = &self.buf[self.pos..self.end];
            let record = &mut self.record;
            match scan(
                b,
                self.delimiter,
                self.quoting,
                resume,
                &mut record.spans,
                &mut record.unescaped,
            ) {
                Scan::Done { len, lines } => {
                    for span in record.spans.iter_mut().filter(|s| !s.unescaped) {
                        span.start += self.pos;
                        span.end += self.pos;
                    }
                    self.pos += len;
                    self.byte += len as u64;
                    self.core.set_line(self.core.line() + lines);
                    self.record.fast = true;
                    return Ok(true);
                }
                Scan::Unusual => return Ok(false),
                Scan::More { field, searched } => {
                    if self.end - self.pos >= FAST_MAX {
                        return Ok(false);
                    }
                    match self.read_more() {
                        Ok(true) => resume = (field, searched),
                        // The end of the stream: csv_core ends the record (or finds none).
                        Ok(false) => return Ok(false),
                        Err(e) => {
                            // csv_core would have consumed the buffered bytes before reading.
                            let consumed = &self.buf[self.pos..self.end];
                            let lines = memchr::memchr_iter(b'\n', consumed).count() as u64;
                            self.core.set_line(self.core.line() + lines);
                            self.byte += consumed.len() as u64;
                            self.pos = self.end;
                            self.stopped = true;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Reads up to `READ_SIZE` more bytes after the buffered ones; `false` at the end of the
    /// stream.
    fn read_more(&mut self) -> io::Result<bool> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < READ_SIZE && self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < self.end + READ_SIZE {
            self.buf.resize(self.end + READ_SIZE, 0);
        }
        let n = self.inner.read(&mut self.buf[self.end..self.end + READ_SIZE])?;
        self.end += n;
        self.eof_pending = n == 0;
        Ok(n > 0)
    }

    /// The csv crate's `BufReader::fill_buf`: reads only when every buffered byte is consumed.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos < self.end {
            return Ok(());
        }
        self.pos = 0;
        self.end = 0;
        if std::mem::take(&mut self.eof_pending) {
            return Ok(());
        }
        self.end = self.inner.read(&mut self.buf[..READ_SIZE])?;
        Ok(())
    }

    /// The csv crate's `read_byte_record_impl`, over this buffer.
    fn split_core(&mut self) -> io::Result<bool> {
        use csv_core::ReadRecordResult;
        self.core_started = true;
        let record = &mut self.record;
        if record.bytes.is_empty() {
            record.bytes.resize(1024, 0);
            record.ends.resize(16, 0);
        }
        let (mut outlen, mut endlen) = (0, 0);
        loop {
            if let Err(e) = self.fill() {
                self.stopped = true;
                return Err(e);
            }
            let record = &mut self.record;
            let (res, nin, nout, nend) = self.core.read_record(
                &self.buf[self.pos..self.end],
                &mut record.bytes[outlen..],
                &mut record.ends[endlen..],
            );
            self.pos += nin;
            self.byte += nin as u64;
            outlen += nout;
            endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = record.bytes.len() * 2;
                    record.bytes.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = record.ends.len() * 2;
                    record.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    record.len = endlen;
                    return Ok(true);
                }
                ReadRecordResult::End => {
                    self.stopped = true;
                    return Ok(false);
                }
            }
        }
    }

    /// Bytes consumed since the start (after the last record read).
    pub(super) fn byte(&self) -> u64 {
        self.byte
    }

    /// The line of the next byte, as csv_core counts lines (1 + the line feeds consumed): where
    /// the next read starts, after [`Splitter::byte`] bytes.
    pub(super) fn line(&self) -> u64 {
        self.core.line()
    }

    /// Starts counting lines at `line`, for a stream that starts inside a file (a resume).
    pub(super) fn start_at_line(&mut self, line: u64) {
        self.core.set_line(line);
        self.record_line = line;
    }

    /// The line number at the start of the last read (the line after the previous record, as
    /// csv_core counts: a record ended by `\r\n` has not consumed its `\n` yet).
    pub(super) fn record_line(&self) -> u64 {
        self.record_line
    }

    /// Fields in the last record read.
    pub(super) fn len(&self) -> usize {
        if self.record.fast {
            self.record.spans.len()
        } else {
            self.record.len
        }
    }

    /// The `i`th field of the last record read (`i < len()`).
    fn field(&self, i: usize) -> &[u8] {
        let r = &self.record;
        if r.fast {
            let span = r.spans[i];
            let bytes = if span.unescaped { &r.unescaped } else { &self.buf };
            &bytes[span.start..span.end]
        } else {
            let start = if i == 0 { 0 } else { r.ends[i - 1] };
            &r.bytes[start..r.ends[i]]
        }
    }

    /// The fields of the last record read.
    pub(super) fn fields(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.field(i))
    }
}

#[cfg(test)]
mod tests;
