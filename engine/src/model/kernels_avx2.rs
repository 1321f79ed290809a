//! AVX2 versions of the 8-bit-activation dot products (x86_64 only, chosen at run time).
//!
//! The integer sums are exact in both versions; the float parts differ only in summation order
//! (vector lanes), so AVX2 and scalar agree to f32 rounding (tested below). Within one build the
//! same kernel serves prefill and decode, so results stay deterministic.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::kernels::f16_to_f32;

#[inline]
fn rd_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256(v, 1);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

#[inline(always)]
unsafe fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "f16c")]
unsafe fn f16c(b: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// Byte-shuffle masks broadcasting i16 element `i` (bytes 2i, 2i+1) to all 16 lanes.
const K4_SCALE_SHUFFLE: [__m256i; 8] = {
    let mut m = [unsafe { std::mem::transmute::<[u8; 32], __m256i>([0u8; 32]) }; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = [0u8; 32];
        let mut k = 0;
        while k < 32 {
            b[k] = (2 * i + k % 2) as u8;
            k += 1;
        }
        m[i] = unsafe { std::mem::transmute::<[u8; 32], __m256i>(b) };
        i += 1;
    }
    m
};

/// Q4_K row . Q8_K activations.
///
/// Per block the integer sums are exact; the float part accumulates `d * dx * sumi` lane-wise
/// in a vector (as ggml does) instead of one scalar per block, so the result differs from the
/// scalar kernel by f32 rounding only (tested to 1e-6 relative).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `row` holds whole Q4_K blocks and the activation
/// slices cover them (checked by the caller's shapes).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k(row: &[u8], k_d: &[f32], k_qs: &[i8], k_bsums: &[i16]) -> f32 {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (b, w) in row.chunks_exact(144).enumerate() {
        let dx = *k_d.get_unchecked(b);
        let d = f16c(w, 0) * dx;
        let dmin = f16c(w, 2) * dx;
        // Unpack the 12 scale bytes into 8 scales then 8 mins (ggml's utmp trick).
        let mut u = [0u32; 4];
        for (k, c) in w[4..16].chunks_exact(4).enumerate() {
            u[k] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        u[3] = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
        let uaux = u[1] & KMASK1;
        u[1] = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
        u[2] = uaux;
        u[0] &= KMASK1;
        let sm: [u8; 16] = std::mem::transmute(u);
        // mins . (pair sums of the activation's 16-value block sums), as ggml: 8 i16 x 8 i16.
        let mins_and_scales = _mm256_cvtepu8_epi16(_mm_loadu_si128(sm.as_ptr() as *const __m128i));
        let q8sums = _mm256_loadu_si256(k_bsums.as_ptr().add(16 * b) as *const __m256i);
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(q8sums),
            _mm256_extracti128_si256(q8sums, 1),
        );
        let prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
        let qs = w.as_ptr().add(16);
        let qx = k_qs.as_ptr().add(256 * b);
        // The 8 scales as i16 in both 128-bit lanes; each sub-block's scale is broadcast with an
        // in-lane byte shuffle (no round trip through memory).
        let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(mins_and_scales));
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q4, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), mask);
            let y1 = _mm256_loadu_si256(qx.add(64 * j) as *const __m256i);
            let y2 = _mm256_loadu_si256(qx.add(64 * j + 32) as *const __m256i);
            let s1 = _mm256_shuffle_epi8(scales, K4_SCALE_SHUFFLE[2 * j]);
            let s2 = _mm256_shuffle_epi8(scales, K4_SCALE_SHUFFLE[2 * j + 1]);
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), s1);
            let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), s2);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    hsum_f32(acc) - _mm_cvtss_f32(m)
}

/// One Q4_K row . four Q8_K activation rows (four tokens of a prefill): the weight block is
/// loaded and split into nibbles once for the four tokens. Each token's arithmetic is exactly
/// [`dot_q4k_q8k`]'s, in the same order, so each result equals the single-token call bit for
/// bit (tested below).
///
/// # Safety
/// As [`dot_q4k_q8k`], for each of the four activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k_x4(row: &[u8], acts: [(&[f32], &[i8], &[i16]); 4]) -> [f32; 4] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_m = [_mm_setzero_ps(); 4];
    for (b, w) in row.chunks_exact(144).enumerate() {
        let wd = f16c(w, 0);
        let wdmin = f16c(w, 2);
        let mut u = [0u32; 4];
        for (k, c) in w[4..16].chunks_exact(4).enumerate() {
            u[k] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        u[3] = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
        let uaux = u[1] & KMASK1;
        u[1] = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
        u[2] = uaux;
        u[0] &= KMASK1;
        let sm: [u8; 16] = std::mem::transmute(u);
        let mins_and_scales = _mm256_cvtepu8_epi16(_mm_loadu_si128(sm.as_ptr() as *const __m128i));
        let mins = _mm256_extracti128_si256(mins_and_scales, 1);
        let scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(mins_and_scales));
        let qs = w.as_ptr().add(16);
        let mut sumi = [_mm256_setzero_si256(); 4];
        for j in 0..4 {
            let q4 = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q4, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), mask);
            let s1 = _mm256_shuffle_epi8(scales, K4_SCALE_SHUFFLE[2 * j]);
            let s2 = _mm256_shuffle_epi8(scales, K4_SCALE_SHUFFLE[2 * j + 1]);
            for t in 0..4 {
                let qx = acts[t].1.as_ptr().add(256 * b);
                let y1 = _mm256_loadu_si256(qx.add(64 * j) as *const __m256i);
                let y2 = _mm256_loadu_si256(qx.add(64 * j + 32) as *const __m256i);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y1), s1);
                let p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y2), s2);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p1, p2));
            }
        }
        for t in 0..4 {
            let (k_d, _, k_bsums) = acts[t];
            let dx = *k_d.get_unchecked(b);
            let (d, dmin) = (wd * dx, wdmin * dx);
            let q8sums = _mm256_loadu_si256(k_bsums.as_ptr().add(16 * b) as *const __m256i);
            let q8s = _mm_hadd_epi16(
                _mm256_castsi256_si128(q8sums),
                _mm256_extracti128_si256(q8sums, 1),
            );
            let prod = _mm_madd_epi16(mins, q8s);
            acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    let mut out = [0.0f32; 4];
    for t in 0..4 {
        let m = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = hsum_f32(acc[t]) - _mm_cvtss_f32(m);
    }
    out
}

/// Byte-shuffle masks picking scales (2i, 2i+1) of a Q6_K block, each repeated 8 times.
const SCALE_SHUFFLE: [__m128i; 8] = {
    let mut m = [unsafe { std::mem::transmute::<[u8; 16], __m128i>([0u8; 16]) }; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = [0u8; 16];
        let mut k = 0;
        while k < 16 {
            b[k] = (2 * i + k / 8) as u8;
            k += 1;
        }
        m[i] = unsafe { std::mem::transmute::<[u8; 16], __m128i>(b) };
        i += 1;
    }
    m
};

/// Q6_K row . Q8_K activations (vector float accumulation as in [`dot_q4k_q8k`]).
///
/// # Safety
/// As [`dot_q4k_q8k`], for Q6_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q6k_q8k(row: &[u8], k_d: &[f32], k_qs: &[i8]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let c32 = _mm256_set1_epi8(32);
    let mut accf = _mm256_setzero_ps();
    for (b, w) in row.chunks_exact(210).enumerate() {
        let d = f16c(w, 208) * *k_d.get_unchecked(b);
        let qx = k_qs.as_ptr().add(256 * b);
        let mut acc = _mm256_setzero_si256();
        let scales = _mm_loadu_si128(w.as_ptr().add(192) as *const __m128i);
        for half in 0..2 {
            let ql = w.as_ptr().add(64 * half);
            let qh = _mm256_loadu_si256(w.as_ptr().add(128 + 32 * half) as *const __m256i);
            let x = qx.add(128 * half);
            let ql0 = _mm256_loadu_si256(ql as *const __m256i);
            let ql1 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                ),
            ];
            for (g, qg) in q.iter().enumerate() {
                let y = _mm256_loadu_si256(x.add(32 * g) as *const __m256i);
                // (q - 32) . y = q . y - 32 . y, both in i16 without saturation (63*127*2 < 2^15).
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(*qg, y), _mm256_maddubs_epi16(c32, y));
                // [s_2g x 8, s_2g+1 x 8] as i16: one byte shuffle of the block's 16 scales.
                let scv =
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, SCALE_SHUFFLE[4 * half + g]));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scv));
            }
        }
        accf = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(acc), accf);
    }
    hsum_f32(accf)
}

/// Q8_0 row . Q8_0 activations.
///
/// # Safety
/// As [`dot_q4k_q8k`], for Q8_0 blocks.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_q8_0_q8_0(row: &[u8], q0_d: &[f32], q0_qs: &[i8]) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let mut s = 0.0f32;
    for (b, w) in row.chunks_exact(34).enumerate() {
        let xw = _mm256_loadu_si256(w.as_ptr().add(2) as *const __m256i);
        let y = _mm256_loadu_si256(q0_qs.as_ptr().add(32 * b) as *const __m256i);
        // |w| . sign(y, w): maddubs wants an unsigned first operand.
        let ax = _mm256_sign_epi8(xw, xw);
        let sy = _mm256_sign_epi8(y, xw);
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
        let isum = hsum_i32(p);
        s += rd_f16(w, 0) * q0_d[b] * isum as f32;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::kernels::{
        dot_q8, dot_q8_scalar, quantize_act, row_bytes, ActNeeds, QType, QuantAct,
    };
    use crate::sampling::Rng;

    #[test]
    fn four_token_q4_k_equals_single_token_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            return;
        }
        let mut rng = Rng::new(8);
        let cols = 1024;
        let mut row: Vec<u8> = (0..row_bytes(QType::Q4K, cols).unwrap())
            .map(|_| rng.next_u64() as u8)
            .collect();
        for blk in 0..cols / 256 {
            row[blk * 144 + 1] &= 0x3b;
            row[blk * 144 + 3] &= 0x3b;
        }
        let mut needs = ActNeeds::default();
        needs.add(QType::Q4K);
        let acts: Vec<(Vec<f32>, QuantAct)> = (0..4)
            .map(|_| {
                let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
                let mut a = QuantAct::default();
                quantize_act(&x, needs, &mut a);
                (x, a)
            })
            .collect();
        let p = |i: usize| {
            (
                &acts[i].1.k_d[..],
                &acts[i].1.k_qs[..],
                &acts[i].1.k_bsums[..],
            )
        };
        // SAFETY: features checked above; the row holds whole blocks covered by each activation.
        let four = unsafe { super::dot_q4k_q8k_x4(&row, [p(0), p(1), p(2), p(3)]) };
        for t in 0..4 {
            let one = dot_q8(QType::Q4K, &row, &acts[t].0, &acts[t].1);
            assert_eq!(four[t].to_bits(), one.to_bits(), "token {t}");
        }
    }

    #[test]
    fn avx2_dots_match_scalar_to_f32_rounding() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let mut rng = Rng::new(9);
        for cols in [256usize, 2048] {
            let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
            for q in [QType::Q8_0, QType::Q4K, QType::Q6K] {
                let mut row: Vec<u8> = (0..row_bytes(q, cols).unwrap())
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                let (_, bb) = q.block();
                for blk in 0..row.len() / bb {
                    let at = if q == QType::Q6K {
                        blk * bb + 208
                    } else {
                        blk * bb
                    };
                    row[at + 1] &= 0x3b; // keep the f16 scales finite and moderate
                    if q == QType::Q4K {
                        row[at + 3] &= 0x3b;
                    }
                }
                let mut needs = ActNeeds::default();
                needs.add(q);
                let mut a = QuantAct::default();
                quantize_act(&x, needs, &mut a);
                let fast = dot_q8(q, &row, &x, &a) as f64;
                let slow = dot_q8_scalar(q, &row, &x, &a) as f64;
                // Scale: the dot of |dequantized w| with |quantized x| bounds the rounding.
                let mut w = vec![0.0f32; cols];
                super::super::kernels::dequantize_row(q, &row, &mut w);
                let norm: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!(
                    (fast - slow).abs() <= 1e-6 * norm,
                    "{q:?} cols {cols}: {fast} vs {slow} (norm {norm})"
                );
            }
        }
    }
}
