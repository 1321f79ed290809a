//! The tensor formats the GPU backend has kernels for, their GGUF block layouts, the repacking
//! done at upload, and a CPU dequantization used by the float64 reference.
//!
//! The GGUF type ids are ggml's (`ggml_type`): F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, Q5_K = 13,
//! Q6_K = 14. Any other id is rejected at load with [`UnsupportedQType`]: there is deliberately no
//! "closest kernel" fallback.

use std::fmt;

/// A tensor format with a GPU kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuQType {
    F32,
    F16,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// A ggml type id that has no GPU kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedQType(pub u32);

impl fmt::Display for UnsupportedQType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ggml type {} ({})", self.0, ggml_type_name(self.0))
    }
}

/// Human name of a ggml type id, for error messages.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 => "IQ*",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        _ => "unknown",
    }
}

impl GpuQType {
    pub fn from_ggml(id: u32) -> Result<Self, UnsupportedQType> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            other => return Err(UnsupportedQType(other)),
        })
    }

    pub fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
        }
    }

    pub fn name(self) -> &'static str {
        ggml_type_name(self.ggml_id())
    }

    /// Suffix of this qtype's kernel entry points in kernels.cu (`matvec_<suffix>` ...).
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block in the GGUF file.
    pub fn file_block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes per block on the device (after [`repack_for_device`]).
    pub fn device_block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 36,
            Self::Q6K => 224,
            other => other.file_block_bytes(),
        }
    }

    /// Row length granularity the kernels need: a row of the mat-vec kernels is split into
    /// 16-byte (or whole-block) tasks, so K must be a multiple of this.
    pub fn row_multiple(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 8,
            Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    pub fn file_row_bytes(self, k: usize) -> usize {
        k / self.block_elems() * self.file_block_bytes()
    }

    pub fn device_row_bytes(self, k: usize) -> usize {
        k / self.block_elems() * self.device_block_bytes()
    }
}

/// Convert a tensor's file bytes into the device layout. Q4_K, Q5_K, F16 and F32 are copied as
/// they are; Q6_K (210-byte blocks) and Q8_0 (34-byte blocks) get padded to 224 / 36 bytes so that
/// the kernels' 16-byte (Q6_K) and 4-byte (Q8_0) loads are aligned. `out` is cleared first.
pub fn repack_for_device(qt: GpuQType, file_bytes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match qt {
        GpuQType::Q6K => {
            let nb = file_bytes.len() / 210;
            out.resize(nb * 224, 0);
            for (src, dst) in file_bytes.chunks_exact(210).zip(out.chunks_exact_mut(224)) {
                // GGUF Q6_K block: ql[128], qh[64], scales[16], d (f16): the same order, padded.
                dst[..210].copy_from_slice(src);
            }
        }
        GpuQType::Q8_0 => {
            let nb = file_bytes.len() / 34;
            out.resize(nb * 36, 0);
            for (src, dst) in file_bytes.chunks_exact(34).zip(out.chunks_exact_mut(36)) {
                // GGUF Q8_0 block: d (f16), qs[32] -> d, 2 bytes of padding, qs.
                dst[..2].copy_from_slice(&src[..2]);
                dst[4..36].copy_from_slice(&src[2..34]);
            }
        }
        _ => out.extend_from_slice(file_bytes),
    }
}

/// IEEE half to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: value = man * 2^-24
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// f32 to IEEE half, round to nearest even (for building synthetic blocks and tests).
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let r = if rem > mid || (rem == mid && (half & 1) == 1) {
            half + 1
        } else {
            half
        };
        return sign | r as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let r = if rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1) {
        half + 1
    } else {
        half
    };
    sign | r as u16
}

fn rd16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as f32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
        )
    }
}

/// Dequantize one row given in the FILE layout into f32, the way ggml does (f32 arithmetic:
/// `d * sc` then `* q - dmin * m`), so that the float64 reference sees exactly the weights the
/// file defines. `out.len()` elements are produced.
pub fn dequantize_row_file(qt: GpuQType, src: &[u8], out: &mut [f32]) {
    match qt {
        GpuQType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GpuQType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GpuQType::Q8_0 => {
            for (y, b) in out.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let d = rd16(b, 0);
                for (i, v) in y.iter_mut().enumerate() {
                    *v = d * (b[2 + i] as i8) as f32;
                }
            }
        }
        GpuQType::Q4K | GpuQType::Q5K => {
            let bb = qt.file_block_bytes();
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(bb)) {
                let d = rd16(b, 0);
                let dmin = rd16(b, 2);
                let sc = &b[4..16];
                let (qh, qs) = if qt == GpuQType::Q5K {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                for j in 0..4 {
                    let (s0, m0) = scale_min_k4(2 * j, sc);
                    let (s1, m1) = scale_min_k4(2 * j + 1, sc);
                    let (d1, mm1) = (d * s0, dmin * m0);
                    let (d2, mm2) = (d * s1, dmin * m1);
                    for l in 0..32 {
                        let q = qs[32 * j + l];
                        let mut lo = (q & 0xF) as u32;
                        let mut hi = (q >> 4) as u32;
                        if qt == GpuQType::Q5K {
                            lo |= (((qh[l] >> (2 * j)) & 1) as u32) << 4;
                            hi |= (((qh[l] >> (2 * j + 1)) & 1) as u32) << 4;
                        }
                        y[64 * j + l] = d1 * lo as f32 - mm1;
                        y[64 * j + 32 + l] = d2 * hi as f32 - mm2;
                    }
                }
            }
        }
        GpuQType::Q6K => {
            for (y, b) in out.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
                let d = rd16(b, 208);
                for n in 0..2 {
                    let ql = &b[64 * n..64 * n + 64];
                    let qh = &b[128 + 32 * n..128 + 32 * n + 32];
                    let sc = &b[192 + 8 * n..192 + 8 * n + 8];
                    let yy = &mut y[128 * n..128 * n + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        yy[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        yy[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        yy[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        yy[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_of_representable_values() {
        for h in [0u16, 0x3c00, 0xbc00, 0x0001, 0x03ff, 0x7bff, 0x1234, 0x8001] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
        }
    }

    #[test]
    fn unsupported_ids_are_rejected_by_name() {
        let e = GpuQType::from_ggml(2).unwrap_err();
        assert_eq!(e.to_string(), "ggml type 2 (Q4_0)");
        for id in [0, 1, 8, 12, 13, 14] {
            assert_eq!(GpuQType::from_ggml(id).unwrap().ggml_id(), id);
        }
    }

    #[test]
    fn repack_keeps_every_value() {
        let mut rng = 0x1234_5678_u64;
        let mut src = vec![0u8; 210 * 3];
        for b in src.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        let mut out = Vec::new();
        repack_for_device(GpuQType::Q6K, &src, &mut out);
        assert_eq!(out.len(), 224 * 3);
        for i in 0..3 {
            assert_eq!(&out[224 * i..224 * i + 210], &src[210 * i..210 * i + 210]);
        }
        let src8 = &src[..34 * 4];
        repack_for_device(GpuQType::Q8_0, src8, &mut out);
        assert_eq!(out.len(), 36 * 4);
        for i in 0..4 {
            assert_eq!(&out[36 * i..36 * i + 2], &src8[34 * i..34 * i + 2]);
            assert_eq!(
                &out[36 * i + 4..36 * i + 36],
                &src8[34 * i + 2..34 * i + 34]
            );
        }
    }
}

/// Cross-check of [`dequantize_row_file`] against gguf-py (the PyPI `gguf` package), run where
/// `PV_ORACLE_PYTHON` names a python that has it (.ci/run sets it up).
#[cfg(test)]
mod oracle_tests {
    use super::*;

    #[test]
    fn dequant_matches_gguf_py_bit_for_bit() {
        let Ok(py) = std::env::var("PV_ORACLE_PYTHON") else {
            eprintln!("PV_ORACLE_PYTHON not set: gguf-py cross-check not run");
            return;
        };
        let dir = std::env::temp_dir().join(format!("pv-gpu-deq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let n = 4096usize;
        for qt in [
            GpuQType::F16,
            GpuQType::Q8_0,
            GpuQType::Q4K,
            GpuQType::Q5K,
            GpuQType::Q6K,
        ] {
            let nb = n / qt.block_elems();
            let mut bytes: Vec<u8> = (0..nb * qt.file_block_bytes())
                .map(|_| next() as u8)
                .collect();
            // finite f16 super-scales (random bytes could be Inf/NaN)
            let at: &[usize] = match qt {
                GpuQType::F16 => &[],
                GpuQType::Q8_0 => &[0],
                GpuQType::Q4K | GpuQType::Q5K => &[0, 2],
                GpuQType::Q6K => &[208],
                GpuQType::F32 => &[],
            };
            let bb = qt.file_block_bytes();
            for b in 0..nb {
                for &o in at {
                    let v = f32_to_f16(((next() % 1000) as f32 - 500.0) * 1e-5);
                    bytes[b * bb + o..b * bb + o + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            if qt == GpuQType::F16 {
                for c in bytes.chunks_exact_mut(2) {
                    let v = f32_to_f16(((next() % 2000) as f32 - 1000.0) * 1e-3);
                    c.copy_from_slice(&v.to_le_bytes());
                }
            }
            let src = dir.join("in.bin");
            let dst = dir.join("out.bin");
            std::fs::write(&src, &bytes).unwrap();
            let script = format!(
                "import numpy as np, gguf\nfrom gguf import quants\nraw=np.fromfile('{}',dtype=np.uint8)\nt=gguf.GGMLQuantizationType({})\nout=quants.dequantize(raw,t).astype(np.float32)\nout.tofile('{}')\n",
                src.display(),
                qt.ggml_id(),
                dst.display()
            );
            let st = std::process::Command::new(&py)
                .arg("-c")
                .arg(&script)
                .status()
                .unwrap();
            assert!(st.success(), "gguf-py failed for {}", qt.name());
            let theirs: Vec<f32> = std::fs::read(&dst)
                .unwrap()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let mut ours = vec![0f32; n];
            dequantize_row_file(qt, &bytes, &mut ours);
            assert_eq!(theirs.len(), n);
            let bad = ours
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                bad,
                0,
                "{}: {bad} of {n} values differ from gguf-py",
                qt.name()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
