//! A small NPY reader and writer: format v1.0 (v2.0 read too), little-endian `<f4` and `<i4`,
//! C order. That is all a trace needs, and numpy reads it with `numpy.load`.
//!
//! Layout (numpy's `format.py` documents it): the magic `\x93NUMPY`, a major and minor version
//! byte, the header length (u16 LE in v1.0, u32 LE in v2.0), then an ASCII Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and ended by
//! a newline so that the data starts on a 64-byte boundary; then the raw data.

use std::io::Write;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
const ALIGN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an NPY file (bad magic)")]
    BadMagic,
    #[error("unsupported NPY version {0}.{1}")]
    Version(u8, u8),
    #[error("malformed NPY header: {0}")]
    Header(String),
    #[error("unsupported dtype `{0}` (only '<f4' and '<i4' are supported)")]
    Dtype(String),
    #[error("Fortran-ordered arrays are not supported")]
    FortranOrder,
    #[error("shape {shape:?} needs {expected} elements, the data holds {actual}")]
    Size {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
}

/// The element data of an array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl NpyData {
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy dtype string.
    pub fn descr(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "<f4",
            NpyData::I32(_) => "<i4",
        }
    }

    /// Values as f64 (ids convert exactly), for comparisons.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        }
    }
}

/// An n-dimensional array in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    pub fn new(shape: Vec<usize>, data: NpyData) -> Result<NpyArray, NpyError> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(NpyError::Size {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(NpyArray { shape, data })
    }

    /// Serializes the array as NPY v1.0.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), NpyError> {
        let shape = match self.shape.len() {
            // A 1-tuple needs its trailing comma in Python.
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
            self.data.descr(),
            shape
        );
        // magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
        let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
        let pad = (ALIGN - unpadded % ALIGN) % ALIGN;
        header.push_str(&" ".repeat(pad));
        header.push('\n');
        let len = u16::try_from(header.len()).map_err(|_| {
            NpyError::Header(format!("header too long ({} bytes) for v1.0", header.len()))
        })?;
        let mut buf = Vec::with_capacity(MAGIC.len() + 4 + header.len() + self.data.len() * 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[1, 0]);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(header.as_bytes());
        match &self.data {
            NpyData::F32(v) => v
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
            NpyData::I32(v) => v
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
        }
        w.write_all(&buf)?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, NpyError> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Reads an NPY v1.0 or v2.0 array of `<f4` or `<i4` in C order.
    pub fn from_bytes(bytes: &[u8]) -> Result<NpyArray, NpyError> {
        if bytes.len() < 10 || &bytes[..6] != MAGIC {
            return Err(NpyError::BadMagic);
        }
        let (major, minor) = (bytes[6], bytes[7]);
        let (header_len, header_start) = match major {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return Err(NpyError::Header("truncated".into()));
                }
                let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                (n as usize, 12)
            }
            _ => return Err(NpyError::Version(major, minor)),
        };
        let header_end = header_start + header_len;
        let header = bytes
            .get(header_start..header_end)
            .ok_or_else(|| NpyError::Header("truncated".into()))?;
        let header =
            std::str::from_utf8(header).map_err(|_| NpyError::Header("not UTF-8".into()))?;
        let descr = dict_value(header, "descr")?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        match dict_value(header, "fortran_order")? {
            "False" => {}
            "True" => return Err(NpyError::FortranOrder),
            other => return Err(NpyError::Header(format!("fortran_order `{other}`"))),
        }
        let shape = parse_shape(dict_value(header, "shape")?)?;
        let data = &bytes[header_end..];
        let n: usize = shape.iter().product();
        if data.len() != n * 4 {
            return Err(NpyError::Size {
                shape,
                expected: n,
                actual: data.len() / 4,
            });
        }
        let words = data.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
        let data = match descr {
            "<f4" => NpyData::F32(words.map(f32::from_le_bytes).collect()),
            "<i4" => NpyData::I32(words.map(i32::from_le_bytes).collect()),
            other => return Err(NpyError::Dtype(other.to_string())),
        };
        Ok(NpyArray { shape, data })
    }
}

/// The text of the value of `key` in a Python dict literal such as numpy writes: everything up
/// to the next top-level comma or closing brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let at = header
        .find(&pat_single)
        .or_else(|| header.find(&pat_double))
        .ok_or_else(|| NpyError::Header(format!("no `{key}` key")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(|| NpyError::Header(format!("no `:` after `{key}`")))?
        .trim_start();
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
    }
    Err(NpyError::Header(format!("unterminated value for `{key}`")))
}

fn parse_shape(text: &str) -> Result<Vec<usize>, NpyError> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| NpyError::Header(format!("shape `{text}` is not a tuple")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        // numpy may write `3L` in files from Python 2.
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| NpyError::Header(format!("bad dimension `{s}` in shape")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_round_trips() {
        for shape in [vec![], vec![0], vec![5], vec![2, 3], vec![2, 1, 4]] {
            let n: usize = shape.iter().product();
            let vals: Vec<f32> = (0..n).map(|i| i as f32 * -0.5).collect();
            let a = NpyArray::new(shape.clone(), NpyData::F32(vals)).unwrap();
            let bytes = a.to_bytes().unwrap();
            let hl = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            assert_eq!((10 + hl) % 64, 0, "shape {shape:?}");
            assert_eq!(bytes[10 + hl - 1], b'\n');
            assert_eq!(NpyArray::from_bytes(&bytes).unwrap(), a);
        }
    }

    #[test]
    fn special_values_keep_their_bits() {
        let vals = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            f32::from_bits(1),
        ];
        let a = NpyArray::new(vec![5], NpyData::F32(vals.clone())).unwrap();
        let b = NpyArray::from_bytes(&a.to_bytes().unwrap()).unwrap();
        let NpyData::F32(got) = b.data else {
            panic!("dtype changed")
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&vals));
    }

    #[test]
    fn reads_a_header_as_numpy_writes_it() {
        // numpy 1.x/2.x writes this exact header for np.save(f, np.arange(3, dtype='<i4')).
        let mut h = b"{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }".to_vec();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&h);
        for i in 0i32..3 {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        let a = NpyArray::from_bytes(&bytes).unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.data, NpyData::I32(vec![0, 1, 2]));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(matches!(
            NpyArray::from_bytes(b"hello world"),
            Err(NpyError::BadMagic)
        ));
        let a = NpyArray::new(vec![2], NpyData::F32(vec![1.0, 2.0])).unwrap();
        let mut bytes = a.to_bytes().unwrap();
        bytes.pop();
        assert!(matches!(
            NpyArray::from_bytes(&bytes),
            Err(NpyError::Size { .. })
        ));
        assert!(NpyArray::new(vec![3], NpyData::F32(vec![1.0])).is_err());
    }
}
