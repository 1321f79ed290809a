//! The Qwen3-MoE model on the CPU (and dense Qwen3): configuration from GGUF metadata, weights
//! as zero-copy views with per-tensor qtypes, the production forward with KV cache and trace
//! hook ([`forward`]), and a plain float64 reference forward ([`reference`]) for falsifiers.
//!
//! ```no_run
//! use engine::model::{GgufFile, Model, KvCache, ForwardOptions, Logits};
//! let file = GgufFile::open("model.gguf".as_ref())?;
//! let model = Model::load(&file)?;
//! let mut cache = KvCache::new(&model, 512);
//! let logits = model.forward(&[1, 2, 3], &mut cache, &ForwardOptions::default(), Logits::All, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod forward;
pub mod gguf_file;
pub mod kernels;
#[cfg(target_arch = "x86_64")]
mod kernels_avx2;
pub mod ops;
pub mod reference;
pub mod weights;

pub use config::{Arch, Config, ConfigError, MetaValue};
pub use forward::{ActPrecision, ForwardOptions, KvCache, Logits};
pub use gguf_file::{GgufError, GgufFile};
pub use kernels::QType;
pub use weights::{TensorSource, Weights, WeightsError};

use crate::tokenizer::{Tokenizer, TokenizerError, TokenizerSpec};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("tokenizer.ggml.tokens has {tokens} entries but token_embd has {rows} rows")]
    VocabMismatch { tokens: usize, rows: usize },
    #[error("no tokens given")]
    EmptyInput,
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("the KV cache holds {capacity} positions; this call needs {needed}")]
    ContextFull { needed: usize, capacity: usize },
}

/// A loaded model: configuration and weights borrowed from a [`GgufFile`].
pub struct Model<'f> {
    pub config: Config,
    pub weights: Weights<'f>,
}

impl<'f> Model<'f> {
    /// Reads the config from the metadata and checks every tensor against it.
    pub fn load(file: &'f GgufFile) -> Result<Model<'f>, ModelError> {
        let n_tokens = file.str_array("tokenizer.ggml.tokens").map(|t| t.len());
        let mut config = Config::from_metadata(&|k| file.meta_value(k), n_tokens)?;
        let weights = Weights::load(&file, &mut config)?;
        if let Some(t) = n_tokens {
            let rows = weights.token_embd.m.rows;
            if t != rows {
                return Err(ModelError::VocabMismatch { tokens: t, rows });
            }
        }
        Ok(Model { config, weights })
    }

    /// Loads from any tensor source (tests, other readers) with a given config.
    pub fn from_source(
        src: &dyn TensorSource<'f>,
        mut config: Config,
    ) -> Result<Model<'f>, ModelError> {
        let weights = Weights::load(src, &mut config)?;
        Ok(Model { config, weights })
    }
}

/// The tokenizer described by the file's `tokenizer.ggml.*` keys.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
    let id = |k: &str| file.uint(k).map(|v| v as u32);
    let spec = TokenizerSpec {
        model: file
            .str("tokenizer.ggml.model")
            .unwrap_or_default()
            .to_string(),
        pre: file
            .str("tokenizer.ggml.pre")
            .unwrap_or_default()
            .to_string(),
        tokens: file.str_array("tokenizer.ggml.tokens").unwrap_or_default(),
        token_types: file
            .int_array("tokenizer.ggml.token_type")
            .map(|v| v.into_iter().map(|x| x as i32).collect())
            .unwrap_or_default(),
        merges: file.str_array("tokenizer.ggml.merges").unwrap_or_default(),
        bos_id: id("tokenizer.ggml.bos_token_id"),
        eos_id: id("tokenizer.ggml.eos_token_id"),
    };
    Tokenizer::from_spec(spec)
}

/// Runs `f` on a rayon pool of `threads` threads (the forward's parallelism follows the pool it
/// runs in). Used by the CLI's `--threads` and by the determinism falsifier.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

/// Loading from `engine::gguf` (the shared GGUF reader) as well as from the model's own
/// minimal reader ([`GgufFile`]): same checks, same weights.
impl<'f> Model<'f> {
    /// Loads from an [`crate::gguf::GgufFile`]. A tensor in a format the CPU forward does not
    /// read is an error naming the tensor and the format.
    pub fn load_shared(file: &'f crate::gguf::GgufFile) -> Result<Model<'f>, ModelError> {
        for t in file.tensors() {
            if QType::from_ggml(t.qtype.ggml_id()).is_none() {
                return Err(ModelError::Gguf(GgufError::UnsupportedType {
                    name: t.name.clone(),
                    id: t.qtype.ggml_id(),
                }));
            }
        }
        let n_tokens = file
            .get_str_array("tokenizer.ggml.tokens")
            .ok()
            .map(|t| t.len());
        let mut config = Config::from_metadata(&|k| shared_meta_value(file, k), n_tokens)?;
        let weights = Weights::load(&SharedSource(file), &mut config)?;
        if let Some(t) = n_tokens {
            let rows = weights.token_embd.m.rows;
            if t != rows {
                return Err(ModelError::VocabMismatch { tokens: t, rows });
            }
        }
        Ok(Model { config, weights })
    }
}

fn shared_meta_value(file: &crate::gguf::GgufFile, key: &str) -> Option<MetaValue> {
    use crate::gguf::Value as V;
    Some(match file.get(key)? {
        V::U8(v) => MetaValue::Int(*v as i64),
        V::I8(v) => MetaValue::Int(*v as i64),
        V::U16(v) => MetaValue::Int(*v as i64),
        V::I16(v) => MetaValue::Int(*v as i64),
        V::U32(v) => MetaValue::Int(*v as i64),
        V::I32(v) => MetaValue::Int(*v as i64),
        V::U64(v) => MetaValue::Int(i64::try_from(*v).unwrap_or(i64::MAX)),
        V::I64(v) => MetaValue::Int(*v),
        V::F32(v) => MetaValue::Float(*v as f64),
        V::F64(v) => MetaValue::Float(*v),
        V::String(s) => MetaValue::Str(s.clone()),
        _ => MetaValue::Other,
    })
}

struct SharedSource<'f>(&'f crate::gguf::GgufFile);

impl<'f> TensorSource<'f> for SharedSource<'f> {
    fn tensor(&self, name: &str) -> Option<weights::TensorRef<'f>> {
        let t = self.0.tensor(name)?;
        Some(weights::TensorRef {
            qtype: QType::from_ggml(t.qtype.ggml_id())?,
            dims: t.dims,
            data: t.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_reader_and_own_reader_give_the_same_logits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        let shape = crate::synth::SynthShape::preset("tiny").unwrap();
        crate::synth::write_synthetic(&p, &shape, crate::synth::SynthQuant::Q4KM, 3).unwrap();
        let own = GgufFile::open(&p).unwrap();
        let shared = crate::gguf::GgufFile::open(&p).unwrap();
        let (a, b) = (
            Model::load(&own).unwrap(),
            Model::load_shared(&shared).unwrap(),
        );
        assert_eq!(a.config, b.config);
        let run = |m: &Model<'_>| {
            let mut c = KvCache::new(m, 8);
            m.forward(
                &[1, 5, 9],
                &mut c,
                &ForwardOptions::default(),
                Logits::All,
                None,
            )
            .unwrap()
        };
        let (la, lb) = (run(&a), run(&b));
        assert!(la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
