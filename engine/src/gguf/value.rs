//! GGUF metadata values: the 13 value types of the format, with arrays keeping their element
//! type (an empty array still has one, and writers must reproduce it).

use std::fmt;

/// The metadata value type ids of the GGUF format (`gguf_metadata_value_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// The fewest bytes one value of this type occupies in a file (strings: the length field;
    /// arrays: element type and count). Used to bound counts read from a file before allocating.
    pub fn min_encoded_len(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value, exactly as stored (no widening: a u16 stays a u16).
#[derive(Clone, Debug)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and items. Every item has the element type (the writer checks it).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl PartialEq for Value {
    /// Floats compare by bit pattern, so a value equals itself after a round trip even if NaN.
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (U8(a), U8(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Array(ta, a), Array(tb, b)) => ta == tb && a == b,
            (U64(a), U64(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        use Value::*;
        match self {
            U8(_) => ValueType::U8,
            I8(_) => ValueType::I8,
            U16(_) => ValueType::U16,
            I16(_) => ValueType::I16,
            U32(_) => ValueType::U32,
            I32(_) => ValueType::I32,
            F32(_) => ValueType::F32,
            Bool(_) => ValueType::Bool,
            String(_) => ValueType::String,
            Array(..) => ValueType::Array,
            U64(_) => ValueType::U64,
            I64(_) => ValueType::I64,
            F64(_) => ValueType::F64,
        }
    }

    /// The value as an integer if it is one of the integer types (any width or sign).
    pub fn as_i128(&self) -> Option<i128> {
        use Value::*;
        Some(match *self {
            U8(v) => v as i128,
            I8(v) => v as i128,
            U16(v) => v as i128,
            I16(v) => v as i128,
            U32(v) => v as i128,
            I32(v) => v as i128,
            U64(v) => v as i128,
            I64(v) => v as i128,
            _ => return None,
        })
    }

    /// The value as a float if it is F32 or F64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A short human rendering (arrays are summarised after a few items), for `infer inspect`.
    pub fn display_short(&self, max_items: usize) -> String {
        use Value::*;
        match self {
            U8(v) => v.to_string(),
            I8(v) => v.to_string(),
            U16(v) => v.to_string(),
            I16(v) => v.to_string(),
            U32(v) => v.to_string(),
            I32(v) => v.to_string(),
            U64(v) => v.to_string(),
            I64(v) => v.to_string(),
            F32(v) => v.to_string(),
            F64(v) => v.to_string(),
            Bool(v) => v.to_string(),
            String(s) => format!("{s:?}"),
            Array(t, items) => {
                let shown: Vec<std::string::String> = items
                    .iter()
                    .take(max_items)
                    .map(|v| v.display_short(max_items))
                    .collect();
                let more = if items.len() > max_items {
                    format!(", ... ({} {t} items)", items.len())
                } else {
                    std::string::String::new()
                };
                format!("[{}{more}]", shown.join(", "))
            }
        }
    }

    /// JSON form for `infer inspect --json`: numbers, strings, booleans and arrays as JSON;
    /// non-finite floats as strings ("NaN", "inf"), which JSON cannot hold as numbers.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        use Value::*;
        let float = |v: f64| {
            serde_json::Number::from_f64(v)
                .map(J::Number)
                .unwrap_or_else(|| J::String(v.to_string()))
        };
        match self {
            F32(v) => float(*v as f64),
            F64(v) => float(*v),
            Bool(v) => J::Bool(*v),
            String(s) => J::String(s.clone()),
            Array(_, items) => J::Array(items.iter().map(Value::to_json).collect()),
            U64(v) => J::from(*v),
            I64(v) => J::from(*v),
            other => J::from(other.as_i128().map(|v| v as i64).unwrap_or_default()),
        }
    }
}
