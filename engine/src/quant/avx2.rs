//! AVX2/FMA/F16C fast paths (x86_64, chosen at run time by `has_avx2()`).
//!
//! Dots: the integer block sums are exact, as in the scalar kernels; the float part accumulates
//! `d * dx * sumi` lane-wise with FMA (as ggml does), so results differ from the scalar
//! reference by f32 summation order only (FALSIFY-QK-SIMD-001 bounds it). Dequantization uses
//! the scalar operation order (multiply, then subtract; no FMA), so it is bit-identical.
//! The Q4_K/Q6_K/Q8_0 dot kernels follow the ones first written in engine::model::kernels_avx2.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::blocks::scale_min_k4;
use super::dequant::dequant_scalar_unchecked;
use super::QType;

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

/// 8 unsigned bytes at `p` as 8 f32 lanes.
#[inline(always)]
unsafe fn u8x8_to_ps(p: *const u8) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)))
}

/// # Safety
/// AVX2/FMA/F16C present; `src` holds `out.len() / 256` whole Q4_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_q4k(src: &[u8], out: &mut [f32]) {
    let mut lo = [0u8; 32];
    let mut hi = [0u8; 32];
    for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(144)) {
        let (d, dmin) = (f16c(b, 0), f16c(b, 2));
        for j in 0..4 {
            let (s1, m1) = scale_min_k4(2 * j, &b[4..16]);
            let (s2, m2) = scale_min_k4(2 * j + 1, &b[4..16]);
            let q = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * j) as *const __m256i);
            let m = _mm256_set1_epi8(0x0f);
            _mm256_storeu_si256(lo.as_mut_ptr() as *mut __m256i, _mm256_and_si256(q, m));
            _mm256_storeu_si256(
                hi.as_mut_ptr() as *mut __m256i,
                _mm256_and_si256(_mm256_srli_epi16(q, 4), m),
            );
            for (part, (sc, mn, src)) in [(s1, m1, &lo), (s2, m2, &hi)].into_iter().enumerate() {
                let dv = _mm256_set1_ps(d * sc as f32);
                let mv = _mm256_set1_ps(dmin * mn as f32);
                let dst = y.as_mut_ptr().add(64 * j + 32 * part);
                for k in 0..4 {
                    let v = u8x8_to_ps(src.as_ptr().add(8 * k));
                    _mm256_storeu_ps(dst.add(8 * k), _mm256_sub_ps(_mm256_mul_ps(dv, v), mv));
                }
            }
        }
    }
}

/// # Safety
/// AVX2/FMA/F16C present; `src` holds `out.len() / 256` whole Q6_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_q6k(src: &[u8], out: &mut [f32]) {
    let mut q = [0i8; 256];
    for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
        let d = f16c(b, 208);
        // Unpack the 6-bit values (minus 32) in the scalar order, then scale 8 at a time.
        for half in 0..2 {
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let qq = &mut q[128 * half..128 * half + 128];
            for l in 0..32 {
                qq[l] = (((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32) as i8;
                qq[l + 32] = (((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32) as i8;
                qq[l + 64] = (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32) as i8;
                qq[l + 96] = (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32) as i8;
            }
        }
        for s in 0..16 {
            // Value i of the block uses scale i / 16 (within each half: is + 2g).
            let dv = _mm256_set1_ps(d * (b[192 + s] as i8) as f32);
            for k in 0..2 {
                let p = q.as_ptr().add(16 * s + 8 * k);
                let v =
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)));
                _mm256_storeu_ps(y.as_mut_ptr().add(16 * s + 8 * k), _mm256_mul_ps(dv, v));
            }
        }
    }
}

/// # Safety
/// AVX2/FMA/F16C present; `src` holds `out.len() / 32` whole Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_q8_0(src: &[u8], out: &mut [f32]) {
    for (y, b) in out.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
        let dv = _mm256_set1_ps(f16c(b, 0));
        for k in 0..4 {
            let p = b.as_ptr().add(2 + 8 * k);
            let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)));
            _mm256_storeu_ps(y.as_mut_ptr().add(8 * k), _mm256_mul_ps(dv, v));
        }
    }
}

/// F16 -> f32 with F16C, 8 at a time. F16C turns signalling NaNs into quiet ones, while the
/// scalar conversion (and numpy) keep the payload, so a group of 8 holding any NaN goes
/// through the scalar conversion: the result is bit-identical to it.
///
/// # Safety
/// AVX2/FMA/F16C present; `src.len() == 2 * out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_f16(src: &[u8], out: &mut [f32]) {
    let n8 = out.len() / 8 * 8;
    let exp_mask = _mm_set1_epi16(0x7fff);
    let inf = _mm_set1_epi16(0x7c00);
    for i in (0..n8).step_by(8) {
        let h = _mm_loadu_si128(src.as_ptr().add(2 * i) as *const __m128i);
        // NaN: |h| > 0x7c00 (signed compare is fine: |h| <= 0x7fff).
        let nan = _mm_cmpgt_epi16(_mm_and_si128(h, exp_mask), inf);
        if _mm_movemask_epi8(nan) == 0 {
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        } else {
            dequant_scalar_unchecked(QType::F16, &src[2 * i..2 * i + 16], &mut out[i..i + 8]);
        }
    }
    dequant_scalar_unchecked(QType::F16, &src[2 * n8..], &mut out[n8..]);
}

/// Row . f32 activations: dequantize 256 values at a time into a stack buffer, FMA into 8
/// lanes carried across the whole row.
///
/// # Safety
/// AVX2/FMA/F16C present; `row` holds whole blocks of `q` covering `x.len()` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32(q: QType, row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let mut acc = _mm256_setzero_ps();
    let mut tail = 0.0f32;
    if q == QType::F32 {
        let w = row.as_ptr() as *const f32;
        let n8 = n / 8 * 8;
        for i in (0..n8).step_by(8) {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(w.add(i)),
                _mm256_loadu_ps(x.as_ptr().add(i)),
                acc,
            );
        }
        for (i, xi) in x.iter().enumerate().skip(n8) {
            tail +=
                f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]])
                    * xi;
        }
        return hsum_f32(acc) + tail;
    }
    let mut buf = [0.0f32; 256];
    let chunk = 256usize.max(q.block_size());
    let chunk_bytes = chunk / q.block_size() * q.block_bytes();
    for (c, xs) in row.chunks(chunk_bytes).zip(x.chunks(chunk)) {
        let y = &mut buf[..xs.len()];
        match q {
            QType::Q4K => dequant_q4k(c, y),
            QType::Q6K => dequant_q6k(c, y),
            QType::Q8_0 => dequant_q8_0(c, y),
            QType::F16 => dequant_f16(c, y),
            _ => dequant_scalar_unchecked(q, c, y),
        }
        let n8 = xs.len() / 8 * 8;
        for i in (0..n8).step_by(8) {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(y.as_ptr().add(i)),
                _mm256_loadu_ps(xs.as_ptr().add(i)),
                acc,
            );
        }
        for i in n8..xs.len() {
            tail += y[i] * xs[i];
        }
    }
    hsum_f32(acc) + tail
}

/// Q4_K row . Q8_K activations.
///
/// # Safety
/// AVX2/FMA/F16C present; `row` holds whole Q4_K blocks and the activations cover them.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k(row: &[u8], k_d: &[f32], k_qs: &[i8], k_bsums: &[i16]) -> f32 {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
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
        let mut sm = [0u8; 16];
        for (k, v) in u.iter().enumerate() {
            sm[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
        }
        // Min term: sum_j min_j * (bsums[2j] + bsums[2j+1]), in integers (pair sums of 16
        // values of |q| <= 127 fit i16; hadd adds the pairs, madd multiplies and pairs again).
        let q8sums = _mm256_loadu_si256(k_bsums.as_ptr().add(16 * b) as *const __m256i);
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(q8sums),
            _mm256_extracti128_si256(q8sums, 1),
        );
        let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().add(8) as *const __m128i));
        let prod = _mm_madd_epi16(mins, q8s);
        let prod = _mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0b01_00_11_10));
        let prod = _mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0b10_11_00_01));
        acc_m += dmin * _mm_cvtsi128_si32(prod) as f32;
        let qs = w.as_ptr().add(16);
        let qx = k_qs.as_ptr().add(256 * b);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q4, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), mask);
            let y1 = _mm256_loadu_si256(qx.add(64 * j) as *const __m256i);
            let y2 = _mm256_loadu_si256(qx.add(64 * j + 32) as *const __m256i);
            // maddubs: u8 (0..15) x i8 pairs summed to i16 (|sum| <= 2*15*128): no saturation.
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, y1),
                _mm256_set1_epi16(sm[2 * j] as i16),
            );
            let p2 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, y2),
                _mm256_set1_epi16(sm[2 * j + 1] as i16),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc) - acc_m
}

/// Q5_K row . Q8_K activations: Q4_K's kernel with the fifth bit of each value from qh.
///
/// # Safety
/// As [`dot_q4k_q8k`], for Q5_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q5k_q8k(row: &[u8], k_d: &[f32], k_qs: &[i8], k_bsums: &[i16]) -> f32 {
    let mask = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (b, w) in row.chunks_exact(176).enumerate() {
        let dx = *k_d.get_unchecked(b);
        let d = f16c(w, 0) * dx;
        let dmin = f16c(w, 2) * dx;
        let mut sc = [0u8; 8];
        let mut mn = [0u8; 8];
        for j in 0..8 {
            (sc[j], mn[j]) = scale_min_k4(j, &w[4..16]);
        }
        let bs = k_bsums.as_ptr().add(16 * b);
        let mut summ = 0i32;
        for (j, &m) in mn.iter().enumerate() {
            summ += m as i32 * (*bs.add(2 * j) as i32 + *bs.add(2 * j + 1) as i32);
        }
        acc_m += dmin * summ as f32;
        let qh = _mm256_loadu_si256(w.as_ptr().add(16) as *const __m256i);
        let qs = w.as_ptr().add(48);
        let qx = k_qs.as_ptr().add(256 * b);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            // Bit 2j (low half) and 2j+1 (high half) of each qh byte, moved to bit 4. The
            // 16-bit shifts move bits across bytes, but the per-byte mask keeps only bit 0.
            let h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)), one);
            let h2 = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32 + 1)),
                one,
            );
            let lo = _mm256_or_si256(_mm256_and_si256(q4, mask), _mm256_slli_epi16(h1, 4));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(q4, 4), mask),
                _mm256_slli_epi16(h2, 4),
            );
            let y1 = _mm256_loadu_si256(qx.add(64 * j) as *const __m256i);
            let y2 = _mm256_loadu_si256(qx.add(64 * j + 32) as *const __m256i);
            // u8 (0..31) x i8 pairs: |sum| <= 2*31*128 < 2^15, no saturation.
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, y1),
                _mm256_set1_epi16(sc[2 * j] as i16),
            );
            let p2 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, y2),
                _mm256_set1_epi16(sc[2 * j + 1] as i16),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc) - acc_m
}

/// Byte-shuffle masks picking scales (2i, 2i+1) of a Q6_K block, each repeated 8 times.
fn scale_shuffle(i: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    for (k, v) in b.iter_mut().enumerate() {
        *v = (2 * i + k / 8) as u8;
    }
    b
}

/// Q6_K row . Q8_K activations.
///
/// # Safety
/// As [`dot_q4k_q8k`], for Q6_K blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q6k_q8k(row: &[u8], k_d: &[f32], k_qs: &[i8]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let c32 = _mm256_set1_epi8(32);
    let shuf: [__m128i; 8] =
        std::array::from_fn(|i| _mm_loadu_si128(scale_shuffle(i).as_ptr() as *const __m128i));
    let mut accf = _mm256_setzero_ps();
    for (b, w) in row.chunks_exact(210).enumerate() {
        let d = f16c(w, 208) * *k_d.get_unchecked(b);
        let qx = k_qs.as_ptr().add(256 * b);
        let scales = _mm_loadu_si128(w.as_ptr().add(192) as *const __m128i);
        let mut acc = _mm256_setzero_si256();
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
                let scv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf[4 * half + g]));
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
/// As [`dot_q4k_q8k`], for Q8_0 blocks and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0_q8_0(row: &[u8], d0: &[f32], qs: &[i8]) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for (b, w) in row.chunks_exact(34).enumerate() {
        let xw = _mm256_loadu_si256(w.as_ptr().add(2) as *const __m256i);
        let y = _mm256_loadu_si256(qs.as_ptr().add(32 * b) as *const __m256i);
        // |w| . sign(y, w): maddubs wants an unsigned first operand (|-128| = 128 as u8 is fine).
        let p = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(xw, xw), _mm256_sign_epi8(y, xw)),
            ones,
        );
        let d = f16c(w, 0) * *d0.get_unchecked(b);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
    }
    hsum_f32(acc)
}

/// Q4_0 row . Q8_0 activations.
///
/// # Safety
/// As [`dot_q4k_q8k`], for Q4_0 blocks and Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0_q8_0(row: &[u8], d0: &[f32], qs: &[i8]) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let m4 = _mm_set1_epi8(0x0f);
    let c8 = _mm256_set1_epi8(8);
    let mut acc = _mm256_setzero_ps();
    for (b, w) in row.chunks_exact(18).enumerate() {
        let raw = _mm_loadu_si128(w.as_ptr().add(2) as *const __m128i);
        let lo = _mm_and_si128(raw, m4);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        // Values 0..16 in the low lane, 16..32 in the high lane, then q - 8 in -8..7.
        let q = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), c8);
        let y = _mm256_loadu_si256(qs.as_ptr().add(32 * b) as *const __m256i);
        let p = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q)),
            ones,
        );
        let d = f16c(w, 0) * *d0.get_unchecked(b);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
    }
    hsum_f32(acc)
}
