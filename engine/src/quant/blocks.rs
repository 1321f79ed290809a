//! One struct per block format, parsed from and written to ggml's byte layout. The kernels
//! work on byte slices directly (tensor data in a mapped file has no Rust alignment
//! guarantee); these structs document the layouts and build test blocks.

use super::{f16_to_f32, f32_to_f16};

fn f16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Q4_0: 32 values, w = d * (q - 8); qs[i] low nibble = value i, high nibble = value i + 16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q4_0Block {
    pub d: u16,
    pub qs: [u8; 16],
}

/// Q8_0: 32 values, w = d * q.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q8_0Block {
    pub d: u16,
    pub qs: [i8; 32],
}

/// Q4_K: 8 sub-blocks of 32; w = d * sc_j * q - dmin * m_j with 6-bit sc_j, m_j packed in
/// `scales` (ggml's get_scale_min_k4); qs[32 g + l] holds value 64 g + l (low nibble) and
/// 64 g + 32 + l (high nibble).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q4KBlock {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// Q5_K: Q4_K plus a fifth bit per value: bit (2 g) of qh[l] for value 64 g + l, bit (2 g + 1)
/// for value 64 g + 32 + l.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q5KBlock {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// Q6_K: 16 sub-blocks of 16; w = d * scales_j * (q - 32), q = 4 low bits from ql and 2 high
/// bits from qh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q6KBlock {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: u16,
}

/// Q8_K: 256 values, w = d * q, with the sums of each 16 values precomputed (`bsums`) for the
/// min terms of Q4_K/Q5_K dots.
#[derive(Clone, Debug, PartialEq)]
pub struct Q8KBlock {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn i8s<const N: usize>(b: &[u8]) -> [i8; N] {
    let mut a = [0i8; N];
    for (o, &v) in a.iter_mut().zip(b) {
        *o = v as i8;
    }
    a
}

impl Q4_0Block {
    pub const BYTES: usize = 18;
    pub fn parse(b: &[u8; 18]) -> Self {
        Q4_0Block {
            d: f16_at(b, 0),
            qs: arr(&b[2..]),
        }
    }
    pub fn to_bytes(&self) -> [u8; 18] {
        let mut o = [0u8; 18];
        o[..2].copy_from_slice(&self.d.to_le_bytes());
        o[2..].copy_from_slice(&self.qs);
        o
    }
}

impl Q8_0Block {
    pub const BYTES: usize = 34;
    pub fn parse(b: &[u8; 34]) -> Self {
        Q8_0Block {
            d: f16_at(b, 0),
            qs: i8s(&b[2..]),
        }
    }
    pub fn to_bytes(&self) -> [u8; 34] {
        let mut o = [0u8; 34];
        o[..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in o[2..].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
        o
    }
    pub fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
}

impl Q4KBlock {
    pub const BYTES: usize = 144;
    pub fn parse(b: &[u8; 144]) -> Self {
        Q4KBlock {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: arr(&b[4..]),
            qs: arr(&b[16..]),
        }
    }
    pub fn to_bytes(&self) -> [u8; 144] {
        let mut o = [0u8; 144];
        o[..2].copy_from_slice(&self.d.to_le_bytes());
        o[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        o[4..16].copy_from_slice(&self.scales);
        o[16..].copy_from_slice(&self.qs);
        o
    }
    /// The 6-bit scale and min of sub-block `j` (0..8).
    pub fn scale_min(&self, j: usize) -> (u8, u8) {
        scale_min_k4(j, &self.scales)
    }
}

impl Q5KBlock {
    pub const BYTES: usize = 176;
    pub fn parse(b: &[u8; 176]) -> Self {
        Q5KBlock {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: arr(&b[4..]),
            qh: arr(&b[16..]),
            qs: arr(&b[48..]),
        }
    }
    pub fn to_bytes(&self) -> [u8; 176] {
        let mut o = [0u8; 176];
        o[..2].copy_from_slice(&self.d.to_le_bytes());
        o[2..4].copy_from_slice(&self.dmin.to_le_bytes());
        o[4..16].copy_from_slice(&self.scales);
        o[16..48].copy_from_slice(&self.qh);
        o[48..].copy_from_slice(&self.qs);
        o
    }
}

impl Q6KBlock {
    pub const BYTES: usize = 210;
    pub fn parse(b: &[u8; 210]) -> Self {
        Q6KBlock {
            ql: arr(b),
            qh: arr(&b[128..]),
            scales: i8s(&b[192..]),
            d: f16_at(b, 208),
        }
    }
    pub fn to_bytes(&self) -> [u8; 210] {
        let mut o = [0u8; 210];
        o[..128].copy_from_slice(&self.ql);
        o[128..192].copy_from_slice(&self.qh);
        for (o, &s) in o[192..208].iter_mut().zip(&self.scales) {
            *o = s as u8;
        }
        o[208..].copy_from_slice(&self.d.to_le_bytes());
        o
    }
}

impl Q8KBlock {
    pub const BYTES: usize = 292;
    pub fn parse(b: &[u8; 292]) -> Self {
        let mut bsums = [0i16; 16];
        for (j, s) in bsums.iter_mut().enumerate() {
            *s = i16::from_le_bytes([b[260 + 2 * j], b[261 + 2 * j]]);
        }
        Q8KBlock {
            d: f32::from_le_bytes(arr(b)),
            qs: i8s(&b[4..]),
            bsums,
        }
    }
    pub fn to_bytes(&self) -> [u8; 292] {
        let mut o = [0u8; 292];
        o[..4].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in o[4..260].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
        for (j, s) in self.bsums.iter().enumerate() {
            o[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
        }
        o
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of Q4_K/Q5_K.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// An f16 bit pattern for `x` (helper for building test blocks).
pub fn f16_bits(x: f32) -> u16 {
    f32_to_f16(x)
}
