//! The GGUF reader: parses the header of a memory-mapped (or in-memory) file and hands out
//! zero-copy tensor views.
//!
//! Every count, length and offset read from the file is bounded by the bytes that remain
//! before anything is allocated or sliced, with checked arithmetic throughout, so a hostile
//! file ends in a [`GgufError`] and never in a panic, a huge allocation or an out-of-bounds read.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::value::{Value, ValueType};
use super::GgufError;
use crate::quant::QType;

/// The only magic GGUF has: "GGUF" in file order.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
pub const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are rejected (no real file nests beyond 2; the limit bounds
/// the recursion so a hostile file cannot exhaust the stack).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Header facts of a tensor: where its bytes are, and what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub qtype: QType,
    /// GGUF order: the fastest-varying dimension first (`dims[0]` = columns of a row).
    pub dims: Vec<u64>,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Absolute byte range of the data in the file.
    pub start: usize,
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A tensor's bytes inside the mapped file, without copying.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub qtype: QType,
    /// GGUF order, fastest first.
    pub dims: &'a [u64],
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Values per row (`dims[0]`) and number of rows (the product of the other dims).
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1) as usize;
        let rows = self.dims.iter().skip(1).product::<u64>() as usize;
        (rows, cols)
    }
}

enum Backing {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file.
pub struct GgufFile {
    backing: Backing,
    pub version: u32,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    header_len: usize,
    data_start: usize,
}

impl GgufFile {
    /// Maps `path` read-only and parses its header.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only. As with every mmap-based reader, the file must not be
        // truncated or rewritten while mapped; the header is validated against the length seen
        // at map time, so a well-behaved file can never lead to an out-of-bounds slice.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Backing::Map(map))
    }

    /// Parses a file held in memory (tests, fuzzing, files received over a pipe).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(Backing::Owned(bytes))
    }

    fn parse(backing: Backing) -> Result<GgufFile, GgufError> {
        let h = parse_header(backing.bytes())?;
        Ok(GgufFile {
            backing,
            version: h.version,
            metadata: h.metadata,
            meta_index: h.meta_index,
            tensors: h.tensors,
            tensor_index: h.tensor_index,
            alignment: h.alignment,
            header_len: h.header_len,
            data_start: h.data_start,
        })
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes as a zero-copy view, or None if the file has no such tensor.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensor_info(name).map(|t| self.view(t))
    }

    /// Views of all tensors in file order.
    pub fn tensor_views(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.tensors.iter().map(|t| self.view(t))
    }

    fn view<'a>(&'a self, t: &'a TensorInfo) -> TensorView<'a> {
        TensorView {
            name: &t.name,
            qtype: t.qtype,
            dims: &t.dims,
            // In bounds: parse_header checked start + n_bytes <= file length.
            data: &self.backing.bytes()[t.start..t.start + t.n_bytes],
        }
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Bytes of magic, counts, metadata and tensor infos (before alignment padding).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Absolute offset of the data section.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    pub fn file_len(&self) -> usize {
        self.backing.bytes().len()
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    fn need(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong(key: &str, expected: &str, v: &Value) -> GgufError {
        GgufError::KeyType {
            key: key.to_string(),
            expected: expected.to_string(),
            found: describe(v),
        }
    }

    fn int<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<T, GgufError> {
        let v = self.need(key)?;
        v.as_i128()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| Self::wrong(key, expected, v))
    }

    /// An integer of any stored width or sign that fits in u32 (files differ in which integer
    /// type they use for counts; what matters is the value).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.int(key, "an integer in u32 range")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.int(key, "an integer in u64 range")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.int(key, "an integer in i64 range")
    }

    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.int(key, "an integer in usize range")
    }

    /// An F32 value, or an F64 value converted to f32 (rounded to nearest).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.need(key)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| Self::wrong(key, "f32 or f64", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.need(key)?;
        v.as_f64().ok_or_else(|| Self::wrong(key, "f32 or f64", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.need(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong(key, "bool", v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.need(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    /// An array's items (of any element type).
    pub fn get_array(&self, key: &str) -> Result<(ValueType, &[Value]), GgufError> {
        match self.need(key)? {
            Value::Array(t, items) => Ok((*t, items)),
            v => Err(Self::wrong(key, "array", v)),
        }
    }

    /// An array of strings, borrowed.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.need(key)? {
            Value::Array(ValueType::String, items) => Ok(items
                .iter()
                .map(|v| v.as_str().unwrap_or_default())
                .collect()),
            v => Err(Self::wrong(key, "array of string", v)),
        }
    }

    /// An array of integers of any type, as i64 (u64 values above i64::MAX are an error).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let v = self.need(key)?;
        match v {
            Value::Array(_, items) => items
                .iter()
                .map(|x| x.as_i128().and_then(|i| i64::try_from(i).ok()))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| Self::wrong(key, "array of integers in i64 range", v)),
            _ => Err(Self::wrong(key, "array of integers", v)),
        }
    }

    /// An array of F32 (or F64, converted) values.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let v = self.need(key)?;
        match v {
            Value::Array(_, items) => items
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| Self::wrong(key, "array of f32", v)),
            _ => Err(Self::wrong(key, "array of f32", v)),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Array(t, items) => format!("array of {} {t}", items.len()),
        other => format!("{} {}", other.value_type(), other.display_short(0)),
    }
}

pub(crate) struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub meta_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    pub header_len: usize,
    pub data_start: usize,
}

/// What is being read, for error messages.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Header(&'static str),
    Key(&'a str),
    Tensor(&'a str),
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, ctx: Ctx<'_>, what: String) -> GgufError {
        match ctx {
            Ctx::Header(field) => GgufError::Truncated {
                at: self.at,
                what: format!("{field}: {what}"),
            },
            Ctx::Key(key) => GgufError::Metadata {
                key: key.to_string(),
                at: self.at,
                what,
            },
            Ctx::Tensor(name) => GgufError::TensorInfo {
                name: name.to_string(),
                at: self.at,
                what,
            },
        }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize, ctx: Ctx<'_>) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.err(
                ctx,
                format!(
                    "needs {n} bytes but the file ends {} bytes later (truncated?)",
                    self.remaining()
                ),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, ctx: Ctx<'_>) -> Result<[u8; N], GgufError> {
        let s = self.take(N, ctx)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, ctx: Ctx<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(ctx)?))
    }

    fn u64(&mut self, ctx: Ctx<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(ctx)?))
    }

    /// A count of items each at least `min_len` bytes long, bounded by the bytes left.
    fn count(&mut self, min_len: usize, ctx: Ctx<'_>, what: &str) -> Result<usize, GgufError> {
        let n = self.u64(ctx)?;
        let fits = usize::try_from(n).ok().filter(|&n| {
            n.checked_mul(min_len)
                .is_some_and(|b| b <= self.remaining())
        });
        fits.ok_or_else(|| {
            self.err(
                ctx,
                format!(
                    "{what} {n} needs at least {} bytes, but the file has {} left (truncated or corrupt)",
                    (n as u128) * min_len as u128,
                    self.remaining()
                ),
            )
        })
    }

    fn string(&mut self, ctx: Ctx<'_>, what: &str) -> Result<String, GgufError> {
        let n = self.count(1, ctx, &format!("length of {what}"))?;
        let at = self.at;
        let bytes = self.take(n, ctx)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            let at = at + e.utf8_error().valid_up_to();
            match ctx {
                Ctx::Header(_) | Ctx::Key(_) => GgufError::Metadata {
                    key: ctx_name(ctx),
                    at,
                    what: format!("{what} is not valid UTF-8"),
                },
                Ctx::Tensor(name) => GgufError::TensorInfo {
                    name: name.to_string(),
                    at,
                    what: format!("{what} is not valid UTF-8"),
                },
            }
        })
    }

    fn value(&mut self, ty: ValueType, depth: usize, ctx: Ctx<'_>) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.arr::<1>(ctx)?[0]),
            ValueType::I8 => Value::I8(self.arr::<1>(ctx)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.arr(ctx)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.arr(ctx)?)),
            ValueType::U32 => Value::U32(self.u32(ctx)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.arr(ctx)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.arr(ctx)?)),
            ValueType::Bool => {
                let b = self.arr::<1>(ctx)?[0];
                if b > 1 {
                    self.at -= 1;
                    return Err(self.err(ctx, format!("bool byte is {b}, not 0 or 1")));
                }
                Value::Bool(b == 1)
            }
            ValueType::String => Value::String(self.string(ctx, "string value")?),
            ValueType::U64 => Value::U64(self.u64(ctx)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.arr(ctx)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.arr(ctx)?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(
                        ctx,
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
                    ));
                }
                let id = self.u32(ctx)?;
                let elem = ValueType::from_id(id).ok_or_else(|| {
                    self.err(ctx, format!("unknown array element type {id} (0..=12)"))
                })?;
                let n = self.count(elem.min_encoded_len(), ctx, "array item count")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, ctx)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn ctx_name(ctx: Ctx<'_>) -> String {
    match ctx {
        Ctx::Header(f) => format!("<{f}>"),
        Ctx::Key(k) | Ctx::Tensor(k) => k.to_string(),
    }
}

/// Parses and validates the header of `b` (the whole file).
pub(crate) fn parse_header(b: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { b, at: 0 };
    if b.len() < 4 {
        return Err(GgufError::Magic {
            found: b.to_vec(),
            len: b.len(),
        });
    }
    let magic: [u8; 4] = c.arr(Ctx::Header("magic"))?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::Magic {
            found: magic.to_vec(),
            len: b.len(),
        });
    }
    let version = c.u32(Ctx::Header("version"))?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version(version));
    }
    // Each tensor info takes at least 24 bytes (name length, n_dims, type, offset); each
    // key-value pair at least 13 (key length, type, one value byte).
    let n_tensors = c.count(24, Ctx::Header("tensor count"), "tensor count")?;
    let n_kv = c.count(13, Ctx::Header("metadata count"), "metadata count")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut meta_index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string(Ctx::Header("metadata key"), &format!("key of entry {i}"))?;
        let ctx = Ctx::Key(&key);
        let id = c.u32(ctx)?;
        let ty = ValueType::from_id(id)
            .ok_or_else(|| c.err(ctx, format!("unknown value type {id} (0..=12)")))?;
        let v = c.value(ty, 0, ctx)?;
        if meta_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey { key });
        }
        metadata.push((key, v));
    }

    let alignment = match meta_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => match &metadata[i].1 {
            Value::U32(a) if *a != 0 && a.is_power_of_two() => *a as u64,
            other => {
                return Err(GgufError::KeyType {
                    key: "general.alignment".into(),
                    expected: "a u32 power of two".into(),
                    found: describe(other),
                })
            }
        },
    };

    let mut raw = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(Ctx::Header("tensor name"), &format!("name of tensor {i}"))?;
        let ctx = Ctx::Tensor(&name);
        let n_dims = c.u32(ctx)? as usize;
        if n_dims > MAX_DIMS {
            return Err(c.err(ctx, format!("{n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(ctx)?);
        }
        let type_at = c.at;
        let id = c.u32(ctx)?;
        let offset = c.u64(ctx)?;
        raw.push((name, dims, id, offset, type_at));
    }
    let header_len = c.at;
    let data_start = align_up(header_len as u64, alignment)
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| GgufError::Truncated {
            at: header_len,
            what: "data section start overflows".into(),
        })?;

    let mut tensors = Vec::with_capacity(raw.len());
    let mut tensor_index = HashMap::with_capacity(raw.len());
    for (name, dims, id, offset, type_at) in raw {
        let terr = |what: String| GgufError::TensorInfo {
            name: name.clone(),
            at: type_at,
            what,
        };
        let qtype = QType::from_ggml_id(id).ok_or_else(|| GgufError::UnsupportedType {
            name: name.clone(),
            id,
            known_name: crate::quant::ggml_type_name(id),
        })?;
        // ggml keeps element counts in i64: every dim and the product must fit.
        let n = dims
            .iter()
            .try_fold(1u64, |acc, &d| {
                acc.checked_mul(d).filter(|&p| p <= i64::MAX as u64)
            })
            .ok_or_else(|| terr(format!("dimensions {dims:?} overflow the element count")))?;
        let (bs, bb) = (qtype.block_size() as u64, qtype.block_bytes() as u64);
        let cols = dims.first().copied().unwrap_or(1);
        if cols % bs != 0 {
            return Err(terr(format!(
                "row length {cols} is not a multiple of the {} block size {bs}",
                qtype.name()
            )));
        }
        let n_bytes = (n / bs)
            .checked_mul(bb)
            .ok_or_else(|| terr(format!("byte size of dimensions {dims:?} overflows")))?;
        if offset % alignment != 0 {
            return Err(terr(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let end = (data_start as u64)
            .checked_add(offset)
            .and_then(|s| s.checked_add(n_bytes).map(|e| (s, e)));
        let (start, n_bytes) = match end {
            Some((s, e)) if e <= b.len() as u64 => (s as usize, n_bytes as usize),
            _ => {
                return Err(GgufError::TensorPastEnd {
                    name: name.clone(),
                    start: (data_start as u64).saturating_add(offset),
                    n_bytes,
                    file_len: b.len() as u64,
                })
            }
        };
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor { name });
        }
        tensors.push(TensorInfo {
            name,
            qtype,
            dims,
            offset,
            start,
            n_bytes,
        });
    }
    Ok(Header {
        version,
        metadata,
        meta_index,
        tensors,
        tensor_index,
        alignment,
        header_len,
        data_start,
    })
}

pub(crate) fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}
