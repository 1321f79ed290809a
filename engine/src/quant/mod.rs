//! ggml tensor formats on the CPU: block layouts, dequantization, activation quantization and
//! dot products, with a scalar reference for every kernel and AVX2 fast paths chosen at run time.
//!
//! Layouts are ggml's (`ggml-common.h`); values per block / bytes per block:
//!
//! | qtype | block | bytes | layout |
//! |---|---|---|---|
//! | F32 | 1 | 4 | f32 |
//! | F16 | 1 | 2 | IEEE half |
//! | BF16 | 1 | 2 | upper 16 bits of an f32 |
//! | Q4_0 | 32 | 18 | f16 d; u8 qs[16] (low nibbles = values 0..16, high = 16..32), w = d (q - 8) |
//! | Q8_0 | 32 | 34 | f16 d; i8 qs[32], w = d q |
//! | Q4_K | 256 | 144 | f16 d, dmin; u8 scales[12] (8 6-bit scales + 8 6-bit mins); u8 qs[128] |
//! | Q5_K | 256 | 176 | as Q4_K plus u8 qh[32] (5th bits) before qs |
//! | Q6_K | 256 | 210 | u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d |
//! | Q8_K | 256 | 292 | f32 d; i8 qs[256]; i16 bsums[16] (activations only in llama.cpp) |
//!
//! Dot products come in two precisions, as in llama.cpp: [`vec_dot_f32`] (weights dequantized in
//! registers, f32 activations: exact up to f32 summation) and [`vec_dot_q8`] (activations
//! quantized once per row of input by [`QuantizedActs::new`] to Q8_K for K-quant weights and to
//! Q8_0 for Q8_0/Q4_0 weights, integer block dots: llama.cpp's CPU scheme).

mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod blocks;
mod dequant;
mod dot;
mod matvec;

pub use act::{quantize_row_q8_0, quantize_row_q8_k, Q80Acts, Q8KActs, QuantizedActs};
pub use dequant::{dequantize_row, dequantize_row_scalar};
pub use dot::{vec_dot_f32, vec_dot_f32_scalar, vec_dot_q8, vec_dot_q8_scalar};
pub use matvec::{matmat_q8, matvec_f32, matvec_q8};

/// Tensor formats engine::quant reads. Discriminants are ggml type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    BF16 = 30,
}

impl QType {
    pub const ALL: [QType; 9] = [
        QType::F32,
        QType::F16,
        QType::BF16,
        QType::Q4_0,
        QType::Q8_0,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
        QType::Q8K,
    ];

    pub fn from_ggml_id(id: u32) -> Option<QType> {
        QType::ALL.into_iter().find(|q| q.ggml_id() == id)
    }

    pub fn ggml_id(self) -> u32 {
        self as u32
    }

    /// ggml's name (`Q4_K`, not the Rust identifier).
    pub fn name(self) -> &'static str {
        match self {
            QType::F32 => "F32",
            QType::F16 => "F16",
            QType::BF16 => "BF16",
            QType::Q4_0 => "Q4_0",
            QType::Q8_0 => "Q8_0",
            QType::Q4K => "Q4_K",
            QType::Q5K => "Q5_K",
            QType::Q6K => "Q6_K",
            QType::Q8K => "Q8_K",
        }
    }

    pub fn from_name(s: &str) -> Option<QType> {
        QType::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        match self {
            QType::F32 | QType::F16 | QType::BF16 => 1,
            QType::Q4_0 | QType::Q8_0 => 32,
            QType::Q4K | QType::Q5K | QType::Q6K | QType::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QType::F32 => 4,
            QType::F16 | QType::BF16 => 2,
            QType::Q4_0 => 18,
            QType::Q8_0 => 34,
            QType::Q4K => 144,
            QType::Q5K => 176,
            QType::Q6K => 210,
            QType::Q8K => 292,
        }
    }

    /// Bytes of a row of `cols` values, or None if `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        (cols % self.block_size() == 0)
            .then(|| (cols / self.block_size()).checked_mul(self.block_bytes()))
            .flatten()
    }

    /// The activation format llama.cpp pairs with this weight format for the 8-bit dot.
    pub fn act_format(self) -> ActFormat {
        match self {
            QType::Q4K | QType::Q5K | QType::Q6K | QType::Q8K => ActFormat::Q8K,
            QType::Q4_0 | QType::Q8_0 => ActFormat::Q80,
            QType::F32 | QType::F16 | QType::BF16 => ActFormat::F32,
        }
    }
}

impl std::fmt::Display for QType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How activations are prepared for a weight format's 8-bit dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// Used as they are (float weights).
    F32,
    /// Q8_0 blocks of 32 (Q8_0 and Q4_0 weights).
    Q80,
    /// Q8_K blocks of 256 (K-quant weights).
    Q8K,
}

/// ggml's name for a type id, including the ones engine::quant does not read (for messages).
pub fn ggml_type_name(id: u32) -> Option<&'static str> {
    const NAMES: [&str; 42] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
        "NVFP4",
        "Q1_0",
    ];
    NAMES.get(id as usize).copied()
}

/// Shape errors of the row kernels (lengths that do not match the qtype and column count).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    #[error("{qtype}: {cols} values are not a whole number of {block}-value blocks")]
    PartialBlock {
        qtype: QType,
        cols: usize,
        block: usize,
    },
    #[error("{qtype}: {what} has {got} elements, expected {expected}")]
    Length {
        qtype: QType,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{qtype} has no 8-bit activation dot (it is an activation format)")]
    NoQ8Dot { qtype: QType },
    #[error("the activations were not quantized for {qtype} (prepare them with QuantizedActs::new for this qtype)")]
    ActsMissing { qtype: QType },
}

/// Checks `bytes` against `cols` values of `qtype`.
pub(crate) fn check_row(qtype: QType, bytes: usize, cols: usize) -> Result<(), QuantError> {
    let expected = qtype.row_bytes(cols).ok_or(QuantError::PartialBlock {
        qtype,
        cols,
        block: qtype.block_size(),
    })?;
    if bytes != expected {
        return Err(QuantError::Length {
            qtype,
            what: "row bytes",
            got: bytes,
            expected,
        });
    }
    Ok(())
}

/// IEEE half -> f32, exact (every f16 is an f32). NaN payloads are kept, as F16C does.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if mant == 0 {
            sign
        } else {
            // Subnormal: mant * 2^-24, exact in f32.
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

/// f32 -> IEEE half, round to nearest even (as F16C and numpy's astype(float16) do).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Inf stays inf; NaN keeps its top payload bits and stays NaN (quiet bit set).
        return sign
            | 0x7c00
            | if mant != 0 {
                0x200 | (mant >> 13) as u16
            } else {
                0
            };
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
        // A carry into the exponent is the correct rounding (up to inf at the top).
        r += 1;
    }
    sign | r as u16
}

/// bfloat16 -> f32: the upper half of the f32 bit pattern (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

#[inline]
pub(crate) fn rd_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Whether the AVX2 fast paths run on this CPU (AVX2 + FMA + F16C, detected once).
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVX2: OnceLock<bool> = OnceLock::new();
        *AVX2.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests;
