//! The GGUF writer (version 3): metadata and tensor infos first, then tensor data streamed in
//! order, so files far larger than memory can be written from generators.
//!
//! ```no_run
//! use engine::gguf::{GgufWriter, Value};
//! use engine::quant::QType;
//! let mut w = GgufWriter::create("out.gguf".as_ref())?;
//! w.add_metadata("general.architecture", Value::String("qwen3moe".into()))?;
//! w.add_tensor("token_embd.weight", QType::F32, &[64, 100])?;
//! let mut data = w.begin_data()?;
//! data.write_tensor_data(&vec![0u8; 64 * 100 * 4])?; // may be split into several calls
//! data.finish()?;
//! # Ok::<(), engine::gguf::GgufError>(())
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::reader::{align_up, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS};
use super::value::Value;
use super::GgufError;
use crate::quant::QType;

struct Pending {
    name: String,
    qtype: QType,
    dims: Vec<u64>,
    offset: u64,
    n_bytes: u64,
}

/// Collects the header; [`GgufWriter::begin_data`] writes it and returns the data writer.
pub struct GgufWriter<W: Write> {
    out: W,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<Pending>,
    names: HashSet<String>,
    next_offset: u64,
}

impl GgufWriter<BufWriter<File>> {
    /// Creates (truncates) `path` with an 8 MiB write buffer.
    pub fn create(path: &Path) -> Result<Self, GgufError> {
        let f = File::create(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(GgufWriter::new(BufWriter::with_capacity(8 << 20, f)))
    }
}

impl<W: Write> GgufWriter<W> {
    pub fn new(out: W) -> Self {
        GgufWriter {
            out,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            next_offset: 0,
        }
    }

    /// Sets the alignment and records it as `general.alignment` (u32). Must come before any
    /// tensor is added, since offsets depend on it.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<(), GgufError> {
        if alignment == 0 || !alignment.is_power_of_two() || !self.tensors.is_empty() {
            return Err(GgufError::Writer(format!(
                "alignment {alignment} must be a power of two set before any tensor"
            )));
        }
        self.alignment = alignment as u64;
        self.add_metadata("general.alignment", Value::U32(alignment))
    }

    /// Adds a metadata entry. Keys must be unique; arrays must be homogeneous.
    pub fn add_metadata(&mut self, key: &str, value: Value) -> Result<(), GgufError> {
        check_value(key, &value, 0)?;
        if key == "general.alignment" && self.keys.contains(key) {
            return Err(GgufError::DuplicateKey { key: key.into() });
        }
        if !self.keys.insert(key.to_string()) {
            return Err(GgufError::DuplicateKey { key: key.into() });
        }
        self.metadata.push((key.to_string(), value));
        Ok(())
    }

    /// Declares a tensor (GGUF dim order, fastest first); data follows in declaration order.
    pub fn add_tensor(&mut self, name: &str, qtype: QType, dims: &[u64]) -> Result<(), GgufError> {
        let bad = |what: String| GgufError::TensorInfo {
            name: name.to_string(),
            at: 0,
            what,
        };
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dimensions (1..={MAX_DIMS})", dims.len())));
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| {
                a.checked_mul(d).filter(|&p| p <= i64::MAX as u64)
            })
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
        let bs = qtype.block_size() as u64;
        if dims[0] % bs != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of the {} block size {bs}",
                dims[0],
                qtype.name()
            )));
        }
        let n_bytes = (n / bs)
            .checked_mul(qtype.block_bytes() as u64)
            .ok_or_else(|| bad("byte size overflows".into()))?;
        if !self.names.insert(name.to_string()) {
            return Err(GgufError::DuplicateTensor { name: name.into() });
        }
        let offset = self.next_offset;
        self.next_offset = offset
            .checked_add(n_bytes)
            .and_then(|e| align_up(e, self.alignment))
            .ok_or_else(|| bad("data section size overflows".into()))?;
        self.tensors.push(Pending {
            name: name.to_string(),
            qtype,
            dims: dims.to_vec(),
            offset,
            n_bytes,
        });
        Ok(())
    }

    /// Total bytes the finished file will have.
    pub fn file_len(&self) -> u64 {
        let mut n = 4 + 4 + 8 + 8;
        for (k, v) in &self.metadata {
            n += 8 + k.len() as u64 + 4 + encoded_len(v);
        }
        for t in &self.tensors {
            n += 8 + t.name.len() as u64 + 4 + 8 * t.dims.len() as u64 + 4 + 8;
        }
        let start = align_up(n, self.alignment).unwrap_or(u64::MAX);
        match self.tensors.last() {
            Some(t) => start.saturating_add(t.offset + t.n_bytes),
            None => start,
        }
    }

    /// Writes the header and padding; returns the writer for the tensor data.
    pub fn begin_data(mut self) -> Result<DataWriter<W>, GgufError> {
        let mut h = Vec::with_capacity(1 << 16);
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut h, k);
            h.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut h, v);
        }
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.qtype.ggml_id().to_le_bytes());
            h.extend_from_slice(&t.offset.to_le_bytes());
        }
        let pad = align_up(h.len() as u64, self.alignment).unwrap_or(0) as usize - h.len();
        h.resize(h.len() + pad, 0);
        self.out.write_all(&h).map_err(GgufError::Write)?;
        Ok(DataWriter {
            out: self.out,
            tensors: self.tensors,
            alignment: self.alignment,
            current: 0,
            written: 0,
        })
    }
}

/// Receives the tensor bytes, in declaration order, in chunks of any size.
pub struct DataWriter<W: Write> {
    out: W,
    tensors: Vec<Pending>,
    alignment: u64,
    current: usize,
    written: u64,
}

impl<W: Write> DataWriter<W> {
    /// The tensor whose bytes are expected next, if any.
    pub fn next_tensor(&self) -> Option<(&str, QType, &[u64], u64)> {
        self.tensors.get(self.current).map(|t| {
            (
                t.name.as_str(),
                t.qtype,
                t.dims.as_slice(),
                t.n_bytes - self.written,
            )
        })
    }

    /// Appends bytes to the current tensor; a chunk may not run past its end (so a wrong-size
    /// generator is caught at the tensor where it goes wrong).
    pub fn write_tensor_data(&mut self, mut bytes: &[u8]) -> Result<(), GgufError> {
        while !bytes.is_empty() {
            let Some(t) = self.tensors.get(self.current) else {
                return Err(GgufError::Writer(format!(
                    "{} bytes of data after the last tensor",
                    bytes.len()
                )));
            };
            let left = t.n_bytes - self.written;
            if bytes.len() as u64 > left {
                return Err(GgufError::Writer(format!(
                    "tensor `{}` has {} bytes; a chunk of {} arrived with {left} left",
                    t.name,
                    t.n_bytes,
                    bytes.len()
                )));
            }
            self.out.write_all(bytes).map_err(GgufError::Write)?;
            self.written += bytes.len() as u64;
            bytes = &[];
            self.advance_if_complete()?;
        }
        // A zero-byte tensor is complete without any data.
        self.advance_if_complete()
    }

    fn advance_if_complete(&mut self) -> Result<(), GgufError> {
        while let Some(t) = self.tensors.get(self.current) {
            if self.written < t.n_bytes {
                break;
            }
            let end = t.offset + t.n_bytes;
            let pad = align_up(end, self.alignment).unwrap_or(end) - end;
            if pad > 0 && self.current + 1 < self.tensors.len() {
                self.out
                    .write_all(&vec![0u8; pad as usize])
                    .map_err(GgufError::Write)?;
            }
            self.current += 1;
            self.written = 0;
        }
        Ok(())
    }

    /// Checks that every tensor got its bytes and flushes; returns the inner writer.
    pub fn finish(mut self) -> Result<W, GgufError> {
        self.advance_if_complete()?;
        if let Some(t) = self.tensors.get(self.current) {
            return Err(GgufError::Writer(format!(
                "tensor `{}` got {} of its {} bytes (and {} tensors after it none)",
                t.name,
                self.written,
                t.n_bytes,
                self.tensors.len() - self.current - 1
            )));
        }
        self.out.flush().map_err(GgufError::Write)?;
        Ok(self.out)
    }
}

fn check_value(key: &str, v: &Value, depth: usize) -> Result<(), GgufError> {
    if let Value::Array(t, items) = v {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::Writer(format!(
                "`{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
            )));
        }
        for it in items {
            if it.value_type() != *t {
                return Err(GgufError::Writer(format!(
                    "`{key}`: array of {t} holds a {}",
                    it.value_type()
                )));
            }
            check_value(key, it, depth + 1)?;
        }
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.push(*x as u8),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(*x as u8),
        Value::String(s) => put_str(h, s),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Array(t, items) => {
            h.extend_from_slice(&t.id().to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(h, it);
            }
        }
    }
}

fn encoded_len(v: &Value) -> u64 {
    match v {
        Value::String(s) => 8 + s.len() as u64,
        Value::Array(_, items) => 12 + items.iter().map(encoded_len).sum::<u64>(),
        other => other.value_type().min_encoded_len() as u64,
    }
}
