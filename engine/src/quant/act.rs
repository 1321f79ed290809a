//! Activation quantization for the 8-bit dot products, exactly as ggml's reference
//! quantizers (`quantize_row_q8_0_ref`, `quantize_row_q8_K_ref`) define it.

use super::{f16_to_f32, f32_to_f16, QType, QuantError};

/// Q8_0 activations, structure of arrays: per 32-block scale (the f16-rounded value ggml stores,
/// as f32) and the values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Q80Acts {
    pub d: Vec<f32>,
    pub qs: Vec<i8>,
}

/// Q8_K activations: per 256-block f32 scale, values, and sums of each 16 values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Q8KActs {
    pub d: Vec<f32>,
    pub qs: Vec<i8>,
    pub bsums: Vec<i16>,
}

/// Quantizes `x` to Q8_0: d = amax / 127 (stored as f16, nearest even), q = round(x / d) half
/// away from zero, computed as x * (1 / d) with the unrounded d, as ggml does.
pub fn quantize_row_q8_0(x: &[f32], out: &mut Q80Acts) -> Result<(), QuantError> {
    if x.len() % 32 != 0 {
        return Err(QuantError::PartialBlock {
            qtype: QType::Q8_0,
            cols: x.len(),
            block: 32,
        });
    }
    let nb = x.len() / 32;
    out.d.resize(nb, 0.0);
    out.qs.resize(x.len(), 0);
    for (b, (xb, qs)) in x
        .chunks_exact(32)
        .zip(out.qs.chunks_exact_mut(32))
        .enumerate()
    {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
        out.d[b] = f16_to_f32(f32_to_f16(d));
    }
    Ok(())
}

/// Quantizes `x` to Q8_K: the scale is set by the value of largest magnitude *with its sign*
/// (iscale = -127 / max, so that value maps to -127 exactly), q = nearest_int(iscale * x)
/// (round half to even, as ggml's float trick does) clamped to 127; d = 1 / iscale.
pub fn quantize_row_q8_k(x: &[f32], out: &mut Q8KActs) -> Result<(), QuantError> {
    if x.len() % 256 != 0 {
        return Err(QuantError::PartialBlock {
            qtype: QType::Q8K,
            cols: x.len(),
            block: 256,
        });
    }
    let nb = x.len() / 256;
    out.d.resize(nb, 0.0);
    out.qs.resize(x.len(), 0);
    out.bsums.resize(nb * 16, 0);
    for b in 0..nb {
        let xb = &x[256 * b..256 * b + 256];
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let qs = &mut out.qs[256 * b..256 * b + 256];
        if amax == 0.0 {
            out.d[b] = 0.0;
            qs.fill(0);
            out.bsums[16 * b..16 * b + 16].fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for j in 0..16 {
            out.bsums[16 * b + j] = qs[16 * j..16 * j + 16].iter().map(|&v| v as i16).sum();
        }
        out.d[b] = 1.0 / iscale;
    }
    Ok(())
}

/// One activation row prepared for the weight formats it will meet: the f32 values always,
/// Q8_K and/or Q8_0 forms when asked for. Prepare once per input row, use for every weight row.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    pub f32: Vec<f32>,
    pub q8k: Option<Q8KActs>,
    pub q80: Option<Q80Acts>,
}

impl QuantizedActs {
    /// Prepares `x` for dots with weights of the given qtypes.
    pub fn new(x: &[f32], for_qtypes: &[QType]) -> Result<Self, QuantError> {
        let mut a = QuantizedActs::default();
        a.prepare(x, for_qtypes)?;
        Ok(a)
    }

    /// Like [`QuantizedActs::new`], reusing this value's buffers (no allocation per token).
    pub fn prepare(&mut self, x: &[f32], for_qtypes: &[QType]) -> Result<(), QuantError> {
        use super::ActFormat;
        self.f32.clear();
        self.f32.extend_from_slice(x);
        let want = |f| for_qtypes.iter().any(|q| q.act_format() == f);
        if want(ActFormat::Q8K) {
            quantize_row_q8_k(x, self.q8k.get_or_insert_with(Default::default))?;
        } else {
            self.q8k = None;
        }
        if want(ActFormat::Q80) {
            quantize_row_q8_0(x, self.q80.get_or_insert_with(Default::default))?;
        } else {
            self.q80 = None;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.f32.len()
    }

    pub fn is_empty(&self) -> bool {
        self.f32.is_empty()
    }
}

impl Q80Acts {
    /// ggml's byte layout (34-byte blocks: f16 d, i8 qs[32]), for comparison with oracles.
    pub fn to_ggml_bytes(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(self.d.len() * 34);
        for (d, qs) in self.d.iter().zip(self.qs.chunks_exact(32)) {
            o.extend_from_slice(&f32_to_f16(*d).to_le_bytes());
            o.extend(qs.iter().map(|&q| q as u8));
        }
        o
    }

    /// The dequantized activations d * q.
    pub fn dequantize(&self) -> Vec<f32> {
        self.qs
            .iter()
            .enumerate()
            .map(|(i, &q)| self.d[i / 32] * q as f32)
            .collect()
    }
}

impl Q8KActs {
    /// The dequantized activations d * q.
    pub fn dequantize(&self) -> Vec<f32> {
        self.qs
            .iter()
            .enumerate()
            .map(|(i, &q)| self.d[i / 256] * q as f32)
            .collect()
    }
}
