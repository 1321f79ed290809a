//! Dot products of one weight row with one activation row.

use super::act::{Q80Acts, Q8KActs};
use super::blocks::scale_min_k4;
use super::dequant::dequant_scalar_unchecked;
use super::{check_row, rd_f16, QType, QuantError, QuantizedActs};

/// Row . f32 activations: the row dequantized in registers, f32 products, 8 accumulation lanes
/// (AVX2 + FMA where available). Exact up to f32 summation (FALSIFY-QK-DOT-F32-001).
#[inline]
pub fn vec_dot_f32(q: QType, row: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    check_row(q, row.len(), x.len())?;
    Ok(dot_f32_unchecked(q, row, x))
}

#[inline]
pub(crate) fn dot_f32_unchecked(q: QType, row: &[u8], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2() {
        // SAFETY: AVX2/FMA/F16C present; the caller checked the row length.
        return unsafe { super::avx2::dot_f32(q, row, x) };
    }
    dot_f32_scalar_unchecked(q, row, x)
}

/// The portable reference for [`vec_dot_f32`].
pub fn vec_dot_f32_scalar(q: QType, row: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    check_row(q, row.len(), x.len())?;
    Ok(dot_f32_scalar_unchecked(q, row, x))
}

fn dot_f32_scalar_unchecked(q: QType, row: &[u8], x: &[f32]) -> f32 {
    let chunk = 256usize.max(q.block_size());
    let chunk_bytes = chunk / q.block_size() * q.block_bytes();
    let mut buf = [0.0f32; 256];
    let mut acc = [0.0f32; 8];
    let mut tail = 0.0f32;
    for (c, xs) in row.chunks(chunk_bytes).zip(x.chunks(chunk)) {
        let y = &mut buf[..xs.len()];
        dequant_scalar_unchecked(q, c, y);
        let n8 = xs.len() / 8 * 8;
        for (w8, x8) in y[..n8].chunks_exact(8).zip(xs[..n8].chunks_exact(8)) {
            for j in 0..8 {
                acc[j] += w8[j] * x8[j];
            }
        }
        for i in n8..xs.len() {
            tail += y[i] * xs[i];
        }
    }
    // The same reduction tree as the AVX2 horizontal sum.
    let s4 = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    ((s4[0] + s4[2]) + (s4[1] + s4[3])) + tail
}

pub(crate) type ActRefs<'a> = (Option<&'a Q8KActs>, Option<&'a Q80Acts>);

pub(crate) fn acts_for(
    q: QType,
    a: &QuantizedActs,
    cols: usize,
) -> Result<ActRefs<'_>, QuantError> {
    if a.f32.len() != cols {
        return Err(QuantError::Length {
            qtype: q,
            what: "activations",
            got: a.f32.len(),
            expected: cols,
        });
    }
    match q.act_format() {
        super::ActFormat::F32 => Ok((None, None)),
        super::ActFormat::Q8K => a
            .q8k
            .as_ref()
            .filter(|k| k.qs.len() == cols)
            .map(|k| (Some(k), None))
            .ok_or(QuantError::ActsMissing { qtype: q }),
        super::ActFormat::Q80 => a
            .q80
            .as_ref()
            .filter(|k| k.qs.len() == cols)
            .map(|k| (None, Some(k)))
            .ok_or(QuantError::ActsMissing { qtype: q }),
    }
}

/// Row . 8-bit activations (llama.cpp's CPU scheme): K-quants with Q8_K, Q8_0/Q4_0 with Q8_0,
/// integer block sums, AVX2 where available. Float rows (F32/F16/BF16) use the f32 values.
#[inline]
pub fn vec_dot_q8(q: QType, row: &[u8], a: &QuantizedActs) -> Result<f32, QuantError> {
    check_row(q, row.len(), a.f32.len())?;
    let (k, z) = acts_for(q, a, a.f32.len())?;
    Ok(dot_q8_unchecked(q, row, a, k, z))
}

#[inline]
pub(crate) fn dot_q8_unchecked(
    q: QType,
    row: &[u8],
    a: &QuantizedActs,
    k: Option<&Q8KActs>,
    z: Option<&Q80Acts>,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2() {
        use super::avx2 as v;
        // SAFETY: AVX2/FMA/F16C present; row length and activations checked by the caller.
        unsafe {
            match (q, k, z) {
                (QType::Q4K, Some(k), _) => return v::dot_q4k_q8k(row, &k.d, &k.qs, &k.bsums),
                (QType::Q5K, Some(k), _) => return v::dot_q5k_q8k(row, &k.d, &k.qs, &k.bsums),
                (QType::Q6K, Some(k), _) => return v::dot_q6k_q8k(row, &k.d, &k.qs),
                (QType::Q8_0, _, Some(z)) => return v::dot_q8_0_q8_0(row, &z.d, &z.qs),
                (QType::Q4_0, _, Some(z)) => return v::dot_q4_0_q8_0(row, &z.d, &z.qs),
                _ => {}
            }
        }
    }
    if q.act_format() == super::ActFormat::F32 {
        // Float weights take the f32 activations: the f32 dot (with its AVX2 path).
        return dot_f32_unchecked(q, row, &a.f32);
    }
    dot_q8_scalar_unchecked(q, row, a, k, z)
}

/// The portable reference for [`vec_dot_q8`].
pub fn vec_dot_q8_scalar(q: QType, row: &[u8], a: &QuantizedActs) -> Result<f32, QuantError> {
    check_row(q, row.len(), a.f32.len())?;
    let (k, z) = acts_for(q, a, a.f32.len())?;
    Ok(dot_q8_scalar_unchecked(q, row, a, k, z))
}

fn dot_q8_scalar_unchecked(
    q: QType,
    row: &[u8],
    a: &QuantizedActs,
    k: Option<&Q8KActs>,
    z: Option<&Q80Acts>,
) -> f32 {
    match (q, k, z) {
        (QType::Q8_0, _, Some(z)) => {
            let mut s = 0.0f32;
            for (b, (w, qx)) in row.chunks_exact(34).zip(z.qs.chunks_exact(32)).enumerate() {
                let isum: i32 = w[2..34]
                    .iter()
                    .zip(qx)
                    .map(|(&wv, &xv)| (wv as i8 as i32) * xv as i32)
                    .sum();
                s += rd_f16(w, 0) * z.d[b] * isum as f32;
            }
            s
        }
        (QType::Q4_0, _, Some(z)) => {
            let mut s = 0.0f32;
            for (b, (w, qx)) in row.chunks_exact(18).zip(z.qs.chunks_exact(32)).enumerate() {
                let mut isum = 0i32;
                for l in 0..16 {
                    isum += ((w[2 + l] & 0xf) as i32 - 8) * qx[l] as i32;
                    isum += ((w[2 + l] >> 4) as i32 - 8) * qx[l + 16] as i32;
                }
                s += rd_f16(w, 0) * z.d[b] * isum as f32;
            }
            s
        }
        (QType::Q8K, Some(k), _) => {
            let mut s = 0.0f32;
            for (b, (w, qx)) in row
                .chunks_exact(292)
                .zip(k.qs.chunks_exact(256))
                .enumerate()
            {
                let isum: i32 = w[4..260]
                    .iter()
                    .zip(qx)
                    .map(|(&wv, &xv)| (wv as i8 as i32) * xv as i32)
                    .sum();
                let d = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                s += d * k.d[b] * isum as f32;
            }
            s
        }
        (QType::Q4K | QType::Q5K, Some(k), _) => {
            let five = q == QType::Q5K;
            let bb = q.block_bytes();
            let mut s = 0.0f32;
            for (b, w) in row.chunks_exact(bb).enumerate() {
                let (d, dmin) = (rd_f16(w, 0), rd_f16(w, 2));
                let dx = k.d[b];
                let qx = &k.qs[256 * b..256 * b + 256];
                let bs = &k.bsums[16 * b..16 * b + 16];
                let scales = &w[4..16];
                let (qh, qs) = if five {
                    (&w[16..48], &w[48..176])
                } else {
                    (&w[0..0], &w[16..144])
                };
                let (mut sumi, mut summ) = (0i32, 0i32);
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, scales);
                    let (s2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let qq = &qs[32 * j..32 * j + 32];
                    let x1 = &qx[64 * j..64 * j + 32];
                    let x2 = &qx[64 * j + 32..64 * j + 64];
                    let (mut a1, mut a2) = (0i32, 0i32);
                    for l in 0..32 {
                        let (h1, h2) = if five {
                            (
                                if qh[l] & u1 != 0 { 16 } else { 0 },
                                if qh[l] & u2 != 0 { 16 } else { 0 },
                            )
                        } else {
                            (0, 0)
                        };
                        a1 += ((qq[l] & 0xf) as i32 + h1) * x1[l] as i32;
                        a2 += ((qq[l] >> 4) as i32 + h2) * x2[l] as i32;
                    }
                    sumi += s1 as i32 * a1 + s2 as i32 * a2;
                    summ += m1 as i32 * (bs[4 * j] as i32 + bs[4 * j + 1] as i32)
                        + m2 as i32 * (bs[4 * j + 2] as i32 + bs[4 * j + 3] as i32);
                }
                s += d * dx * sumi as f32 - dmin * dx * summ as f32;
            }
            s
        }
        (QType::Q6K, Some(k), _) => {
            let mut s = 0.0f32;
            for (b, w) in row.chunks_exact(210).enumerate() {
                let d = rd_f16(w, 208);
                let qx = &k.qs[256 * b..256 * b + 256];
                let mut sumi = 0i32;
                for half in 0..2 {
                    let ql = &w[64 * half..64 * half + 64];
                    let qh = &w[128 + 32 * half..128 + 32 * half + 32];
                    let sc = &w[192 + 8 * half..192 + 8 * half + 8];
                    let x = &qx[128 * half..128 * half + 128];
                    let mut acc = [0i32; 8];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        acc[is] += q1 * x[l] as i32;
                        acc[is + 2] += q2 * x[l + 32] as i32;
                        acc[is + 4] += q3 * x[l + 64] as i32;
                        acc[is + 6] += q4 * x[l + 96] as i32;
                    }
                    for (kk, &v) in acc.iter().enumerate() {
                        sumi += (sc[kk] as i8) as i32 * v;
                    }
                }
                s += d * k.d[b] * sumi as f32;
            }
            s
        }
        // Float weights (and any combination acts_for already rejected): the f32 path.
        _ => dot_f32_scalar_unchecked(q, row, &a.f32),
    }
}
