//! Row dequantization. The scalar code is the reference (FALSIFY-QK-DEQ-001 holds it to
//! gguf-py bit for bit); the operation order matches ggml/gguf-py exactly: (d * sc) * q - dmin *
//! m for Q4_K/Q5_K, (d * sc) * (q - 32) for Q6_K, d * q for Q8_0/Q4_0, with no fused
//! multiply-add, so the results are identical bit patterns.

use super::blocks::scale_min_k4;
use super::{bf16_to_f32, check_row, f16_to_f32, rd_f16, QType, QuantError};

/// Dequantizes one row of `out.len()` values from `src` (AVX2 where available; bit-identical
/// to [`dequantize_row_scalar`]).
pub fn dequantize_row(q: QType, src: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_row(q, src.len(), out.len())?;
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2() {
        // SAFETY: AVX2/FMA/F16C present; lengths checked above.
        unsafe {
            match q {
                QType::Q4K => super::avx2::dequant_q4k(src, out),
                QType::Q6K => super::avx2::dequant_q6k(src, out),
                QType::Q8_0 => super::avx2::dequant_q8_0(src, out),
                QType::F16 => super::avx2::dequant_f16(src, out),
                _ => {
                    dequant_scalar_unchecked(q, src, out);
                }
            }
        }
        return Ok(());
    }
    dequant_scalar_unchecked(q, src, out);
    Ok(())
}

/// The portable reference for [`dequantize_row`].
pub fn dequantize_row_scalar(q: QType, src: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_row(q, src.len(), out.len())?;
    dequant_scalar_unchecked(q, src, out);
    Ok(())
}

/// Lengths must already match (whole blocks of `q` covering `out`).
pub(crate) fn dequant_scalar_unchecked(q: QType, src: &[u8], out: &mut [f32]) {
    match q {
        QType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        QType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        QType::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        QType::Q4_0 => {
            for (y, b) in out.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
                let d = rd_f16(b, 0);
                for l in 0..16 {
                    y[l] = d * ((b[2 + l] & 0xf) as i32 - 8) as f32;
                    y[l + 16] = d * ((b[2 + l] >> 4) as i32 - 8) as f32;
                }
            }
        }
        QType::Q8_0 => {
            for (y, b) in out.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let d = rd_f16(b, 0);
                for (o, &v) in y.iter_mut().zip(&b[2..34]) {
                    *o = d * (v as i8) as f32;
                }
            }
        }
        QType::Q8K => {
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(292)) {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                for (o, &v) in y.iter_mut().zip(&b[4..260]) {
                    *o = d * (v as i8) as f32;
                }
            }
        }
        QType::Q4K => {
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(144)) {
                let (d, dmin) = (rd_f16(b, 0), rd_f16(b, 2));
                let scales = &b[4..16];
                let qs = &b[16..144];
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, scales);
                    let (s2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        y[64 * j + l] = d1 * (q[l] & 0xf) as f32 - m1;
                        y[64 * j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
        }
        QType::Q5K => {
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(176)) {
                let (d, dmin) = (rd_f16(b, 0), rd_f16(b, 2));
                let scales = &b[4..16];
                let qh = &b[16..48];
                let qs = &b[48..176];
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, scales);
                    let (s2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, m1) = (d * s1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * s2 as f32, dmin * m2 as f32);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        y[64 * j + l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
                        y[64 * j + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
                    }
                }
            }
        }
        QType::Q6K => {
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
                let d = rd_f16(b, 208);
                for half in 0..2 {
                    let ql = &b[64 * half..64 * half + 64];
                    let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                    let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                    let y = &mut y[128 * half..128 * half + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = (d * (sc[is] as i8) as f32) * q1 as f32;
                        y[l + 32] = (d * (sc[is + 2] as i8) as f32) * q2 as f32;
                        y[l + 64] = (d * (sc[is + 4] as i8) as f32) * q3 as f32;
                        y[l + 96] = (d * (sc[is + 6] as i8) as f32) * q4 as f32;
                    }
                }
            }
        }
    }
}
