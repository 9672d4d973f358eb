//! Equivalence of [`Splitter`] with `csv::Reader` (configured as the CSV reader configured it
//! before the splitter): the same records, fields, line numbers, byte positions and errors, and
//! the same reads of the stream (sizes asked, bytes returned, in order), on hand-written hard
//! cases and on thousands of random and mutated documents, over streams that return every read
//! whole, in small random pieces, or fail at some read.
//! Never: touches files.

use std::io::{self, Read};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Splitter;

/// A stream over `data` that hands out at most `pieces[k % len]` bytes at its `k`th read (all
/// that is asked when `pieces` is empty), fails its `fail_at`th read, and logs every read.
struct Stream {
    data: Vec<u8>,
    at: usize,
    pieces: Vec<usize>,
    fail_at: Option<usize>,
    log: Vec<(usize, Result<usize, String>)>,
}

impl Stream {
    fn new(data: &[u8], pieces: &[usize], fail_at: Option<usize>) -> Self {
        Stream {
            data: data.to_vec(),
            at: 0,
            pieces: pieces.to_vec(),
            fail_at,
            log: Vec::new(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.log.len();
        if self.fail_at == Some(k) {
            self.log.push((buf.len(), Err("boom".into())));
            return Err(io::Error::other(format!("boom at read {k}")));
        }
        let mut n = buf.len().min(self.data.len() - self.at);
        if !self.pieces.is_empty() {
            n = n.min(self.pieces[k % self.pieces.len()]);
        }
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.log.push((buf.len(), Ok(n)));
        Ok(n)
    }
}

/// One read of a record: its outcome, fields, line at its start and byte after it.
type Step = (Result<bool, String>, Vec<Vec<u8>>, u64, u64);

fn io_text(e: &io::Error) -> String {
    format!("{:?}: {e}", e.kind())
}

fn with_csv<R: Read>(inner: R, delimiter: u8, quoting: bool, reads: usize) -> (Vec<Step>, R) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quoting(quoting)
        .from_reader(inner);
    let mut record = csv::ByteRecord::new();
    let mut steps = Vec::new();
    for _ in 0..reads {
        let out = rdr.read_byte_record(&mut record).map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) => io_text(&io),
            other => format!("{other:?}"),
        });
        let line = record.position().map_or(0, csv::Position::line);
        let fields = record.iter().map(<[u8]>::to_vec).collect();
        steps.push((out, fields, line, rdr.position().byte()));
    }
    (steps, rdr.into_inner())
}

fn with_splitter<R: Read>(inner: R, delimiter: u8, quoting: bool, reads: usize) -> (Vec<Step>, R, usize) {
    let mut s = Splitter::new(inner, delimiter, quoting);
    let mut steps = Vec::new();
    let mut fast = 0;
    for _ in 0..reads {
        let out = s.read_record().map_err(|e| io_text(&e));
        fast += usize::from(s.record.fast);
        let fields = s.fields().map(<[u8]>::to_vec).collect();
        steps.push((out, fields, s.record_line(), s.byte()));
    }
    (steps, s.inner, fast)
}

/// Compares the two on `data`; the number of records the fast path split.
fn same(data: &[u8], delimiter: u8, quoting: bool, pieces: &[usize], fail_at: Option<usize>) -> usize {
    let reads = memchr::memchr2_iter(b'\n', b'\r', data).count() + 3;
    let (want, want_stream) = with_csv(Stream::new(data, pieces, fail_at), delimiter, quoting, reads);
    let (got, got_stream, fast) = with_splitter(Stream::new(data, pieces, fail_at), delimiter, quoting, reads);
    for (k, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(
            w,
            g,
            "read {k} of {:?} (delimiter {:?}, quoting {quoting}, pieces {pieces:?}, fail at {fail_at:?})",
            String::from_utf8_lossy(data),
            delimiter as char
        );
    }
    assert_eq!(
        at_most_one_end(want_stream.log),
        at_most_one_end(got_stream.log),
        "stream reads of {:?}",
        String::from_utf8_lossy(data)
    );
    fast
}

/// A log of reads without the repeats of a last read that found the end of the stream. At the
/// end, csv_core asks for room for the last field when its caller's buffers are exactly full, and
/// the csv crate then reads again (finding the end again); the buffers' sizes differ between the
/// two, since fast records never grow the splitter's.
fn at_most_one_end(mut log: Vec<(usize, Result<usize, String>)>) -> Vec<(usize, Result<usize, String>)> {
    while log.len() >= 2 && log[log.len() - 1].1 == Ok(0) && log[log.len() - 2].1 == Ok(0) {
        log.pop();
    }
    log
}

/// Every stream shape and dialect over `data`; the records split fast.
fn same_everywhere(data: &[u8]) -> usize {
    let mut fast = 0;
    for (delimiter, quoting) in [(b',', true), (b';', true), (b'\t', false), (b',', false), (b'"', true)] {
        for pieces in [&[][..], &[1], &[3, 1, 7], &[8192, 5]] {
            fast += same(data, delimiter, quoting, pieces, None);
        }
    }
    for fail_at in 0..4 {
        fast += same(data, b',', true, &[5, 2], Some(fail_at));
    }
    fast
}

#[test]
fn hard_cases_match_the_csv_crate() {
    let long = format!("\"[{}]\"", vec!["0.015625"; 2000].join(","));
    let long_rows = format!(
        "id,v,t\n{}",
        (0..5).map(|i| format!("{i},{long},x\n")).collect::<String>()
    );
    let cases: Vec<&[u8]> = vec![
        b"",
        b"\n",
        b"\r\n\r\n",
        b"a,b\n1,2\n",
        b"a,b\n1,2",
        b"a,b\n1,2,\n",
        b"a,b\n1,2,",
        b"a,b\n,\n",
        b"a,b\n\"\",\"\"\n",
        b"a,b\n\"\"\"\",x\n",
        b"a,b\n\"x\"\"y\",1\n",
        b"a,b\n\"q\"r,2\n",
        b"a,b\nab\"c,\"\"\n",
        b"a,b\n\"two\nlines\",3\n4,5\n",
        b"a,b\n\"two\r\nlines\",3\n",
        b"a,b\r\n1,2\r\n3,4\r\n",
        b"a,b\r\n1,2\r\n3,4,5\r\n6\r\n",
        b"a,b\r1,2\r3,4",
        b"a,b\n1,2\r3,4\n",
        b"a,b\n\n\n1,2\n\r\n\n3,4\n\n",
        b"\xEF\xBB\xBFa,b\n1,2\n",
        b"\xEF\xBB\xBF\xEF\xBB\xBFa,b\n\xEF\xBB\xBF1,2\n",
        b"a,b\n1,bad\xFF\xFE\n\"\xFF\",\"\xC3\xA9\"\n",
        b"a,b\n1,\"oops\n2,3\n",
        b"a,b\n1,\"oops",
        b"a,b\n1,\"closed\"",
        b"a,b\n1,\"closed\"\r",
        b"a,b\n\"a\",\"b\"\n\"c\"\"\",\"d\"\n\"e\",\"f\"x\n",
        b"a;b\n1;x,y\n\"1;2\";3\n",
        b"a\tb\n1\t\"q\t\n2\t\"a\"\"b\"\n",
        b"a,b\n1,2\n3\n4,5,6,7\n",
        b"a,b\n\"\n\",\"\r\"\n",
        b"a,b\n\"x\",\n,\"y\"\n",
        long_rows.as_bytes(),
    ];
    for data in cases {
        same_everywhere(data);
    }
}

#[test]
fn plain_records_take_the_fast_path() {
    let data = b"a,b\n1,\"x\"\n2,\"[1,2]\"\r\n3,\"\"\n\n5,\"a\"\"b\"\n4,y";
    // The header goes to csv_core (it is the first record), and so does the last record (the
    // end of the stream ends it); the four plain records between are split fast.
    assert_eq!(same(data, b',', true, &[], None), 4);
}

/// A random document: records of random fields, most of them plain, some with every kind of
/// oddity; sometimes long quoted fields across many reads.
fn document(rng: &mut SmallRng) -> Vec<u8> {
    const ODD: &[&[u8]] = &[
        b"\"",
        b"\"\"",
        b"\r",
        b"\n",
        b"\r\n",
        b",",
        b";",
        b"\t",
        b"\xEF\xBB\xBF",
        b"\xFF",
        b"\xC3\xA9",
        b" ",
    ];
    let mut out = Vec::new();
    let records = rng.random_range(0..12);
    let long = rng.random_bool(0.2);
    for _ in 0..records {
        let fields = rng.random_range(1..6);
        for f in 0..fields {
            if f > 0 {
                out.push(if rng.random_bool(0.9) { b',' } else { b';' });
            }
            let len = if long && rng.random_bool(0.3) {
                rng.random_range(1000..20000)
            } else {
                rng.random_range(0..8)
            };
            let quoted = rng.random_bool(0.4);
            if quoted {
                out.push(b'"');
            }
            for _ in 0..len {
                if rng.random_bool(0.03) {
                    out.extend_from_slice(ODD[rng.random_range(0..ODD.len())]);
                } else {
                    out.push(b"0123456789.-[]ab"[rng.random_range(0..16)]);
                }
            }
            if quoted && rng.random_bool(0.95) {
                out.push(b'"');
            }
        }
        match rng.random_range(0..10) {
            0 => out.extend_from_slice(b"\r\n"),
            1 => out.push(b'\r'),
            2 => out.extend_from_slice(b"\n\n"),
            _ => out.push(b'\n'),
        }
    }
    if rng.random_bool(0.3) {
        out.pop();
    }
    out
}

#[test]
fn random_documents_match_the_csv_crate() {
    let mut rng = SmallRng::seed_from_u64(13);
    let mut fast = 0;
    for _ in 0..3000 {
        let data = document(&mut rng);
        let (delimiter, quoting) = [(b',', true), (b',', true), (b';', true), (b'\t', false)][rng.random_range(0..4)];
        let pieces: Vec<usize> = match rng.random_range(0..3) {
            0 => Vec::new(),
            1 => (0..5).map(|_| rng.random_range(1..40)).collect(),
            _ => (0..5).map(|_| rng.random_range(1..10000)).collect(),
        };
        let fail_at = rng.random_bool(0.2).then(|| rng.random_range(0..10));
        fast += same(&data, delimiter, quoting, &pieces, fail_at);
    }
    // The fast path was exercised, not only the fallback.
    assert!(fast > 3000, "{fast}");
}

#[test]
fn mutated_documents_match_the_csv_crate() {
    let base = b"id,v,t\n1,\"[0.5,-1,2]\",x\n2,\"[]\",\"y\"\n3,\"[1e3]\",\n".to_vec();
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..3000 {
        let mut data = base.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=data.len());
            match rng.random_range(0..3) {
                0 if at < data.len() => {
                    data.remove(at);
                }
                1 if at < data.len() => data[at] = b"\"\r\n,;x\xFF"[rng.random_range(0..7)],
                _ => data.insert(at, b"\"\r\n,;x\xFF"[rng.random_range(0..7)]),
            }
        }
        let pieces: Vec<usize> = (0..3).map(|_| rng.random_range(1..20)).collect();
        same(&data, b',', true, &[], None);
        same(
            &data,
            b',',
            true,
            &pieces,
            rng.random_bool(0.2).then(|| rng.random_range(0..6)),
        );
    }
}

/// Over the quote tracker (an unclosed quote, a quoted field over the bound): the same errors on
/// the same records.
#[test]
fn over_the_quote_tracker_the_errors_are_the_same() {
    let mut too_long = b"id,t\n1,a\n2,\"".to_vec();
    too_long.resize(
        too_long.len() + super::super::csv_reader::MAX_QUOTED_FIELD as usize + 10,
        b'x',
    );
    too_long.extend_from_slice(b"\"\n3,b\n");
    let cases: Vec<(&[u8], bool)> = vec![
        (b"id,t\n1,a\n2,\"oops\n3,c\n4,d\n", true),
        (b"id,t\n1,\"a\"\n2,\"b\n", true),
        (b"id,t\n1,\"a\"\n2,\"b\"", false),
        (&too_long, true),
    ];
    for (data, fails) in cases {
        let tracker = |d: &[u8]| {
            super::super::csv_reader::QuoteTracker::new(Box::new(io::Cursor::new(d.to_vec())), b',', true, 0, Some(1))
        };
        let reads = memchr::memchr_iter(b'\n', data).count() + 3;
        let (want, _) = with_csv(tracker(data), b',', true, reads);
        let (got, _, _) = with_splitter(tracker(data), b',', true, reads);
        assert!(
            want == got,
            "{:?}",
            String::from_utf8_lossy(&data[..data.len().min(100)])
        );
        assert_eq!(want.iter().any(|s| s.0.is_err()), fails);
    }
}
