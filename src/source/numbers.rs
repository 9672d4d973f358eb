//! A flat JSON array of numbers (`[0.5, -1, 2e-3]`), checked in one pass over its bytes.
//!
//! Owns: the exact JSON grammar of such an array (RFC 8259 numbers, JSON whitespace, commas),
//! where it ends, how many numbers it holds, whether each one is surely a finite `f32`, and
//! whether it has whitespace. The JSONL reader finds the end of a long numeric array with it
//! (instead of serde_json walking every number), and typing keeps a vector's text after it.
//! Never: allocates, parses a number it does not have to, or accepts text that is not such an
//! array (anything else, strings and nested arrays included, is `None`: callers then take the
//! general path).

/// What [`scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberArray {
    /// Index just past the closing `]`.
    pub end: usize,
    /// Numbers in the array.
    pub count: usize,
    /// Every number is a finite `f32` (checked without parsing when it has no exponent and at
    /// most 38 integer digits, i.e. below 10³⁸ < `f32::MAX`; parsed as `f64` and narrowed, as the
    /// general path does, otherwise).
    pub finite_f32: bool,
    /// There is whitespace between the brackets.
    pub spaced: bool,
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The number of ASCII digits at the start of `b[at..]`, eight bytes at a time.
#[inline]
fn digits(b: &[u8], at: usize) -> usize {
    let mut n = 0;
    while let Some(chunk) = b.get(at + n..).and_then(|s| s.first_chunk::<8>()) {
        let not_digit = !digit_bytes(u64::from_le_bytes(*chunk)) & HI;
        if not_digit != 0 {
            return n + (not_digit.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while b.get(at + n).is_some_and(u8::is_ascii_digit) {
        n += 1;
    }
    n
}

const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is an ASCII digit. A byte `x ^ 0x30` is a digit's iff it
/// is below 10: adding 0x76 to its low seven bits sets its high bit otherwise (no carry crosses
/// bytes: at most 0x7F + 0x76), and so does a byte from 0x80.
#[inline(always)]
fn digit_bytes(x: u64) -> u64 {
    let t = x ^ 0x3030_3030_3030_3030;
    !(((t & LO7) + 0x7676_7676_7676_7676) | t) & HI
}

/// The high bit of each byte of `x` that is a comma (the same test: equal iff zero after an xor).
#[inline(always)]
fn comma_bytes(x: u64) -> u64 {
    let t = x ^ 0x2C2C_2C2C_2C2C_2C2C;
    !(((t & LO7) + LO7) | t) & HI
}

/// The high bits of a word's bytes as eight bits (byte `i` → bit `i`).
#[inline(always)]
fn gather(m: u64) -> u32 {
    ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// The number at `b[at..]` when it is of the common kind, `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (so
/// surely a finite `f32`), with a comma right after it within 16 bytes: its length. Classifies the
/// 16 bytes at once and checks them with masks: its only dependence on the previous number is where
/// it starts (a byte at a time, each number waited for the previous one's every branch).
#[inline(always)]
fn short_number(b: &[u8], at: usize) -> Option<usize> {
    let w = b.get(at..)?.first_chunk::<16>()?;
    let (lo, hi) = (w.first_chunk::<8>()?, w.last_chunk::<8>()?);
    let (x0, x1) = (u64::from_le_bytes(*lo), u64::from_le_bytes(*hi));
    let commas = u128::from(comma_bytes(x0)) | (u128::from(comma_bytes(x1)) << 64);
    let len = (commas.trailing_zeros() / 8) as usize;
    if len >= 16 {
        return None;
    }
    let digits = gather(digit_bytes(x0)) | (gather(digit_bytes(x1)) << 8);
    let minus = usize::from(w[0] == b'-');
    // The bytes before the comma that are neither digits nor the leading minus: none, or one point.
    let rest = ((1u32 << len) - 1) & !digits & !(minus as u32);
    let point = rest.trailing_zeros() as usize;
    let ok = (digits >> minus) & 1 == 1
        && rest & rest.wrapping_sub(1) == 0
        && (rest == 0 || (w[point.min(15)] == b'.' && (digits >> (point + 1)) & 1 == 1 && (digits << 1) & rest != 0))
        && !(w[minus] == b'0' && (digits >> (minus + 1)) & 1 == 1)
        && (digits >> len.saturating_sub(1)) & 1 == 1;
    ok.then_some(len)
}

/// The JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) at `b[at..]`, a byte at a
/// time: where it ends; `finite_f32` cleared when it is not surely a finite `f32`.
fn number(b: &[u8], mut at: usize, finite_f32: &mut bool) -> Option<usize> {
    let start = at;
    at += usize::from(b.get(at) == Some(&b'-'));
    let int = digits(b, at);
    if int == 0 || (int > 1 && b[at] == b'0') {
        return None;
    }
    at += int;
    let mut plain = int <= 38;
    if b.get(at) == Some(&b'.') {
        let frac = digits(b, at + 1);
        if frac == 0 {
            return None;
        }
        at += 1 + frac;
    }
    if matches!(b.get(at), Some(b'e' | b'E')) {
        plain = false;
        at += 1;
        at += usize::from(matches!(b.get(at), Some(b'+' | b'-')));
        let exp = digits(b, at);
        if exp == 0 {
            return None;
        }
        at += exp;
    }
    if !plain && *finite_f32 {
        // Only ASCII digits, signs, points and exponents were taken.
        *finite_f32 = std::str::from_utf8(&b[start..at])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|x| (x as f32).is_finite());
    }
    Some(at)
}

/// The flat array of JSON numbers that starts with the `[` at `b[start]`, up to its `]`; `None`
/// when there is none there (any other byte, a string, a nested array, a malformed number, a
/// missing or extra comma, the end of `b`).
pub(crate) fn scan(b: &[u8], start: usize) -> Option<NumberArray> {
    if b.get(start) != Some(&b'[') {
        return None;
    }
    let mut at = start + 1;
    let mut spaced = false;
    while b.get(at).copied().is_some_and(is_ws) {
        at += 1;
        spaced = true;
    }
    let mut count = 0;
    let mut finite_f32 = true;
    if b.get(at) == Some(&b']') {
        return Some(NumberArray {
            end: at + 1,
            count,
            finite_f32,
            spaced,
        });
    }
    loop {
        count += 1;
        if let Some(len) = short_number(b, at) {
            at += len + 1;
            continue;
        }
        // Anything else a byte at a time, after the whitespace a comma may have had after it.
        while b.get(at).copied().is_some_and(is_ws) {
            at += 1;
            spaced = true;
        }
        at = number(b, at, &mut finite_f32)?;
        // Then a comma (and the next number) or the closing bracket.
        let mut sep = b.get(at).copied()?;
        if is_ws(sep) {
            spaced = true;
            while b.get(at).copied().is_some_and(is_ws) {
                at += 1;
            }
            sep = b.get(at).copied()?;
        }
        at += 1;
        match sep {
            b',' => {}
            b']' => {
                return Some(NumberArray {
                    end: at,
                    count,
                    finite_f32,
                    spaced,
                });
            }
            _ => return None,
        }
    }
}

/// `b` without JSON whitespace, as text (only called on a scanned array: ASCII).
pub(crate) fn compact(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::{NumberArray, scan};

    /// What serde_json says of `text`: `Some((count, every number a finite f32))` when it is one
    /// JSON array of numbers only (and whitespace around it).
    fn reference(text: &str) -> Option<(usize, bool)> {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        let numbers = items.iter().all(|r| {
            r.get()
                .starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        });
        let finite = items
            .iter()
            .all(|r| r.get().parse::<f64>().is_ok_and(|x| (x as f32).is_finite()));
        numbers.then_some((items.len(), finite))
    }

    /// [`scan`] over a whole text (whitespace around the array allowed).
    fn scanned(text: &str) -> Option<NumberArray> {
        let b = text.as_bytes();
        let start = b.iter().position(|c| !c.is_ascii_whitespace())?;
        let array = scan(b, start)?;
        b[array.end..]
            .iter()
            .all(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .then_some(array)
    }

    fn check(text: &str) {
        let got = scanned(text);
        assert_eq!(
            got.map(|a| (a.count, a.finite_f32)),
            reference(text),
            "{text:?}: {got:?}"
        );
        if let Some(a) = got {
            assert_eq!(a.spaced, text.trim().contains([' ', '\t', '\n', '\r']), "{text:?}");
        }
    }

    #[test]
    fn agrees_with_serde_json_on_hard_cases() {
        for text in [
            "[]",
            "[ ]",
            "[\t\r\n]",
            "[0]",
            "[-0]",
            "[-0.0]",
            "[0.5,-1,2e-3]",
            " [ 0.5 , -1 ,\t2E+3 ]\n",
            "[1e38]",
            "[3.4e38]",
            "[3.4028235e38]",
            "[3.4028236e38]",
            "[3.5e38]",
            "[1e39]",
            "[-1e39]",
            "[1e400]",
            "[1e-50]",
            "[1e-400]",
            "[0e0]",
            "[0E-0]",
            "[1E+0]",
            "[123456789012345678901234567890123456789]",
            "[12345678901234567890123456789012345678]",
            "[-123456789012345678901234567890123456789.5]",
            "[0.1000000000000000055511151231257827]",
            "[1.]",
            "[.5]",
            "[+1]",
            "[01]",
            "[-01]",
            "[00]",
            "[0.]",
            "[-]",
            "[--1]",
            "[1-]",
            "[1.2.3]",
            "[1e2e3]",
            "[1e2.3]",
            "[1.2e3.4]",
            "[1e+-2]",
            "[1e]",
            "[1e+]",
            "[1E-]",
            "[NaN]",
            "[inf]",
            "[-Infinity]",
            "[1,,2]",
            "[1,]",
            "[,1]",
            "[,]",
            "[[1]]",
            "[1,[2]]",
            "[1 2]",
            "[1\u{a0}]",
            "[\"1\"]",
            "[1,\"]\"]",
            "[true]",
            "[null]",
            "[1]]",
            "[[1]",
            "1,2",
            "[1,2",
            "[1,2 ",
            "[",
            "]",
            "",
            " ",
            "[1]x",
            "[1] [2]",
            "[\u{feff}1]",
            "[１]",
            "[1\u{0}]",
            "[0x10]",
            "[1_0]",
        ] {
            check(text);
        }
    }

    #[test]
    fn agrees_with_serde_json_on_random_text() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let pieces: [&str; 24] = [
            "0",
            "1",
            "9",
            "5",
            "00",
            "-",
            "+",
            ".",
            "e",
            "E",
            ",",
            ",",
            " ",
            "\n",
            "]",
            "[",
            "\"",
            "1.5",
            "-0.25",
            "3e38",
            "4e38",
            "e-9",
            "123456789012345678901234567890",
            "x",
        ];
        for _ in 0..200_000 {
            let mut text = String::from("[");
            for _ in 0..next(12) {
                text.push_str(pieces[next(pieces.len() as u64) as usize]);
            }
            if next(4) != 0 {
                text.push(']');
            }
            check(&text);
        }
        // Valid arrays, mostly: numbers, sometimes broken.
        for _ in 0..50_000 {
            let mut text = String::from("[");
            let n = next(20);
            for i in 0..n {
                if i > 0 {
                    text.push_str(if next(50) == 0 { ",," } else { "," });
                }
                if next(30) == 0 {
                    text.push(' ');
                }
                let number = format!(
                    "{}{}{}{}",
                    if next(2) == 0 { "-" } else { "" },
                    next(100_000),
                    if next(2) == 0 {
                        format!(".{}", next(1000))
                    } else {
                        String::new()
                    },
                    if next(8) == 0 {
                        format!("e{}", next(80) as i64 - 40)
                    } else {
                        String::new()
                    }
                );
                text.push_str(&number);
            }
            text.push(']');
            check(&text);
        }
    }

    /// Long arrays (hundreds of numbers, as vectors are), now and then with a flaw: the numbers
    /// checked one after the other over the whole length agree with serde_json.
    #[test]
    fn agrees_with_serde_json_on_long_arrays() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let flaws = [
            "",
            " ",
            ",",
            "00",
            "-",
            ".",
            "1.",
            ".5",
            "e",
            "1e5",
            "1e39",
            "x",
            "]",
            "[",
            "--1",
            "1.2.3",
            "123456789012345678901234567890123456789",
            "0.000000000000001",
        ];
        for _ in 0..3_000 {
            let mut text = String::from("[");
            let n = 1 + next(300);
            for i in 0..n {
                if i > 0 {
                    text.push(',');
                }
                if next(200) == 0 {
                    text.push_str(flaws[next(flaws.len() as u64) as usize]);
                }
                let int = match next(4) {
                    0 => 0,
                    1 => next(10),
                    2 => next(1000),
                    _ => next(u64::MAX),
                };
                let frac = match next(3) {
                    0 => String::new(),
                    1 => format!(".{}", next(100)),
                    _ => format!(".{:0>6}", next(1_000_000)),
                };
                text.push_str(&format!("{}{int}{frac}", if next(2) == 0 { "-" } else { "" }));
            }
            text.push(']');
            check(&text);
        }
    }

    #[test]
    fn finds_the_end_of_an_array_inside_a_line() {
        let line = br#"{"v":[1,2.5,-3e1],"w":2}"#;
        let a = scan(line, 5).expect("array");
        assert_eq!((a.end, a.count, a.finite_f32, a.spaced), (17, 3, true, false));
        assert_eq!(&line[a.end..a.end + 1], b",");
        assert_eq!(scan(line, 4), None);
        assert_eq!(scan(b"[1,2", 0), None);
        assert_eq!(scan(b"[1,2,", 0), None);
        assert_eq!(scan(b"[1\xFF]", 0), None);
    }
}
