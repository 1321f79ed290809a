//! Shared CLI pieces: loading a model with a clear error, thread pools, token lists.

use std::path::Path;

use anyhow::{bail, Context, Result};
use engine::model::{GgufFile, Model};

/// Opens a GGUF file, leaking the mapping so that the model can live for the whole process
/// (a CLI loads one model and exits; the OS unmaps it).
pub fn open_model(path: &Path) -> Result<(&'static GgufFile, Model<'static>)> {
    if !path.exists() {
        bail!("model file {} does not exist", path.display());
    }
    let file = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let file: &'static GgufFile = Box::leak(Box::new(file));
    let model =
        Model::load(file).with_context(|| format!("loading the model in {}", path.display()))?;
    Ok((file, model))
}

/// Parses `1,2, 3` into token ids, naming the bad item.
pub fn parse_tokens(text: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        out.push(
            item.parse::<u32>().with_context(|| {
                format!("--tokens: item {} (`{item}`) is not a token id", i + 1)
            })?,
        );
    }
    if out.is_empty() {
        bail!("--tokens is empty");
    }
    Ok(out)
}

/// Runs `f` with `threads` worker threads (0 = rayon's default: one per core).
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R> {
    if threads == 0 {
        return Ok(f());
    }
    engine::model::with_threads(threads, f).map_err(anyhow::Error::msg)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// NVIDIA GPU (engine::cuda; run, logits, bench and trace; needs `--features cuda`)
    Cuda,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// 8-bit activations before quantized dots (llama.cpp's scheme, fast)
    Q8,
    /// f32 activations (exact path)
    F32,
}

impl Act {
    pub fn to_engine(self) -> engine::model::ActPrecision {
        match self {
            Act::Q8 => engine::model::ActPrecision::Q8,
            Act::F32 => engine::model::ActPrecision::F32,
        }
    }
}
