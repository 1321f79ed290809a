//! Harnesses for `engine::quant`: the 6-bit scale/min unpacking of Q4_K/Q5_K blocks and the
//! byte size of a row (PO-QK-SCALES-001, PO-QK-ROW-BYTES-001 in contracts/quant-kernels-v1.yaml).

#[cfg(any(kani, test))]
use engine::quant::blocks::scale_min_k4;
#[cfg(any(kani, test))]
use engine::quant::QType;

/// `len` bits of the 12 scale bytes read as one 96-bit little-endian integer, from bit `start`.
fn bits(s: &[u8; 12], start: u32, len: u32) -> u8 {
    let mut v = 0u128;
    for (i, &b) in s.iter().enumerate() {
        v |= (b as u128) << (8 * i);
    }
    ((v >> start) & ((1u128 << len) - 1)) as u8
}

/// The scale and min of sub-block `j` (0..8) from the layout as ggml documents it, stated as bit
/// ranges of the 96-bit field: for j < 4 the scale is bits 8j..8j+6 and the min bits
/// 8(j+4)..8(j+4)+6; for j >= 4 the low 4 bits of the scale are bits 8(j+4)..8(j+4)+4 and its
/// high 2 bits the top two bits of byte j-4, the min's low 4 bits the high nibble of byte j+4
/// and its high 2 bits the top two bits of byte j.
pub fn spec_scale_min(s: &[u8; 12], j: usize) -> (u8, u8) {
    let j = j as u32;
    if j < 4 {
        (bits(s, 8 * j, 6), bits(s, 8 * (j + 4), 6))
    } else {
        let sc = bits(s, 8 * (j + 4), 4) | (bits(s, 8 * (j - 4) + 6, 2) << 4);
        let m = bits(s, 8 * (j + 4) + 4, 4) | (bits(s, 8 * j + 6, 2) << 4);
        (sc, m)
    }
}

/// ggml's packing of eight 6-bit (scale, min) pairs into 12 bytes (the inverse the quantizer
/// applies): pairs 0..4 in the low 6 bits of bytes 0..4 and 4..8; pairs 4..8 split into a low
/// nibble in bytes 8..12 and their top two bits in the spare top bits of bytes 0..8.
pub fn pack_scales_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] & 63;
        s[j + 4] = m[j] & 63;
    }
    for j in 4..8 {
        s[j + 4] = (sc[j] & 0xf) | ((m[j] & 0xf) << 4);
        s[j - 4] |= (sc[j] >> 4) << 6;
        s[j] |= (m[j] >> 4) << 6;
    }
    s
}

/// What `QType::row_bytes` must return, stated by division instead of the implementation's
/// checked multiplication: `Some(b)` exactly when the block size divides `cols` and `b` is the
/// block count times the block bytes without overflow.
#[cfg(any(kani, test))]
fn row_bytes_holds(q: QType, cols: usize) -> bool {
    let (bs, bb) = (q.block_size(), q.block_bytes());
    match q.row_bytes(cols) {
        Some(b) => cols % bs == 0 && b % bb == 0 && b / bb == cols / bs,
        None => cols % bs != 0 || cols / bs > usize::MAX / bb,
    }
}

/// For any 12 bytes and any sub-block, both values are 6-bit and equal the specification.
#[cfg(kani)]
#[kani::proof]
pub fn scale_min_k4_in_range() {
    let s: [u8; 12] = kani::any();
    let j: usize = kani::any();
    kani::assume(j < 8);
    let (sc, m) = scale_min_k4(j, &s);
    assert!(sc < 64 && m < 64);
    assert_eq!((sc, m), spec_scale_min(&s, j));
}

/// Unpacking inverts ggml's packing for every eight 6-bit (scale, min) pairs.
#[cfg(kani)]
#[kani::proof]
#[kani::unwind(9)]
pub fn scale_min_k4_round_trip() {
    let sc: [u8; 8] = kani::any();
    let m: [u8; 8] = kani::any();
    for j in 0..8 {
        kani::assume(sc[j] < 64 && m[j] < 64);
    }
    let s = pack_scales_k4(&sc, &m);
    for j in 0..8 {
        assert_eq!(scale_min_k4(j, &s), (sc[j], m[j]));
    }
}

/// `row_bytes` is exact and total for every qtype and every column count.
#[cfg(kani)]
#[kani::proof]
#[kani::unwind(10)]
pub fn row_bytes_exact() {
    let cols: usize = kani::any();
    for q in QType::ALL {
        assert!(row_bytes_holds(q, cols));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twin of `scale_min_k4_in_range`: exhaustive over the bytes each j reads (2^16 patterns
    /// for j < 4, 2^24 for j >= 4), the other bytes set from a fixed pseudo-random pattern.
    #[test]
    fn scale_min_k4_in_range_exhaustive() {
        let mut s = [0u8; 12];
        for (i, b) in s.iter_mut().enumerate() {
            *b = (0x9e37_79b9u32.wrapping_mul(i as u32 + 1) >> 24) as u8;
        }
        for j in 0..8 {
            let reads: Vec<usize> = if j < 4 {
                vec![j, j + 4]
            } else {
                vec![j + 4, j - 4, j]
            };
            for pattern in 0u32..1 << (8 * reads.len()) {
                for (k, &at) in reads.iter().enumerate() {
                    s[at] = (pattern >> (8 * k)) as u8;
                }
                let (sc, m) = scale_min_k4(j, &s);
                assert!(sc < 64 && m < 64, "j={j} s={s:?}");
                assert_eq!((sc, m), spec_scale_min(&s, j), "j={j} s={s:?}");
            }
        }
    }

    /// Twin of `scale_min_k4_round_trip`: every (scale, min) pair at every position j
    /// (exhaustive per pair), the other seven pairs from a fixed pseudo-random pattern.
    #[test]
    fn scale_min_k4_round_trip_exhaustive() {
        let mut sc = [0u8; 8];
        let mut m = [0u8; 8];
        for i in 0..8 {
            sc[i] = ((i * 37 + 11) & 63) as u8;
            m[i] = ((i * 53 + 5) & 63) as u8;
        }
        for j in 0..8 {
            for pair in 0u32..64 * 64 {
                let (mut sc, mut m) = (sc, m);
                sc[j] = (pair & 63) as u8;
                m[j] = (pair >> 6) as u8;
                let s = pack_scales_k4(&sc, &m);
                for i in 0..8 {
                    assert_eq!(scale_min_k4(i, &s), (sc[i], m[i]), "j={j} pair={pair}");
                }
            }
        }
    }

    /// Twin of `row_bytes_exact`: every column count up to 2^20, and around every multiple of
    /// the block size near the overflow boundary and near usize::MAX.
    #[test]
    fn row_bytes_exact_sampled() {
        for q in QType::ALL {
            for cols in 0..1usize << 20 {
                assert!(row_bytes_holds(q, cols), "{q} cols={cols}");
            }
            let (bs, bb) = (q.block_size(), q.block_bytes());
            // Where the block count times the block bytes starts to overflow (past usize::MAX
            // for the qtypes whose blocks are smaller in bytes than in values: no overflow).
            let edge = (usize::MAX / bb).saturating_mul(bs);
            for centre in [edge, usize::MAX - 1024, usize::MAX / 2] {
                for cols in centre.saturating_sub(1024)..=centre.saturating_add(1024) {
                    assert!(row_bytes_holds(q, cols), "{q} cols={cols}");
                }
            }
        }
    }

    /// The specification itself can tell a wrong unpacking apart (otherwise the twins above
    /// would prove nothing): ggml's bug-prone step, the high bits of the min for j >= 4, taken
    /// from byte j - 4 instead of byte j, disagrees with it.
    #[test]
    fn spec_rejects_a_planted_unpacking_bug() {
        let wrong = |j: usize, q: &[u8; 12]| -> (u8, u8) {
            let (sc, m) = scale_min_k4(j, q);
            if j >= 4 {
                (sc, (q[j + 4] >> 4) | ((q[j - 4] >> 6) << 4))
            } else {
                (sc, m)
            }
        };
        let s = pack_scales_k4(&[0, 0, 0, 0, 0, 0, 0, 0], &[0, 0, 0, 0, 48, 0, 0, 0]);
        assert_ne!(wrong(4, &s), spec_scale_min(&s, 4));
        assert_eq!(scale_min_k4(4, &s), spec_scale_min(&s, 4));
    }
}
