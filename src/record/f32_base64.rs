//! `f32`s → a V2 packed vector: a JSON string of standard, padded base64 of the elements'
//! little-endian bytes ("float32/float64压缩为bytes后的base64编码", doc 2173269). The docs do
//! not give the byte order; little-endian is what numpy's `tobytes()` gives on x86 and ARM.
//!
//! Owns: that encoding, written straight into a row's buffer. Never: decides whether a vector is
//! sent packed (`[collection] vector_encoding`, applied by the schema) or checks the values (the
//! schema has: every element is finite).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Elements encoded at a time: 192 × 4 = 768 bytes, a multiple of 3, so that only the last block
/// can need padding and the blocks' texts join into the text of the whole.
const BLOCK: usize = 192;

/// The bytes [`write_f32_base64`] appends for `len` elements, quotes included.
pub(crate) fn f32_base64_len(len: usize) -> usize {
    (len * 4).div_ceil(3) * 4 + 2
}

/// The `f32`s of packed little-endian bytes (a trailing part of an element is left out): what
/// [`write_f32_base64`] packed, once the base64 is decoded.
pub(crate) fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .filter_map(|b| b.first_chunk::<4>().map(|b| f32::from_le_bytes(*b)))
        .collect()
}

/// Appends `v` as a JSON string of base64 of its packed little-endian bytes.
pub(crate) fn write_f32_base64(out: &mut Vec<u8>, v: &[f32]) {
    let mut bytes = [0u8; BLOCK * 4];
    out.push(b'"');
    for block in v.chunks(BLOCK) {
        let n = block.len() * 4;
        for (dst, x) in bytes.chunks_exact_mut(4).zip(block) {
            dst.copy_from_slice(&x.to_le_bytes());
        }
        let at = out.len();
        out.resize(at + n.div_ceil(3) * 4, 0);
        // The region is exactly the encoded length, so the engine cannot run out of room; were it
        // ever short, the text is built the slow way rather than left short.
        if let Ok(written) = STANDARD.encode_slice(&bytes[..n], &mut out[at..]) {
            out.truncate(at + written);
        } else {
            out.truncate(at);
            out.extend_from_slice(STANDARD.encode(&bytes[..n]).as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::{f32_base64_len, write_f32_base64};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn text(v: &[f32]) -> String {
        let mut out = Vec::new();
        write_f32_base64(&mut out, v);
        assert_eq!(out.len(), f32_base64_len(v.len()), "the size hint is exact");
        String::from_utf8(out).expect("base64 is ASCII")
    }

    #[test]
    fn known_texts() {
        // 1.0f32 is 00 00 80 3f little-endian; -2.0 is 00 00 00 c0.
        assert_eq!(text(&[1.0]), "\"AACAPw==\"");
        assert_eq!(text(&[1.0, -2.0]), "\"AACAPwAAAMA=\"");
        assert_eq!(text(&[1.0, -2.0, 0.0]), "\"AACAPwAAAMAAAAAA\"");
        assert_eq!(text(&[]), "\"\"");
    }

    #[test]
    fn every_length_across_blocks_reads_back_bit_for_bit() {
        // Lengths around the 192-element block and its multiples, with awkward values.
        let pool = [0.1f32, -0.0, 1e-45, f32::MAX, f32::MIN_POSITIVE, -3.5, 0.333_333_34];
        for len in [1, 2, 3, 4, 5, 191, 192, 193, 383, 384, 385, 768, 1000, 4096] {
            let v: Vec<f32> = (0..len).map(|i| pool[i % pool.len()] * (i as f32 + 1.0)).collect();
            let t = text(&v);
            let bytes = STANDARD.decode(t.trim_matches('"')).expect("standard padded base64");
            let back: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert_eq!(back, v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "len {len}");
        }
    }
}
