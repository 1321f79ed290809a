//! GGUF files: a memory-mapped reader with zero-copy tensor views, and a streaming writer.
//!
//! Format (ggml `docs/gguf.md`): magic "GGUF", version (2 or 3), tensor count (u64), metadata
//! count (u64), metadata entries (key string, value type u32, value), tensor infos (name,
//! n_dims u32, dims u64 each with the fastest dimension first, ggml type u32, offset u64
//! relative to the data section), padding to `general.alignment` (default 32), tensor data.
//! Strings are a u64 length and UTF-8 bytes; arrays are an element type u32, a count u64 and
//! the items. All integers are little-endian.

mod reader;
mod value;
mod writer;

pub use reader::{
    GgufFile, TensorInfo, TensorView, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS,
};
pub use value::{Value, ValueType};
pub use writer::{DataWriter, GgufWriter};

/// Everything that can go wrong reading or writing a GGUF file. Messages name the key or the
/// tensor concerned and the byte offset where the reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("not a GGUF file: bad magic {found:02x?} (expected \"GGUF\" = [47, 47, 55, 46]; file is {len} bytes)")]
    Magic { found: Vec<u8>, len: usize },
    #[error("unsupported GGUF version {0} (this reader reads versions 2 and 3)")]
    Version(u32),
    #[error("truncated or corrupt GGUF header at byte {at}: {what}")]
    Truncated { at: usize, what: String },
    #[error("metadata key `{key}` (at byte {at}): {what}")]
    Metadata {
        key: String,
        at: usize,
        what: String,
    },
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey { key: String },
    #[error("missing metadata key `{key}`")]
    MissingKey { key: String },
    #[error("metadata key `{key}` should be {expected}, but is {found}")]
    KeyType {
        key: String,
        expected: String,
        found: String,
    },
    #[error("tensor `{name}` (info at byte {at}): {what}")]
    TensorInfo {
        name: String,
        at: usize,
        what: String,
    },
    #[error("tensor `{name}` has ggml type {id}{}, which engine::quant does not support (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_K)", known_name.map(|n| format!(" ({n})")).unwrap_or_else(|| " (unknown to ggml)".into()))]
    UnsupportedType {
        name: String,
        id: u32,
        known_name: Option<&'static str>,
    },
    #[error("tensor `{name}`: data at byte {start} + {n_bytes} bytes runs past the end of the file ({file_len} bytes; truncated download?)")]
    TensorPastEnd {
        name: String,
        start: u64,
        n_bytes: u64,
        file_len: u64,
    },
    #[error("tensor `{name}` appears twice")]
    DuplicateTensor { name: String },
    #[error("GGUF writer: {0}")]
    Writer(String),
}
