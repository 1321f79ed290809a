//! A minimal memory-mapped GGUF (v2/v3) reader: metadata and tensor views, zero-copy.
//!
//! (Written inside engine::model because engine::gguf was not in the tree when the forward
//! needed a file to read; it implements only what the model loader uses. When engine::gguf
//! lands, `Model::open` can take its reader through the same `TensorSource` trait.)

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::config::MetaValue;
use super::kernels::QType;
use super::weights::{TensorRef, TensorSource};

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 or 3)")]
    Version(u32),
    #[error("GGUF file is truncated or corrupt at byte {at}: {what}")]
    Corrupt { at: usize, what: String },
    #[error("tensor `{name}` has ggml type {id}, which the CPU forward does not read (F32, F16, Q8_0, Q4_K, Q5_K, Q6_K)")]
    UnsupportedType { name: String, id: u32 },
}

/// A metadata value, as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub qtype: QType,
    pub offset: usize,
    pub size: usize,
}

pub struct GgufFile {
    map: memmap2::Mmap,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    data_start: usize,
    header_bytes: usize,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| GgufError::Corrupt {
                at: self.at,
                what: format!("needs {n} more bytes"),
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()? as usize;
        let at = self.at;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| GgufError::Corrupt {
            at,
            what: "string is not UTF-8".into(),
        })
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, GgufError> {
        let at = self.at;
        Ok(match ty {
            0 => Value::UInt(self.take(1)?[0] as u64),
            1 => Value::Int(self.take(1)?[0] as i8 as i64),
            2 => Value::UInt(u16::from_le_bytes([self.take(1)?[0], self.take(1)?[0]]) as u64),
            3 => Value::Int(i16::from_le_bytes([self.take(1)?[0], self.take(1)?[0]]) as i64),
            4 => Value::UInt(self.u32()? as u64),
            5 => Value::Int(self.u32()? as i32 as i64),
            6 => Value::Float(f32::from_bits(self.u32()?) as f64),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 if depth == 0 => {
                let ity = self.u32()?;
                let n = self.u64()? as usize;
                if n > self.b.len() {
                    return Err(GgufError::Corrupt {
                        at,
                        what: format!("array of {n} items"),
                    });
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(ity, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(self.u64()? as i64),
            12 => Value::Float(f64::from_bits(self.u64()?)),
            _ => {
                return Err(GgufError::Corrupt {
                    at,
                    what: format!("metadata value type {ty}"),
                })
            }
        })
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the file is mapped read-only; like every mmap reader we rely on the file not
        // being truncated while mapped (documented for users: do not rewrite a model in use).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let mut c = Cursor { b: &map, at: 0 };
        let magic: [u8; 4] = c
            .take(4)
            .map_err(|_| GgufError::Magic([0; 4]))?
            .try_into()
            .unwrap_or([0; 4]);
        if &magic != b"GGUF" {
            return Err(GgufError::Magic(magic));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let n_tensors = c.u64()? as usize;
        let n_kv = c.u64()? as usize;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut raw = Vec::with_capacity(n_tensors.min(1 << 20));
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()? as usize;
            if nd > 4 {
                return Err(GgufError::Corrupt {
                    at: c.at,
                    what: format!("tensor `{name}` has {nd} dims"),
                });
            }
            let mut dims = Vec::with_capacity(nd);
            for _ in 0..nd {
                dims.push(c.u64()?);
            }
            let ty = c.u32()?;
            let off = c.u64()? as usize;
            raw.push((name, dims, ty, off));
        }
        let align = match metadata.get("general.alignment") {
            Some(Value::UInt(a)) if *a > 0 => *a as usize,
            _ => 32,
        };
        let header_bytes = c.at;
        let data_start = c.at.div_ceil(align) * align;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = HashMap::new();
        for (name, dims, ty, off) in raw {
            let qtype = QType::from_ggml(ty).ok_or(GgufError::UnsupportedType {
                name: name.clone(),
                id: ty,
            })?;
            let n: u64 = dims.iter().product();
            let (bs, bb) = qtype.block();
            let size = (n as usize / bs) * bb;
            let start = data_start + off;
            if start.checked_add(size).is_none_or(|e| e > map.len()) {
                return Err(GgufError::Corrupt {
                    at: start,
                    what: format!("tensor `{name}` runs past the end of the file"),
                });
            }
            index.insert(name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name,
                dims,
                qtype,
                offset: start,
                size,
            });
        }
        Ok(GgufFile {
            map,
            metadata,
            tensors,
            index,
            data_start,
            header_bytes,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The value in the config reader's form.
    pub fn meta_value(&self, key: &str) -> Option<MetaValue> {
        Some(match self.metadata.get(key)? {
            Value::Int(i) => MetaValue::Int(*i),
            Value::UInt(u) => MetaValue::Int(i64::try_from(*u).unwrap_or(i64::MAX)),
            Value::Float(f) => MetaValue::Float(*f),
            Value::Str(s) => MetaValue::Str(s.clone()),
            _ => MetaValue::Other,
        })
    }

    pub fn str_array(&self, key: &str) -> Option<Vec<String>> {
        match self.metadata.get(key)? {
            Value::Array(v) => v
                .iter()
                .map(|x| {
                    if let Value::Str(s) = x {
                        Some(s.clone())
                    } else {
                        None
                    }
                })
                .collect(),
            _ => None,
        }
    }

    pub fn int_array(&self, key: &str) -> Option<Vec<i64>> {
        match self.metadata.get(key)? {
            Value::Array(v) => v
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Some(*i),
                    Value::UInt(u) => Some(*u as i64),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn uint(&self, key: &str) -> Option<u64> {
        match self.metadata.get(key)? {
            Value::UInt(u) => Some(*u),
            Value::Int(i) if *i >= 0 => Some(*i as u64),
            _ => None,
        }
    }

    /// Bytes of header (metadata and tensor infos), for trace manifests.
    pub fn header_bytes(&self) -> usize {
        self.header_bytes
    }

    pub fn data_start(&self) -> usize {
        self.data_start
    }

    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }
}

impl<'f> TensorSource<'f> for &'f GgufFile {
    fn tensor(&self, name: &str) -> Option<TensorRef<'f>> {
        let t = &self.tensors[*self.index.get(name)?];
        Some(TensorRef {
            qtype: t.qtype,
            dims: &t.dims,
            data: &self.map[t.offset..t.offset + t.size],
        })
    }
}
