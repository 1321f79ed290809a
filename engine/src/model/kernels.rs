//! Per-qtype row kernels used by the forward: dequantization, dot products with f32
//! activations, and dot products with 8-bit-quantized activations (llama.cpp's CPU scheme:
//! Q8_K blocks of 256 for K-quant weights, Q8_0 blocks of 32 for Q8_0 weights, f16 activations
//! for F16 weights, f32 for F32 weights).
//!
//! Block layouts are ggml's (ggml-common.h): Q8_0 = {f16 d; i8 qs[32]}, Q4_K = {f16 d, dmin;
//! u8 scales[12]; u8 qs[128]}, Q5_K = {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]},
//! Q6_K = {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}, Q8_K = {f32 d; i8 qs[256]; i16
//! bsums[16]}.
//!
//! (Written inside engine::model while engine::quant was not yet in the tree; the forward only
//! calls the functions below, so switching to engine::quant is a change to this file alone.)

/// Tensor formats the CPU forward reads. Values are ggml type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
}

impl QType {
    pub fn from_ggml(id: u32) -> Option<QType> {
        Some(match id {
            0 => QType::F32,
            1 => QType::F16,
            8 => QType::Q8_0,
            12 => QType::Q4K,
            13 => QType::Q5K,
            14 => QType::Q6K,
            _ => return None,
        })
    }

    pub fn ggml_id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            QType::F32 => "F32",
            QType::F16 => "F16",
            QType::Q8_0 => "Q8_0",
            QType::Q4K => "Q4_K",
            QType::Q5K => "Q5_K",
            QType::Q6K => "Q6_K",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, QType::F32 | QType::F16)
    }

    /// (values per block, bytes per block)
    pub fn block(self) -> (usize, usize) {
        match self {
            QType::F32 => (1, 4),
            QType::F16 => (1, 2),
            QType::Q8_0 => (32, 34),
            QType::Q4K => (256, 144),
            QType::Q5K => (256, 176),
            QType::Q6K => (256, 210),
        }
    }
}

/// Bytes of one row of `cols` values, or None if `cols` is not a whole number of blocks.
pub fn row_bytes(q: QType, cols: usize) -> Option<usize> {
    let (bs, bb) = q.block();
    (cols % bs == 0).then_some(cols / bs * bb)
}

#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if mant == 0 {
            sign
        } else {
            // Subnormal: value = mant * 2^-24.
            let v = mant as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | ((exp + 112) << 23) | (mant << 13)
    };
    f32::from_bits(bits)
}

/// f32 -> f16 bits, round to nearest even (as the F16C instruction does).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) {
        r += 1;
    }
    sign | r as u16
}

#[inline]
fn rd_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8).
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantizes one row (`out.len()` values) from `src`.
pub fn dequantize_row(q: QType, src: &[u8], out: &mut [f32]) {
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
        QType::Q8_0 => {
            for (y, b) in out.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let d = rd_f16(b, 0);
                for (o, &v) in y.iter_mut().zip(&b[2..34]) {
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
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

/// An activation row prepared for one weight format's dot product.
#[derive(Clone, Debug, Default)]
pub struct QuantAct {
    /// Q8_K (K-quant weights): per 256-block scale, values, sums of 16.
    pub k_d: Vec<f32>,
    pub k_qs: Vec<i8>,
    pub k_bsums: Vec<i16>,
    /// Q8_0 (Q8_0 weights): per 32-block scale (f16-rounded, as ggml stores it), values.
    pub q0_d: Vec<f32>,
    pub q0_qs: Vec<i8>,
    /// F16 weights: the activations rounded to f16, kept as f32.
    pub f16: Vec<f32>,
}

impl QuantAct {
    /// No prepared forms (f32 activations).
    pub const EMPTY: QuantAct = QuantAct {
        k_d: Vec::new(),
        k_qs: Vec::new(),
        k_bsums: Vec::new(),
        q0_d: Vec::new(),
        q0_qs: Vec::new(),
        f16: Vec::new(),
    };
}

/// Which prepared forms a row needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ActNeeds {
    pub q8k: bool,
    pub q8_0: bool,
    pub f16: bool,
}

impl ActNeeds {
    pub fn add(&mut self, q: QType) {
        match q {
            QType::Q4K | QType::Q5K | QType::Q6K => self.q8k = true,
            QType::Q8_0 => self.q8_0 = true,
            QType::F16 => self.f16 = true,
            QType::F32 => {}
        }
    }
}

/// ggml's `nearest_int` (valid for |v| < 2^22): round half to even through the float adder.
#[inline]
fn nearest_int(v: f32) -> i32 {
    let f = v + 12_582_912.0;
    (f.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Quantizes `x` the way llama.cpp does before a quantized dot product.
pub fn quantize_act(x: &[f32], needs: ActNeeds, out: &mut QuantAct) {
    if needs.q8k && x.len() % 256 == 0 {
        let nb = x.len() / 256;
        out.k_d.resize(nb, 0.0);
        out.k_qs.resize(x.len(), 0);
        out.k_bsums.resize(nb * 16, 0);
        for b in 0..nb {
            let xb = &x[256 * b..256 * b + 256];
            // quantize_row_q8_K_ref: scale by the signed value of largest magnitude.
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            let qs = &mut out.k_qs[256 * b..256 * b + 256];
            if amax == 0.0 {
                out.k_d[b] = 0.0;
                qs.fill(0);
                out.k_bsums[16 * b..16 * b + 16].fill(0);
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in qs.iter_mut().zip(xb) {
                // nearest_int as ggml: add 1.5 * 2^23 and read the low mantissa bits (ties to even).
                *q = (nearest_int(iscale * v)).min(127) as i8;
            }
            for j in 0..16 {
                out.k_bsums[16 * b + j] = qs[16 * j..16 * j + 16].iter().map(|&v| v as i16).sum();
            }
            out.k_d[b] = 1.0 / iscale;
        }
    }
    if needs.q8_0 && x.len() % 32 == 0 {
        let nb = x.len() / 32;
        out.q0_d.resize(nb, 0.0);
        out.q0_qs.resize(x.len(), 0);
        for b in 0..nb {
            let xb = &x[32 * b..32 * b + 32];
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in out.q0_qs[32 * b..32 * b + 32].iter_mut().zip(xb) {
                *q = (v * id).round() as i8;
            }
            out.q0_d[b] = f16_to_f32(f32_to_f16(d));
        }
    }
    if needs.f16 {
        out.f16.clear();
        out.f16.extend(x.iter().map(|&v| f16_to_f32(f32_to_f16(v))));
    }
}

/// Dot product of one weight row with f32 activations: the row is dequantized block by block
/// into a stack buffer and multiplied in f32 (the exact path).
pub fn dot_f32(q: QType, row: &[u8], x: &[f32]) -> f32 {
    match q {
        QType::F32 => {
            let mut acc = [0.0f32; 8];
            for (c, xs) in row.chunks_exact(32).zip(x.chunks_exact(8)) {
                for j in 0..8 {
                    let w =
                        f32::from_le_bytes([c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3]]);
                    acc[j] += w * xs[j];
                }
            }
            let mut s = sum8(&acc);
            let done = (x.len() / 8) * 8;
            for i in done..x.len() {
                s += f32::from_le_bytes([
                    row[4 * i],
                    row[4 * i + 1],
                    row[4 * i + 2],
                    row[4 * i + 3],
                ]) * x[i];
            }
            s
        }
        _ => {
            let (bs, bb) = q.block();
            let bs = bs.max(256);
            let bb = bb * (bs / q.block().0);
            let mut buf = [0.0f32; 256];
            let mut s = 0.0f32;
            for (c, xs) in row.chunks(bb).zip(x.chunks(bs)) {
                let y = &mut buf[..xs.len()];
                dequantize_row(q, c, y);
                s += super::ops::dot_f32(y, xs);
            }
            s
        }
    }
}

#[inline]
fn sum8(a: &[f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Dot product of one weight row with activations prepared by [`quantize_act`]. F32 rows use
/// `x` as it is; F16 rows use the f16-rounded activations; quantized rows use integer dots
/// (AVX2 when the CPU has it; equal to the scalar code up to f32 summation order).
#[inline]
pub fn dot_q8(q: QType, row: &[u8], x: &[f32], a: &QuantAct) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            use super::kernels_avx2 as k;
            // SAFETY: AVX2 is present (checked above); the row holds whole blocks of `q` and the
            // prepared activations cover the same columns (shapes checked at load).
            unsafe {
                match q {
                    QType::Q4K => return k::dot_q4k_q8k(row, &a.k_d, &a.k_qs, &a.k_bsums),
                    QType::Q6K => return k::dot_q6k_q8k(row, &a.k_d, &a.k_qs),
                    QType::Q8_0 => return k::dot_q8_0_q8_0(row, &a.q0_d, &a.q0_qs),
                    _ => {}
                }
            }
        }
    }
    dot_q8_scalar(q, row, x, a)
}

/// A row kernel: one weight row . one prepared activation row.
pub type RowDot = fn(&[u8], &[f32], &QuantAct) -> f32;

/// The kernel for rows of `q`, chosen once per matrix product (not per row): with `q8`, the
/// 8-bit-activation dot (AVX2 when available), else the f32-activation dot.
pub fn row_dot(q: QType, q8: bool) -> RowDot {
    if !q8 || q == QType::F32 {
        return match q {
            QType::F32 => |r, x, _| dot_f32(QType::F32, r, x),
            QType::F16 => |r, x, _| dot_f32(QType::F16, r, x),
            QType::Q8_0 => |r, x, _| dot_f32(QType::Q8_0, r, x),
            QType::Q4K => |r, x, _| dot_f32(QType::Q4K, r, x),
            QType::Q5K => |r, x, _| dot_f32(QType::Q5K, r, x),
            QType::Q6K => |r, x, _| dot_f32(QType::Q6K, r, x),
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            use super::kernels_avx2 as k;
            // SAFETY (all three): AVX2/FMA/F16C are present (checked just above); the caller
            // passes rows of whole `q` blocks with activations prepared for the same columns.
            match q {
                QType::Q4K => {
                    return |r, _, a| unsafe { k::dot_q4k_q8k(r, &a.k_d, &a.k_qs, &a.k_bsums) }
                }
                QType::Q6K => return |r, _, a| unsafe { k::dot_q6k_q8k(r, &a.k_d, &a.k_qs) },
                QType::Q8_0 => return |r, _, a| unsafe { k::dot_q8_0_q8_0(r, &a.q0_d, &a.q0_qs) },
                _ => {}
            }
        }
    }
    match q {
        QType::F32 => |r, x, a| dot_q8_scalar(QType::F32, r, x, a),
        QType::F16 => |r, x, a| dot_q8_scalar(QType::F16, r, x, a),
        QType::Q8_0 => |r, x, a| dot_q8_scalar(QType::Q8_0, r, x, a),
        QType::Q4K => |r, x, a| dot_q8_scalar(QType::Q4K, r, x, a),
        QType::Q5K => |r, x, a| dot_q8_scalar(QType::Q5K, r, x, a),
        QType::Q6K => |r, x, a| dot_q8_scalar(QType::Q6K, r, x, a),
    }
}

/// A one-row, four-token kernel (prefill): results equal four [`RowDot`] calls bit for bit.
pub type RowDot4T = fn(&[u8], [&QuantAct; 4]) -> [f32; 4];

/// The four-token kernel for `q`, where one exists (Q4_K with 8-bit activations on AVX2).
pub fn row_dot_x4(q: QType, q8: bool) -> Option<RowDot4T> {
    #[cfg(target_arch = "x86_64")]
    {
        if q8 && q == QType::Q4K && has_avx2() {
            // SAFETY: AVX2/FMA/F16C present; whole Q4_K blocks; each activation prepared for
            // the same columns (the caller's shapes).
            return Some(|row, a| unsafe {
                super::kernels_avx2::dot_q4k_q8k_x4(
                    row,
                    [
                        (&a[0].k_d, &a[0].k_qs, &a[0].k_bsums),
                        (&a[1].k_d, &a[1].k_qs, &a[1].k_bsums),
                        (&a[2].k_d, &a[2].k_qs, &a[2].k_bsums),
                        (&a[3].k_d, &a[3].k_qs, &a[3].k_bsums),
                    ],
                )
            });
        }
    }
    let _ = (q, q8);
    None
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// The portable version of [`dot_q8`] (the definition the AVX2 kernels are tested against).
pub fn dot_q8_scalar(q: QType, row: &[u8], x: &[f32], a: &QuantAct) -> f32 {
    match q {
        QType::F32 => dot_f32(q, row, x),
        QType::F16 => {
            let mut acc = [0.0f32; 8];
            for (c, xs) in row.chunks_exact(16).zip(a.f16.chunks_exact(8)) {
                for j in 0..8 {
                    acc[j] += f16_to_f32(u16::from_le_bytes([c[2 * j], c[2 * j + 1]])) * xs[j];
                }
            }
            let mut s = sum8(&acc);
            for i in (x.len() / 8) * 8..x.len() {
                s += f16_to_f32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])) * a.f16[i];
            }
            s
        }
        QType::Q8_0 => {
            let mut s = 0.0f32;
            for (b, (w, (qx, &dx))) in row
                .chunks_exact(34)
                .zip(a.q0_qs.chunks_exact(32).zip(&a.q0_d))
                .enumerate()
            {
                let _ = b;
                let mut isum = 0i32;
                for l in 0..32 {
                    isum += (w[2 + l] as i8 as i32) * (qx[l] as i32);
                }
                s += rd_f16(w, 0) * dx * isum as f32;
            }
            s
        }
        QType::Q4K => {
            let mut s = 0.0f32;
            for (b, w) in row.chunks_exact(144).enumerate() {
                let (d, dmin) = (rd_f16(w, 0), rd_f16(w, 2));
                let dx = a.k_d[b];
                let qx = &a.k_qs[256 * b..256 * b + 256];
                let bs = &a.k_bsums[16 * b..16 * b + 16];
                let scales = &w[4..16];
                let qs = &w[16..144];
                let (mut sumi, mut summ) = (0i32, 0i32);
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, scales);
                    let (s2, m2) = scale_min_k4(2 * j + 1, scales);
                    let q = &qs[32 * j..32 * j + 32];
                    let x1 = &qx[64 * j..64 * j + 32];
                    let x2 = &qx[64 * j + 32..64 * j + 64];
                    let (mut a1, mut a2) = (0i32, 0i32);
                    for l in 0..32 {
                        a1 += (q[l] & 0xf) as i32 * x1[l] as i32;
                        a2 += (q[l] >> 4) as i32 * x2[l] as i32;
                    }
                    sumi += s1 as i32 * a1 + s2 as i32 * a2;
                    summ += m1 as i32 * (bs[4 * j] as i32 + bs[4 * j + 1] as i32)
                        + m2 as i32 * (bs[4 * j + 2] as i32 + bs[4 * j + 3] as i32);
                }
                s += d * dx * sumi as f32 - dmin * dx * summ as f32;
            }
            s
        }
        QType::Q5K => {
            let mut s = 0.0f32;
            for (b, w) in row.chunks_exact(176).enumerate() {
                let (d, dmin) = (rd_f16(w, 0), rd_f16(w, 2));
                let dx = a.k_d[b];
                let qx = &a.k_qs[256 * b..256 * b + 256];
                let bs = &a.k_bsums[16 * b..16 * b + 16];
                let scales = &w[4..16];
                let qh = &w[16..48];
                let qs = &w[48..176];
                let (mut sumi, mut summ) = (0i32, 0i32);
                for j in 0..4 {
                    let (s1, m1) = scale_min_k4(2 * j, scales);
                    let (s2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let q = &qs[32 * j..32 * j + 32];
                    let x1 = &qx[64 * j..64 * j + 32];
                    let x2 = &qx[64 * j + 32..64 * j + 64];
                    let (mut a1, mut a2) = (0i32, 0i32);
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        a1 += ((q[l] & 0xf) as i32 + h1) * x1[l] as i32;
                        a2 += ((q[l] >> 4) as i32 + h2) * x2[l] as i32;
                    }
                    sumi += s1 as i32 * a1 + s2 as i32 * a2;
                    summ += m1 as i32 * (bs[4 * j] as i32 + bs[4 * j + 1] as i32)
                        + m2 as i32 * (bs[4 * j + 2] as i32 + bs[4 * j + 3] as i32);
                }
                s += d * dx * sumi as f32 - dmin * dx * summ as f32;
            }
            s
        }
        QType::Q6K => {
            let mut s = 0.0f32;
            for (b, w) in row.chunks_exact(210).enumerate() {
                let d = rd_f16(w, 208);
                let dx = a.k_d[b];
                let qx = &a.k_qs[256 * b..256 * b + 256];
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
                    for (k, &v) in acc.iter().enumerate() {
                        sumi += (sc[k] as i8) as i32 * v;
                    }
                }
                s += d * dx * sumi as f32;
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Rng;

    fn random_row(q: QType, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let n = row_bytes(q, cols).unwrap();
        let mut v: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        // Small finite f16 scales where the format keeps them.
        let (_, bb) = q.block();
        let put = |v: &mut Vec<u8>, at: usize, x: f32| {
            let h = f32_to_f16(x).to_le_bytes();
            v[at] = h[0];
            v[at + 1] = h[1];
        };
        match q {
            QType::F32 => {
                for i in 0..cols {
                    v[4 * i..4 * i + 4]
                        .copy_from_slice(&((rng.next_f32() - 0.5) * 0.2).to_le_bytes());
                }
            }
            QType::F16 => {
                for i in 0..cols {
                    put(&mut v, 2 * i, (rng.next_f32() - 0.5) * 0.2);
                }
            }
            QType::Q8_0 | QType::Q4K | QType::Q5K => {
                for b in 0..n / bb {
                    put(&mut v, b * bb, 0.001 + rng.next_f32() * 0.002);
                    if q != QType::Q8_0 {
                        put(&mut v, b * bb + 2, rng.next_f32() * 0.002);
                    }
                }
            }
            QType::Q6K => {
                for b in 0..n / bb {
                    put(&mut v, b * bb + 208, 0.001 + rng.next_f32() * 0.002);
                }
            }
        }
        v
    }

    #[test]
    fn f16_conversion_round_trips_and_rounds_to_even() {
        for h in [0u16, 0x3c00, 0xbc00, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        // 1 + 2^-11 is halfway between 1 and the next f16: ties to even gives 1.
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
    }

    #[test]
    fn q4_k_dequantization_of_a_handmade_block() {
        // d = 1, dmin = 0.5, sub-block 0 scale 2 min 3, all nibbles 5 -> 2*5 - 1.5 = 8.5.
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&f32_to_f16(1.0).to_le_bytes());
        b[2..4].copy_from_slice(&f32_to_f16(0.5).to_le_bytes());
        b[4] = 2; // scale of sub-block 0
        b[8] = 3; // min of sub-block 0
        for q in &mut b[16..144] {
            *q = 0x55;
        }
        let mut y = vec![0.0f32; 256];
        dequantize_row(QType::Q4K, &b, &mut y);
        assert_eq!(y[0], 8.5);
        assert_eq!(y[31], 8.5);
        assert_eq!(y[32], 0.0); // sub-block 1 has scale 0, min 0
    }

    #[test]
    fn quantized_dots_match_dequantized_dots() {
        let mut rng = Rng::new(3);
        let cols = 512;
        let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
        for q in [
            QType::F32,
            QType::F16,
            QType::Q8_0,
            QType::Q4K,
            QType::Q5K,
            QType::Q6K,
        ] {
            let row = random_row(q, cols, &mut rng);
            let mut w = vec![0.0f32; cols];
            dequantize_row(q, &row, &mut w);
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let norm: f64 = w
                .iter()
                .zip(&x)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let f = dot_f32(q, &row, &x) as f64;
            assert!(
                (f - exact).abs() <= 1e-5 * norm,
                "{q:?} f32: {f} vs {exact}"
            );
            let mut needs = ActNeeds::default();
            needs.add(q);
            let mut a = QuantAct::default();
            quantize_act(&x, needs, &mut a);
            let g = dot_q8(q, &row, &x, &a) as f64;
            // 8-bit activations: relative error of order 1/127 of the magnitude sum.
            assert!(
                (g - exact).abs() <= 2e-2 * norm,
                "{q:?} q8: {g} vs {exact} (norm {norm})"
            );
        }
    }
}

#[cfg(test)]
mod q8_exactness {
    use super::*;
    use crate::sampling::Rng;

    /// The integer dot must equal the f64 dot of the dequantized weights with the dequantized
    /// (8-bit) activations: only f32 rounding may separate them.
    #[test]
    fn q8_dots_equal_dequantized_times_dequantized_activations() {
        let mut rng = Rng::new(5);
        let cols = 512;
        let x: Vec<f32> = (0..cols).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
        for q in [QType::Q8_0, QType::Q4K, QType::Q5K, QType::Q6K] {
            let (_, bb) = q.block();
            let mut row: Vec<u8> = (0..row_bytes(q, cols).unwrap())
                .map(|_| rng.next_u64() as u8)
                .collect();
            for b in 0..row.len() / bb {
                let at = if q == QType::Q6K {
                    b * bb + 208
                } else {
                    b * bb
                };
                row[at..at + 2].copy_from_slice(&f32_to_f16(0.001).to_le_bytes());
                if matches!(q, QType::Q4K | QType::Q5K) {
                    row[at + 2..at + 4].copy_from_slice(&f32_to_f16(0.0075).to_le_bytes());
                }
            }
            let mut w = vec![0.0f32; cols];
            dequantize_row(q, &row, &mut w);
            let mut needs = ActNeeds::default();
            needs.add(q);
            let mut a = QuantAct::default();
            quantize_act(&x, needs, &mut a);
            let xq: Vec<f64> = if q == QType::Q8_0 {
                (0..cols)
                    .map(|i| a.q0_d[i / 32] as f64 * a.q0_qs[i] as f64)
                    .collect()
            } else {
                (0..cols)
                    .map(|i| a.k_d[i / 256] as f64 * a.k_qs[i] as f64)
                    .collect()
            };
            let want: f64 = w.iter().zip(&xq).map(|(a, b)| *a as f64 * b).sum();
            let norm: f64 = w.iter().zip(&xq).map(|(a, b)| (*a as f64 * b).abs()).sum();
            let got = dot_q8(q, &row, &x, &a) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * norm,
                "{q:?}: {got} vs {want} (norm {norm})"
            );
        }
    }
}
