//! `f32` → JSON number text for vectors: [`write_f32_array`] writes a slice of `f32`s as a JSON
//! array, each element in at most nine significant digits that read back as exactly that `f32`.
//!
//! How: the `f32` is widened to `f64` (exact) and multiplied by one power of ten from a table,
//! so that nine digits come before the point; rounding gives them. The multiplication's error
//! (two `f64` roundings, under 3e-7 of a unit of the ninth digit) and the rounding's (half a unit)
//! are below half the gap between neighbouring `f32`s, which is at least 2.98 units: nine digits
//! always read back as the same `f32`. The eight- or seven-digit rounding replaces them when it
//! is surely inside the `f32`'s rounding interval too (checked in integers, against a reach
//! per binary exponent that allows for the nine digits' own rounding and a margin), so most
//! numbers come out as short as their shortest form. Zero and subnormals go to zmij. The layout
//! is zmij's (serde_json's): `0.001234`, `12.5`, `3.0`, `-0.0`, `1.5e-7`, `3.4028235e+38`, so for
//! most `f32`s the text is serde_json's, byte for byte (all but 4% of normal(0, 0.05) values, which
//! differ in the last digits or take one more; 0.1% longer on average).
//!
//! Owns: the digits and layout of a vector's numbers. Never: checks a vector (that is `schema`);
//! non-finite elements are written as `null`, as serde_json writes them.

/// `POW10[k + 45]` is the `f64` nearest to 10^k, for k in -45..=53: every scale an `f32` needs.
const POW10: [f64; 99] = [
    1e-45, 1e-44, 1e-43, 1e-42, 1e-41, 1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31, 1e-30,
    1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14,
    1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5,
    1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25,
    1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44,
    1e45, 1e46, 1e47, 1e48, 1e49, 1e50, 1e51, 1e52, 1e53,
];

/// The exponent of `POW10[0]`.
const POW10_MIN: i32 = -45;

/// The longest element (`-0.00000123456789`) and its comma.
const MAX_ELEMENT: usize = 18;

/// Room past an element's end that the fixed-size stores may write over (at most 31 bytes in).
const SLACK: usize = 32;

/// 2^52: adding it to a non-negative `f64` below 2^51 rounds it to an integer (half to even),
/// held in the low bits.
const ROUND: f64 = 4_503_599_627_370_496.0;

/// How far inside the rounding interval a shorter candidate must surely lie, in units of the
/// ninth digit: far more than the multiplication's error (under 3e-7), and enough that a reader
/// that goes through `f64` first, a little off, still lands on the same `f32` (10^-12 relative).
const MARGIN: f64 = 1e-3;

/// Sixteen ASCII `'0'`s.
const ZEROS: u128 = 0x3030_3030_3030_3030_3030_3030_3030_3030;

/// Decimal exponents written without an exponent (`0.000001` to `1000000000000.0`), as zmij.
const PLAIN: std::ops::RangeInclusive<i32> = -6..=12;

/// What an `f32` of binary exponent b (2^b <= |x| < 2^(b+1)) needs, at `SCALES[b + 149]`.
#[derive(Clone, Copy)]
struct Scale {
    /// e0 = floor(b log10 2): the decimal exponent of the first digit, or e0 + 1 from `next`
    /// (10^(e0+1)) on.
    e0: i32,
    next: f64,
    /// For e0 and e0 + 1: 10^(8 - e), which brings nine digits before the point.
    scale: [f64; 2],
    /// For e0 and e0 + 1: how far, in units of the ninth digit, a shorter candidate may lie
    /// from the rounded nine digits and still surely be inside the rounding interval: above (and
    /// below, except at a power of two), and below at a power of two (where the gap below is half
    /// as wide).
    reach: [[u32; 2]; 2],
}

const SCALES: [Scale; 277] = scales();

const fn scales() -> [Scale; 277] {
    let mut out = [Scale {
        e0: 0,
        next: 0.0,
        scale: [0.0; 2],
        reach: [[0; 2]; 2],
    }; 277];
    let mut i = 0;
    while i < 277 {
        let b = i as i32 - 149;
        let e0 = (b * 78_913) >> 18;
        // Half the gap to the next f32 up: 2^(b - 24), or 2^-150 for subnormals.
        let g = if b < -126 { -126 } else { b };
        let half = f64::from_bits(((g - 24 + 1023) as u64) << 52);
        let lo = POW10[(8 - e0 - POW10_MIN) as usize];
        let hi = POW10[(7 - e0 - POW10_MIN) as usize];
        out[i] = Scale {
            e0,
            next: POW10[(e0 + 1 - POW10_MIN) as usize],
            scale: [lo, hi],
            reach: [reach(half * lo), reach(half * hi)],
        };
        i += 1;
    }
    out
}

/// How far from the rounded nine digits a candidate may lie, given half the gap to the
/// neighbours (in units of the ninth digit), [above and below, below at a power of two]: less
/// the half unit the nine digits may be off by their rounding, less the margin.
const fn reach(half: f64) -> [u32; 2] {
    let up = half - 0.5 - MARGIN;
    let down = half * 0.5 - 0.5 - MARGIN;
    [up as u32, down as u32]
}

/// Elements worked on at a time: their digits first, then their text.
const BLOCK: usize = 16;

/// Appends `v` to `out` as a JSON array of numbers (see the module's comment); non-finite
/// elements are written as `null`.
pub(crate) fn write_f32_array(out: &mut Vec<u8>, v: &[f32]) {
    let start = out.len();
    out.resize(start + 2 + v.len() * MAX_ELEMENT + SLACK, 0);
    let buf = &mut out[start..];
    buf[0] = b'[';
    let mut pos = 1;
    for block in v.chunks(BLOCK) {
        let mut digits = [(0u32, 0i32); BLOCK];
        for (d, x) in digits.iter_mut().zip(block) {
            *d = decimal(*x);
        }
        for (d, x) in digits.iter().zip(block) {
            pos = write_f32(buf, pos, *x, *d);
            buf[pos] = b',';
            pos += 1;
        }
    }
    // The last comma, if any, becomes the bracket.
    pos -= usize::from(!v.is_empty());
    buf[pos] = b']';
    out.truncate(start + pos + 1);
}

/// Writes `x`, whose [`decimal`] is `(m, e)`, at `buf[pos..]` (with at least `MAX_ELEMENT +
/// SLACK` bytes there) and returns where it ends.
#[inline(always)]
fn write_f32(buf: &mut [u8], mut pos: usize, x: f32, (m, e): (u32, i32)) -> usize {
    if !x.is_finite() {
        buf[pos..pos + 4].copy_from_slice(b"null");
        return pos + 4;
    }
    let bits = x.to_bits();
    buf[pos] = b'-';
    pos += (bits >> 31) as usize;
    if bits & 0x7f80_0000 == 0 {
        // Zero, or a subnormal: zmij's shortest form (nine digits would do, but only one to
        // eight are needed down there, which the candidates below do not find).
        let mut zmij = zmij::Buffer::new();
        let text = if bits << 1 == 0 {
            "0.0"
        } else {
            zmij.format_finite(x.abs())
        };
        buf[pos..pos + text.len()].copy_from_slice(text.as_bytes());
        return pos + text.len();
    }
    let (digits, n) = nine_digits(m);
    if PLAIN.contains(&e) {
        // `lead` zeros, then the digits (9 + 6 fit in 16 bytes); `int` of them before the point.
        let lead = (-e).max(0) as usize;
        let int = (e + 1).max(1) as usize;
        let z = digits << (8 * lead);
        let frac = z.checked_shr(8 * int as u32).unwrap_or(0);
        buf[pos..pos + 16].copy_from_slice(&(z | ZEROS).to_le_bytes());
        buf[pos + int] = b'.';
        buf[pos + int + 1..pos + int + 17].copy_from_slice(&(frac | ZEROS).to_le_bytes());
        // At least one digit after the point (`3.0`).
        pos + (lead + n).max(int + 1) + 1
    } else {
        // d.ddde-7, de+13
        buf[pos..pos + 16].copy_from_slice(&(digits | ZEROS).to_le_bytes());
        buf[pos + 1] = b'.';
        buf[pos + 2..pos + 18].copy_from_slice(&((digits >> 8) | ZEROS).to_le_bytes());
        pos += if n == 1 { 1 } else { n + 1 };
        buf[pos] = b'e';
        buf[pos + 1] = if e < 0 { b'-' } else { b'+' };
        pos += 2;
        let a = e.unsigned_abs();
        if a >= 10 {
            buf[pos] = b'0' + (a / 10) as u8;
            pos += 1;
        }
        buf[pos] = b'0' + (a % 10) as u8;
        pos + 1
    }
}

/// For a finite `x` that is neither zero nor subnormal: nine digits `m` (in 10^8..10^9, maybe with trailing zeros) and the
/// decimal exponent `e` of the first, such that m * 10^(e - 8) reads back as `x`; for other `x`,
/// something meaningless (and no panic).
#[inline(always)]
fn decimal(x: f32) -> (u32, i32) {
    let bits = x.to_bits();
    let ax = f64::from(x.abs());
    let t = &SCALES[((ax.to_bits() >> 52) as usize).wrapping_sub(1023 - 149).min(276)];
    let up = usize::from(ax >= t.next);
    let mut e = t.e0 + up as i32;
    let s = ax * t.scale[up];
    let reach = t.reach[up];
    // The gap below is half as wide at a power of two (but not next to the subnormals).
    let pow2 = bits & 0x7f_ffff == 0 && (bits >> 23) & 0xff > 1;
    let (above, below) = (reach[0], reach[usize::from(pow2)]);
    let nine = ((s + ROUND).to_bits() - ROUND.to_bits()) as u32;
    // A shorter candidate replaces `m` when it is close enough to `nine` (selected with masks:
    // which one wins is a coin toss for a branch predictor).
    let pick = |m: u32, c: u32| {
        let take = u32::from((c <= nine + above) & (c + below >= nine)).wrapping_neg();
        (c & take) | (m & !take)
    };
    let m = pick(nine, (nine + 5) / 10 * 10);
    let mut m = pick(m, (nine + 50) / 100 * 100);
    if m >= 1_000_000_000 {
        m /= 10;
        e += 1;
    }
    (m, e)
}

/// The nine digits of `m` (in 10^8..10^9), one a byte (values 0..=9), the first at the lowest
/// byte, and how many there are without the trailing zeros.
#[inline(always)]
fn nine_digits(m: u32) -> (u128, usize) {
    let first = m / 100_000_000;
    let eight = eight_digits(m - first * 100_000_000);
    let n = 9 - (eight.leading_zeros() / 8) as usize;
    (u128::from(first) | u128::from(eight) << 8, n)
}

/// The eight decimal digits of `r` (below 10^8), one a byte, the first at the lowest byte.
#[inline(always)]
fn eight_digits(r: u32) -> u64 {
    let hi = r / 10_000;
    let lo = r - hi * 10_000;
    // Two 4-digit lanes, then four 2-digit lanes (x / 100 as x * 10486 >> 20, exact below
    // 10^4), then eight digits (x / 10 as x * 103 >> 10, exact below 100).
    let x = u64::from(hi) | u64::from(lo) << 32;
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | (x - hundreds * 100) << 16;
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | (x - tens * 10) << 8
}

#[cfg(test)]
mod tests {
    use super::write_f32_array;

    fn text(v: &[f32]) -> String {
        let mut out = Vec::new();
        write_f32_array(&mut out, v);
        String::from_utf8(out).expect("utf-8")
    }

    /// Every element of `v`, written as an array, reads back as the same bits (through
    /// serde_json, which checks that the text is JSON, and through `str::parse` one by one), in
    /// at most 17 bytes and nine significant digits; returns the text.
    fn check(v: &[f32]) -> String {
        let t = text(v);
        let back: Vec<Option<f32>> = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
        assert_eq!(back.len(), v.len(), "{t}");
        let items = t[1..t.len() - 1].split(',').filter(|s| !s.is_empty());
        for ((b, x), item) in back.iter().zip(v).zip(items) {
            let bits = x.to_bits();
            if !x.is_finite() {
                assert!(b.is_none() && item == "null", "{item} for {bits:#x}");
                continue;
            }
            assert_eq!(b.map(f32::to_bits), Some(bits), "{item} for {x:e} ({bits:#x})");
            let parsed: f32 = item.parse().unwrap_or_else(|e| panic!("{e}: {item}"));
            assert_eq!(parsed.to_bits(), bits, "{item} for {x:e} ({bits:#x})");
            assert!(item.len() <= 17, "{item}");
            let mantissa = item.split('e').next().unwrap_or(item);
            let digits = mantissa
                .trim_start_matches(['-', '0', '.'])
                .trim_end_matches(['0', '.']);
            assert!(digits.bytes().filter(u8::is_ascii_digit).count() <= 9, "{item}");
        }
        t
    }

    /// A fixed-seed generator (splitmix64), so that failures repeat.
    fn bits(seed: u64) -> impl Iterator<Item = u64> {
        let mut s = seed;
        std::iter::repeat_with(move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn the_layout_is_serde_jsons() {
        for (x, want) in [
            (0.0f32, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-15.984_375, "-15.984375"),
            (0.015_625, "0.015625"),
            (1.0 / 3.0, "0.33333334"),
            (f32::from_bits(0x3dcc_ccd3), "0.100000046"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (-1.234_567_8e-6, "-0.0000012345678"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (16_777_216.0, "16777216.0"),
            (123_456_789.0, "123456790.0"),
            (1e12, "1000000000000.0"),
            (1e13, "1e+13"),
            (-1.234_567_8e13, "-1.2345678e+13"),
            (f32::MAX, "3.4028235e+38"),
            (f32::MIN, "-3.4028235e+38"),
            (f32::MIN_POSITIVE, "1.1754944e-38"),
            (1e-45, "1e-45"),
            (-1e-45, "-1e-45"),
            (f32::from_bits(0x007f_ffff), "1.1754942e-38"),
        ] {
            assert_eq!(check(&[x]), format!("[{want}]"), "{x:e}");
            assert_eq!(check(&[x]), serde_json::to_string(&[x]).expect("json"), "{x:e}");
        }
        assert_eq!(text(&[]), "[]");
        assert_eq!(
            text(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.5]),
            "[null,null,null,2.5]"
        );
    }

    #[test]
    fn edges_read_back() {
        let mut v = vec![
            0.0f32,
            -0.0,
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            0.1,
            0.2,
            0.3,
            1.0 / 3.0,
            2.0 / 3.0,
            f32::from_bits(1e-4f32.to_bits() - 1),
            9.999_999e-5,
            1e-4,
            999_999_940.0,
            999_999_900.0,
            1e9,
        ];
        // Powers of ten (where the decimal exponent changes) and of two (where the gap below
        // halves), each with two neighbours on either side, and both signs.
        let tens = (-45..=38).map(|k| format!("1e{k}").parse::<f32>().expect("f32"));
        let twos = (-149..=127).map(|k| 2f64.powi(k) as f32);
        for x in tens.chain(twos).collect::<Vec<_>>() {
            for d in 0..=4u32 {
                let b = (x.to_bits() + d).saturating_sub(2);
                v.push(f32::from_bits(b));
            }
        }
        v.extend(v.clone().iter().map(|x| -x));
        check(&v);
    }

    #[test]
    fn random_bit_patterns_read_back() {
        // Two million patterns, as arrays of 768 (a quarter of them as normal(0, 0.05) values,
        // the kind an embedding holds).
        let mut r = bits(13);
        for round in 0..2_600 {
            let v: Vec<f32> = if round % 4 == 0 {
                normal(&mut r, 768)
            } else {
                r.by_ref().take(768).map(|b| f32::from_bits(b as u32)).collect()
            };
            check(&v);
        }
    }

    fn normal(r: &mut impl Iterator<Item = u64>, n: usize) -> Vec<f32> {
        let mut unit = || (r.next().unwrap_or(1) >> 11) as f64 / (1u64 << 53) as f64;
        (0..n)
            .map(|_| {
                let (a, b) = (unit().max(1e-300), unit());
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos() * 0.05) as f32
            })
            .collect()
    }

    #[test]
    fn embedding_values_are_about_as_short_as_serde_jsons() {
        let v = normal(&mut bits(7), 100_000);
        let (ours, theirs) = (check(&v).len(), serde_json::to_string(&v).expect("json").len());
        // 0.1% longer when measured (12.24 bytes a number against 12.23).
        assert!(ours as f64 <= theirs as f64 * 1.005, "{ours} vs {theirs}");
    }

    /// Every one of the 2^32 bit patterns, in release mode on two threads (minutes):
    /// `cargo test --release --lib every_f32_reads_back -- --ignored`.
    #[test]
    #[ignore]
    fn every_f32_reads_back() {
        std::thread::scope(|s| {
            for half in 0..2u64 {
                s.spawn(move || {
                    let start = half << 31;
                    let mut v = Vec::with_capacity(4096);
                    for b in start..start + (1 << 31) {
                        v.push(f32::from_bits(b as u32));
                        if v.len() == 4096 {
                            check(&v);
                            v.clear();
                        }
                    }
                    check(&v);
                });
            }
        });
    }

    #[test]
    fn f32_arrays_read_back_as_the_same_f32s() {
        let tricky = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.2,
            0.3,
            1e-7,
            1e-6,
            1.5e-6,
            -1.2345678e-6,
            1e12,
            1e13,
            -1.2345678e12,
            16_777_216.0,
            16_777_217.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::EPSILON,
            1e-45,
            -1e-45,
            3e-45,
            1.1754942e-38,
            // Need 9 significant digits to read back: 0.100000046, -0.100000046.
            f32::from_bits(0x3dcc_ccd3),
            f32::from_bits(0xbdcc_ccd3),
            16_777_218.0,
            f32::from_bits(0x3f80_0001),
            3.4028233e38,
            -15.984375,
            0.015625,
            std::f32::consts::PI,
        ];
        // Each reads back as the same f32 (the sign of zero included), in at most nine significant
        // digits. (The text was serde_json's byte for byte until f32_json's writer; it still is for
        // most values, not all: f32_json's tests.)
        for x in tricky {
            let text = text(&[x]);
            let back: Vec<f32> = serde_json::from_str(&text).expect("parse");
            assert_eq!(back.len(), 1, "{text}");
            assert_eq!(back[0].to_bits(), x.to_bits(), "{text} for {x:e} ({:#x})", x.to_bits());
            if x.to_bits() & 0x7fff_ffff == 0x3dcc_ccd3 {
                assert!(text.contains("0.100000046"), "{text}");
            }
        }
        let back: Vec<f32> = serde_json::from_str(&text(&tricky)).expect("parse");
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            tricky.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(text(&[]), "[]");
        // Not finite: as serde_json writes it (the schema rejects such vectors before this).
        let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5];
        assert_eq!(
            text(&odd),
            serde_json::to_string(&crate::record::Value::Vector(odd.to_vec())).expect("json")
        );
        assert_eq!(text(&odd), "[null,null,null,1.5]");
    }

    #[test]
    fn f32_arrays_read_back_across_every_exponent() {
        // Bit patterns spread over all of f32 (both signs, subnormals, every exponent), a few
        // thousand at a time so that the buffer is reused across lengths.
        let all: Vec<f32> = (0..=u32::MAX / 40_009)
            .map(|i| f32::from_bits(i.wrapping_mul(40_009)))
            .collect();
        for chunk in all.chunks(4096) {
            let text = text(chunk);
            let back: Vec<Option<f32>> = serde_json::from_str(&text).expect("json");
            assert_eq!(back.len(), chunk.len());
            for (b, x) in back.iter().zip(chunk) {
                match b {
                    Some(b) => assert_eq!(b.to_bits(), x.to_bits(), "{x:e}"),
                    None => assert!(!x.is_finite(), "{x:e}"),
                }
            }
        }
    }
}
