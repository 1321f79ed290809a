//! The model's weights as zero-copy views of the GGUF file, each with its own qtype.
//!
//! Q4_K_M files mix formats inside one layer (Q6_K `attn_v` and `ffn_down_exps` in some layers,
//! Q4_K elsewhere, F32 norms and router), so every [`Matrix`] carries the qtype of the tensor it
//! came from and every kernel call dispatches on it. Nothing here assumes one qtype per model.

use super::config::{Arch, Config};
use super::kernels::{row_bytes, QType};

/// One tensor as the loader sees it: GGUF dims (fastest first) and raw bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'f> {
    pub qtype: QType,
    pub dims: &'f [u64],
    pub data: &'f [u8],
}

/// Where the loader finds tensors (implemented for the GGUF reader; a map in tests).
pub trait TensorSource<'f> {
    fn tensor(&self, name: &str) -> Option<TensorRef<'f>>;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error(
        "tensor `{name}` has shape {got:?} (GGUF order), expected {expected:?} from the metadata"
    )]
    Shape {
        name: String,
        got: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor `{name}` holds {got} bytes, its shape and qtype {qtype:?} need {expected}")]
    Bytes {
        name: String,
        qtype: QType,
        got: usize,
        expected: usize,
    },
    #[error("tensor `{name}` has qtype {qtype:?}; {role} must be F32 or F16")]
    NotFloat {
        name: String,
        qtype: QType,
        role: &'static str,
    },
    #[error("tensor `{name}`: rows of {cols} values do not fit qtype {qtype:?} (block size)")]
    BlockSize {
        name: String,
        qtype: QType,
        cols: usize,
    },
}

/// A borrowed matrix: `rows` rows of `cols` values stored in `qtype`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'f> {
    pub qtype: QType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub data: &'f [u8],
}

impl<'f> MatRef<'f> {
    #[inline]
    pub fn row(&self, r: usize) -> &'f [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// A named matrix.
#[derive(Clone, Debug)]
pub struct Matrix<'f> {
    pub name: String,
    pub m: MatRef<'f>,
}

/// `n` matrices of the same shape stored back to back (`ffn_*_exps`).
#[derive(Clone, Debug)]
pub struct ExpertStack<'f> {
    pub name: String,
    pub n: usize,
    pub expert_bytes: usize,
    pub m: MatRef<'f>,
}

impl<'f> ExpertStack<'f> {
    pub fn expert(&self, e: usize) -> MatRef<'f> {
        MatRef {
            data: &self.m.data[e * self.expert_bytes..(e + 1) * self.expert_bytes],
            ..self.m
        }
    }
}

pub enum Ffn<'f> {
    Moe {
        /// `ffn_gate_inp`: n_expert rows of `hidden`.
        router: Matrix<'f>,
        gate: ExpertStack<'f>,
        up: ExpertStack<'f>,
        down: ExpertStack<'f>,
    },
    Dense {
        gate: Matrix<'f>,
        up: Matrix<'f>,
        down: Matrix<'f>,
    },
}

pub struct Layer<'f> {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix<'f>,
    pub wk: Matrix<'f>,
    pub wv: Matrix<'f>,
    pub wo: Matrix<'f>,
    pub q_norm: Vec<f32>,
    pub k_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn<'f>,
}

pub struct Weights<'f> {
    pub token_embd: Matrix<'f>,
    pub layers: Vec<Layer<'f>>,
    pub output_norm: Vec<f32>,
    /// `output.weight`, or `token_embd.weight` when the file ties them (no `output.weight`).
    pub output: Matrix<'f>,
    pub tied_output: bool,
}

impl<'f> Weights<'f> {
    /// Loads and checks every tensor against `cfg` (shape, byte count, block size).
    /// `cfg.vocab` is set from `token_embd` if it was 0.
    pub fn load(src: &dyn TensorSource<'f>, cfg: &mut Config) -> Result<Weights<'f>, WeightsError> {
        let h = cfg.hidden as u64;
        let embd = src
            .tensor("token_embd.weight")
            .ok_or_else(|| WeightsError::Missing("token_embd.weight".into()))?;
        let vocab = embd.dims.get(1).copied().unwrap_or(0);
        if cfg.vocab == 0 {
            cfg.vocab = vocab as usize;
        }
        let v = cfg.vocab as u64;
        let token_embd = matrix(src, "token_embd.weight", &[h, v])?;
        let (output, tied_output) = match src.tensor("output.weight") {
            Some(_) => (matrix(src, "output.weight", &[h, v])?, false),
            None => (token_embd.clone(), true),
        };
        let output_norm = vector(src, "output_norm.weight", cfg.hidden, "a norm")?;
        let (q, kv, hd) = (cfg.q_dim() as u64, cfg.kv_dim() as u64, cfg.head_dim);
        let (ne, ff) = (cfg.n_expert as u64, cfg.ffn_dim as u64);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let ffn = match cfg.arch {
                Arch::Qwen3Moe => {
                    let router = matrix(src, &n("ffn_gate_inp"), &[h, ne])?;
                    if !router.m.qtype.is_float() {
                        return Err(WeightsError::NotFloat {
                            name: router.name,
                            qtype: router.m.qtype,
                            role: "the router",
                        });
                    }
                    Ffn::Moe {
                        router,
                        gate: experts(src, &n("ffn_gate_exps"), &[h, ff, ne])?,
                        up: experts(src, &n("ffn_up_exps"), &[h, ff, ne])?,
                        down: experts(src, &n("ffn_down_exps"), &[ff, h, ne])?,
                    }
                }
                Arch::Qwen3 => Ffn::Dense {
                    gate: matrix(src, &n("ffn_gate"), &[h, ff])?,
                    up: matrix(src, &n("ffn_up"), &[h, ff])?,
                    down: matrix(src, &n("ffn_down"), &[ff, h])?,
                },
            };
            layers.push(Layer {
                attn_norm: vector(src, &n("attn_norm"), cfg.hidden, "a norm")?,
                wq: matrix(src, &n("attn_q"), &[h, q])?,
                wk: matrix(src, &n("attn_k"), &[h, kv])?,
                wv: matrix(src, &n("attn_v"), &[h, kv])?,
                wo: matrix(src, &n("attn_output"), &[q, h])?,
                q_norm: vector(src, &n("attn_q_norm"), hd, "a norm")?,
                k_norm: vector(src, &n("attn_k_norm"), hd, "a norm")?,
                ffn_norm: vector(src, &n("ffn_norm"), cfg.hidden, "a norm")?,
                ffn,
            });
        }
        Ok(Weights {
            token_embd,
            layers,
            output_norm,
            output,
            tied_output,
        })
    }
}

fn get<'f>(
    src: &dyn TensorSource<'f>,
    name: &str,
    expected: &[u64],
) -> Result<TensorRef<'f>, WeightsError> {
    let t = src
        .tensor(name)
        .ok_or_else(|| WeightsError::Missing(name.into()))?;
    if t.dims != expected {
        return Err(WeightsError::Shape {
            name: name.into(),
            got: t.dims.to_vec(),
            expected: expected.to_vec(),
        });
    }
    Ok(t)
}

fn mat_ref(name: &str, t: &TensorRef<'_>, cols: usize, rows: usize) -> Result<usize, WeightsError> {
    let rb = row_bytes(t.qtype, cols).ok_or(WeightsError::BlockSize {
        name: name.into(),
        qtype: t.qtype,
        cols,
    })?;
    let expected = rb * rows;
    if t.data.len() != expected {
        return Err(WeightsError::Bytes {
            name: name.into(),
            qtype: t.qtype,
            got: t.data.len(),
            expected,
        });
    }
    Ok(rb)
}

fn matrix<'f>(
    src: &dyn TensorSource<'f>,
    name: &str,
    dims: &[u64],
) -> Result<Matrix<'f>, WeightsError> {
    let t = get(src, name, dims)?;
    let (cols, rows) = (dims[0] as usize, dims[1] as usize);
    let row_bytes = mat_ref(name, &t, cols, rows)?;
    Ok(Matrix {
        name: name.into(),
        m: MatRef {
            qtype: t.qtype,
            rows,
            cols,
            row_bytes,
            data: t.data,
        },
    })
}

fn experts<'f>(
    src: &dyn TensorSource<'f>,
    name: &str,
    dims: &[u64],
) -> Result<ExpertStack<'f>, WeightsError> {
    let t = get(src, name, dims)?;
    let (cols, rows, n) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
    let row_bytes = mat_ref(name, &t, cols, rows * n)?;
    Ok(ExpertStack {
        name: name.into(),
        n,
        expert_bytes: row_bytes * rows,
        m: MatRef {
            qtype: t.qtype,
            rows,
            cols,
            row_bytes,
            data: t.data,
        },
    })
}

/// A 1-D F32/F16 tensor copied out as f32 (norm weights: small, read every token).
fn vector<'f>(
    src: &dyn TensorSource<'f>,
    name: &str,
    len: usize,
    role: &'static str,
) -> Result<Vec<f32>, WeightsError> {
    let t = get(src, name, &[len as u64])?;
    if !t.qtype.is_float() {
        return Err(WeightsError::NotFloat {
            name: name.into(),
            qtype: t.qtype,
            role,
        });
    }
    mat_ref(name, &t, len, 1)?;
    let mut out = vec![0.0f32; len];
    super::kernels::dequantize_row(t.qtype, t.data, &mut out);
    Ok(out)
}
