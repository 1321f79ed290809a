//! Falsifiers of `contracts/gguf-format-v1.yaml`: engine::gguf's reader and writer against
//! each other, against gguf-py (fixture python-oracle), against hostile files and mutations.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;

use contract_macros::falsifier;
use engine::gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType};
use engine::quant::QType;
use engine::sampling::Rng;
use pv_evidence::{Ctx, FalsifierError, FalsifierResult, ResultExt};

// ---------------------------------------------------------------------------------------------
// Random files

fn rand_string(rng: &mut Rng, max: usize) -> String {
    const ALPHABET: [&str; 12] = [
        "a", "b", "z", ".", "_", "0", "é", "ü", "中", "🦀", " ", "\n",
    ];
    let n = (rng.next_u64() % (max as u64 + 1)) as usize;
    (0..n)
        .map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize])
        .collect()
}

fn rand_scalar(rng: &mut Rng, t: ValueType) -> Value {
    let r = rng.next_u64();
    match t {
        ValueType::U8 => Value::U8(r as u8),
        ValueType::I8 => Value::I8(r as i8),
        ValueType::U16 => Value::U16(r as u16),
        ValueType::I16 => Value::I16(r as i16),
        ValueType::U32 => Value::U32(r as u32),
        ValueType::I32 => Value::I32(r as i32),
        // Arbitrary bit patterns: NaN payloads, infinities and subnormals must survive too.
        ValueType::F32 => Value::F32(f32::from_bits(r as u32)),
        ValueType::Bool => Value::Bool(r & 1 == 1),
        ValueType::String => Value::String(rand_string(rng, 12)),
        ValueType::U64 => Value::U64(r),
        ValueType::I64 => Value::I64(r as i64),
        ValueType::F64 => Value::F64(f64::from_bits(r)),
        ValueType::Array => unreachable!("arrays are built by rand_value"),
    }
}

const SCALARS: [ValueType; 12] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

/// A random value; arrays (of any element type, arrays of arrays up to `depth` 3) 1 time in 4.
fn rand_value(rng: &mut Rng, depth: usize) -> Value {
    if depth < 3 && rng.next_u64() % 4 == 0 {
        let elem = if depth < 2 && rng.next_u64() % 3 == 0 {
            ValueType::Array
        } else {
            let i = (rng.next_u64() % 12) as usize;
            SCALARS[i]
        };
        let n = (rng.next_u64() % 6) as usize; // includes empty arrays
        let items = (0..n)
            .map(|_| {
                if elem == ValueType::Array {
                    rand_array_of_depth(rng, depth + 1)
                } else {
                    rand_scalar(rng, elem)
                }
            })
            .collect();
        Value::Array(elem, items)
    } else {
        let i = (rng.next_u64() % 12) as usize;
        rand_scalar(rng, SCALARS[i])
    }
}

fn rand_array_of_depth(rng: &mut Rng, depth: usize) -> Value {
    match rand_value(rng, depth) {
        a @ Value::Array(..) => a,
        // Inner items of an array-of-arrays must themselves be arrays.
        s => Value::Array(s.value_type(), vec![s]),
    }
}

struct Planned {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, QType, Vec<u64>, Vec<u8>)>,
    alignment: Option<u32>,
}

const WEIGHT_QTYPES: [QType; 9] = QType::ALL;

fn rand_file(rng: &mut Rng) -> Planned {
    let alignment = match rng.next_u64() % 5 {
        0 => None,
        1 => Some(1),
        2 => Some(8),
        3 => Some(32),
        _ => Some(64),
    };
    let mut meta = Vec::new();
    for i in 0..(rng.next_u64() % 10) {
        meta.push((format!("k{i}.{}", rand_string(rng, 6)), rand_value(rng, 0)));
    }
    let mut tensors = Vec::new();
    for i in 0..(rng.next_u64() % 6) {
        let q = WEIGHT_QTYPES[(rng.next_u64() % WEIGHT_QTYPES.len() as u64) as usize];
        let n_dims = 1 + (rng.next_u64() % 4) as usize;
        let mut dims = vec![q.block_size() as u64 * (1 + rng.next_u64() % 3)];
        for _ in 1..n_dims {
            dims.push(1 + rng.next_u64() % 3);
        }
        let n: u64 = dims.iter().product();
        let bytes = (n as usize / q.block_size()) * q.block_bytes();
        let data = (0..bytes).map(|_| rng.next_u64() as u8).collect();
        tensors.push((format!("blk.{i}.{}", rand_string(rng, 4)), q, dims, data));
    }
    Planned {
        meta,
        tensors,
        alignment,
    }
}

fn write_planned(p: &Planned) -> Result<Vec<u8>, GgufError> {
    let mut w = GgufWriter::new(Vec::new());
    if let Some(a) = p.alignment {
        w.set_alignment(a)?;
    }
    for (k, v) in &p.meta {
        w.add_metadata(k, v.clone())?;
    }
    for (name, q, dims, _) in &p.tensors {
        w.add_tensor(name, *q, dims)?;
    }
    let expected_len = w.file_len();
    let mut d = w.begin_data()?;
    for (_, _, _, data) in &p.tensors {
        // Uneven chunks exercise the streaming path.
        let (a, b) = data.split_at(data.len() / 3);
        d.write_tensor_data(a)?;
        d.write_tensor_data(b)?;
    }
    let out = d.finish()?;
    if out.len() as u64 != expected_len {
        return Err(GgufError::Writer(format!(
            "file_len() said {expected_len}, wrote {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Differences between what was planned and what the reader returns (0 = identical).
fn compare(p: &Planned, f: &GgufFile, log: &mut Vec<String>) -> usize {
    let mut bad = 0;
    let mut expected_meta = Vec::new();
    if let Some(a) = p.alignment {
        expected_meta.push(("general.alignment".to_string(), Value::U32(a)));
    }
    expected_meta.extend(p.meta.iter().cloned());
    if f.metadata() != expected_meta.as_slice() {
        bad += 1;
        log.push(format!("metadata differs: {:?}", f.metadata()));
    }
    for (k, v) in &expected_meta {
        if f.get(k) != Some(v) {
            bad += 1;
            log.push(format!("get({k}) differs"));
        }
    }
    let align = p.alignment.unwrap_or(32) as usize;
    if f.tensors().len() != p.tensors.len() {
        bad += 1;
    }
    for (name, q, dims, data) in &p.tensors {
        match f.tensor(name) {
            Some(t) => {
                let info = f.tensor_info(name);
                if t.qtype != *q
                    || t.dims != dims.as_slice()
                    || t.data != data.as_slice()
                    || info.is_none_or(|i| i.start % align != 0)
                {
                    bad += 1;
                    log.push(format!("tensor {name} differs"));
                }
            }
            None => {
                bad += 1;
                log.push(format!("tensor {name} missing"));
            }
        }
    }
    bad
}

#[falsifier("FALSIFY-GGUF-ROUNDTRIP-001")]
fn gguf_writer_reader_round_trip(ctx: &mut Ctx) -> FalsifierResult {
    let mut rng = Rng::new(0x6767_7566);
    let (mut mismatches, mut files) = (0usize, 0usize);
    let mut log = Vec::new();
    let dir = tempfile::tempdir()?;
    for i in 0..300 {
        let p = rand_file(&mut rng);
        let mut bytes = write_planned(&p)?;
        // Every 5th file is read as GGUF version 2 (same layout as 3 for little-endian files).
        if i % 5 == 1 {
            bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        }
        // Every 10th file goes through a real file and the memory map.
        let f = if i % 10 == 0 {
            let path = dir.path().join(format!("{i}.gguf"));
            std::fs::write(&path, &bytes)?;
            GgufFile::open(&path)?
        } else {
            GgufFile::from_bytes(bytes)?
        };
        mismatches += compare(&p, &f, &mut log);
        files += 1;
    }
    ctx.metric("mismatches", mismatches as f64);
    ctx.metric("files_checked", files as f64);
    ctx.note(format!("first differences: {:?}", &log[..log.len().min(5)]));
    Ok(())
}

/// The comparison would see a changed byte, a changed NaN payload and a changed element type.
#[test]
fn round_trip_comparison_can_fail() {
    let mut rng = Rng::new(1);
    let mut p = rand_file(&mut rng);
    while p.tensors.is_empty() {
        p = rand_file(&mut rng);
    }
    let f = GgufFile::from_bytes(write_planned(&p).unwrap()).unwrap();
    assert_eq!(compare(&p, &f, &mut Vec::new()), 0);
    let mut q = Planned {
        meta: p.meta.clone(),
        tensors: p.tensors.clone(),
        alignment: p.alignment,
    };
    q.tensors[0].3[0] ^= 1;
    assert!(compare(&q, &f, &mut Vec::new()) > 0);
    q.tensors[0].3[0] ^= 1;
    q.meta
        .push(("nan".into(), Value::F32(f32::from_bits(0x7fc0_0001))));
    let g = GgufFile::from_bytes(write_planned(&q).unwrap()).unwrap();
    q.meta.last_mut().unwrap().1 = Value::F32(f32::from_bits(0x7fc0_0002));
    assert!(compare(&q, &g, &mut Vec::new()) > 0);
    q.meta.last_mut().unwrap().1 = Value::Array(ValueType::U8, vec![]);
    assert!(compare(&q, &g, &mut Vec::new()) > 0);
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// A small valid file with known offsets: one metadata string, one Q8_0 tensor.
fn base_file() -> Vec<u8> {
    let mut w = GgufWriter::new(Vec::new());
    w.add_metadata("general.name", Value::String("base".into()))
        .unwrap();
    w.add_tensor("w", QType::Q8_0, &[32, 2]).unwrap();
    let mut d = w.begin_data().unwrap();
    d.write_tensor_data(&[1u8; 68]).unwrap();
    d.finish().unwrap()
}

// Byte offsets in base_file(): magic 0, version 4, n_tensors 8, n_kv 16, key len 24, key 32
// ("general.name", 12 bytes), value type 44, string len 48, "base" 56, tensor name len 60,
// name 68 ("w"), n_dims 69, dims 73 and 81, type 89, offset 93, header end 101, data 128.
const OFF_NKV: usize = 16;
const OFF_VTYPE: usize = 44;
const OFF_SLEN: usize = 48;
const OFF_NDIMS: usize = 69;
const OFF_DIM0: usize = 73;
const OFF_DIM1: usize = 81;
const OFF_TTYPE: usize = 89;
const OFF_TOFF: usize = 93;

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// (case name, file bytes, words its error message must contain)
fn hostile_cases() -> Vec<(String, Vec<u8>, Vec<&'static str>)> {
    let base = base_file();
    let mut cases: Vec<(String, Vec<u8>, Vec<&'static str>)> = Vec::new();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = base.clone();
        f(&mut b);
        b
    };
    cases.push(("empty file".into(), vec![], vec!["magic"]));
    for cut in 1..101 {
        let words = if cut < 4 {
            vec!["magic"]
        } else {
            vec!["truncated"]
        };
        cases.push((format!("truncated at {cut}"), base[..cut].to_vec(), words));
    }
    cases.push((
        "truncated in data".into(),
        base[..base.len() - 1].to_vec(),
        vec!["`w`", "past the end"],
    ));
    cases.push(("bad magic".into(), with(&|b| b[0] = b'X'), vec!["magic"]));
    for v in [0u32, 1, 4, u32::MAX] {
        cases.push((
            format!("version {v}"),
            with(&|b| put_u32(b, 4, v)),
            vec!["version"],
        ));
    }
    cases.push((
        "string length past the end".into(),
        with(&|b| put_u64(b, OFF_SLEN, 1 << 40)),
        vec!["general.name", "length", "truncated or corrupt"],
    ));
    cases.push((
        "metadata count 2^63".into(),
        with(&|b| put_u64(b, OFF_NKV, 1 << 63)),
        vec!["metadata", "count"],
    ));
    cases.push((
        "value type 13".into(),
        with(&|b| put_u32(b, OFF_VTYPE, 13)),
        vec!["general.name", "value type 13"],
    ));
    cases.push((
        "invalid UTF-8 in a value".into(),
        with(&|b| b[56] = 0xff),
        vec!["general.name", "UTF-8"],
    ));
    cases.push((
        "invalid UTF-8 in a tensor name".into(),
        with(&|b| b[68] = 0xc3),
        vec!["UTF-8"],
    ));
    cases.push((
        "5 dims".into(),
        with(&|b| put_u32(b, OFF_NDIMS, 5)),
        vec!["`w`", "5 dimensions"],
    ));
    cases.push((
        "dims overflow".into(),
        with(&|b| {
            put_u64(b, OFF_DIM0, 1 << 40);
            put_u64(b, OFF_DIM1, 1 << 40);
        }),
        vec!["`w`", "overflow"],
    ));
    cases.push((
        "unknown qtype 99".into(),
        with(&|b| put_u32(b, OFF_TTYPE, 99)),
        vec!["`w`", "ggml type 99"],
    ));
    cases.push((
        "unsupported ggml type Q4_1".into(),
        with(&|b| put_u32(b, OFF_TTYPE, 3)),
        vec!["`w`", "Q4_1"],
    ));
    cases.push((
        "row not a multiple of the block".into(),
        with(&|b| put_u64(b, OFF_DIM0, 33)),
        vec!["`w`", "multiple of", "block"],
    ));
    cases.push((
        "offset not aligned".into(),
        with(&|b| put_u64(b, OFF_TOFF, 4)),
        vec!["`w`", "alignment"],
    ));
    cases.push((
        "data past the end".into(),
        with(&|b| put_u64(b, OFF_TOFF, 1 << 20)),
        vec!["`w`", "past the end"],
    ));
    cases.push((
        "offset near u64::MAX".into(),
        with(&|b| put_u64(b, OFF_TOFF, u64::MAX - 31)),
        vec!["`w`", "past the end"],
    ));
    // Files built with the writer's helpers, then damaged.
    let build = |meta: Vec<(&str, Value)>, tensors: Vec<(&str, QType, Vec<u64>)>| {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        let mut w = GgufWriter::new(Vec::new());
        for (k, v) in &meta {
            // The writer refuses duplicates, so encode through a single-key writer per entry.
            let mut one = GgufWriter::new(Vec::new());
            one.add_metadata(k, v.clone()).unwrap();
            let b = one.begin_data().unwrap().finish().unwrap();
            // Strip the 24-byte preamble and the padding: the entry starts at 24.
            let entry_len = 8 + k.len() + 4 + value_len(v);
            h.extend_from_slice(&b[24..24 + entry_len]);
        }
        for (name, q, dims) in &tensors {
            w.add_tensor(name, *q, dims).ok();
            h.extend_from_slice(&(name.len() as u64).to_le_bytes());
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&q.ggml_id().to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
        }
        h.resize(h.len().div_ceil(32) * 32 + 1024, 0);
        h
    };
    cases.push((
        "duplicate key".into(),
        build(vec![("a", Value::U8(1)), ("a", Value::U8(2))], vec![]),
        vec!["`a`", "twice"],
    ));
    cases.push((
        "duplicate tensor".into(),
        build(
            vec![],
            vec![("t", QType::F32, vec![4]), ("t", QType::F32, vec![4])],
        ),
        vec!["`t`", "twice"],
    ));
    cases.push((
        "zero alignment".into(),
        build(vec![("general.alignment", Value::U32(0))], vec![]),
        vec!["general.alignment", "power of two"],
    ));
    cases.push((
        "alignment 48".into(),
        build(vec![("general.alignment", Value::U32(48))], vec![]),
        vec!["general.alignment", "power of two"],
    ));
    cases.push((
        "alignment as a string".into(),
        build(
            vec![("general.alignment", Value::String("32".into()))],
            vec![],
        ),
        vec!["general.alignment"],
    ));
    let mut deep = Value::U8(1);
    for _ in 0..12 {
        deep = Value::Array(deep.value_type(), vec![deep]);
    }
    cases.push((
        "arrays nested 12 deep".into(),
        nested_raw("deep", 12),
        vec!["`deep`", "nested deeper"],
    ));
    cases.push((
        "bool byte 2".into(),
        {
            let mut b = build(vec![("flag", Value::Bool(true))], vec![]);
            // entry: key len 8 + "flag" 4 + type 4, then the bool byte.
            b[24 + 16] = 2;
            b
        },
        vec!["`flag`", "bool"],
    ));
    cases.push((
        "array count 2^63".into(),
        {
            let mut b = build(
                vec![("arr", Value::Array(ValueType::U32, vec![Value::U32(1)]))],
                vec![],
            );
            // entry: key len 8 + "arr" 3 + type 4 + element type 4, then the count.
            put_u64(&mut b, 24 + 19, 1 << 63);
            b
        },
        vec!["`arr`", "count"],
    ));
    cases
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::String(s) => 8 + s.len(),
        Value::Array(_, items) => 12 + items.iter().map(value_len).sum::<usize>(),
        other => other.value_type().min_encoded_len(),
    }
}

/// A file whose one key holds arrays nested `depth` levels (the writer refuses to write it).
fn nested_raw(key: &str, depth: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&(key.len() as u64).to_le_bytes());
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(&9u32.to_le_bytes());
    for level in 0..depth {
        let elem = if level + 1 == depth { 0u32 } else { 9 };
        h.extend_from_slice(&elem.to_le_bytes());
        h.extend_from_slice(&1u64.to_le_bytes());
    }
    h.push(7);
    h.resize(h.len() + 64, 0);
    h
}

struct HostileOutcome {
    panics: usize,
    accepted: usize,
    unclear: usize,
    failures: Vec<String>,
}

fn run_hostile(cases: &[(String, Vec<u8>, Vec<&'static str>)]) -> HostileOutcome {
    let mut o = HostileOutcome {
        panics: 0,
        accepted: 0,
        unclear: 0,
        failures: Vec::new(),
    };
    for (name, bytes, words) in cases {
        let r = catch_unwind(AssertUnwindSafe(|| GgufFile::from_bytes(bytes.clone())));
        match r {
            Err(_) => {
                o.panics += 1;
                o.failures.push(format!("{name}: panicked"));
            }
            Ok(Ok(_)) => {
                o.accepted += 1;
                o.failures.push(format!("{name}: accepted"));
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                if let Some(w) = words.iter().find(|w| !msg.contains(*w)) {
                    o.unclear += 1;
                    o.failures
                        .push(format!("{name}: message {msg:?} lacks {w:?}"));
                }
            }
        }
    }
    o
}

#[falsifier("FALSIFY-GGUF-HOSTILE-001")]
fn gguf_hostile_files_rejected_clearly(ctx: &mut Ctx) -> FalsifierResult {
    GgufFile::from_bytes(base_file())
        .context("the base file of the hostile cases must be valid")?;
    let cases = hostile_cases();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let o = run_hostile(&cases);
    std::panic::set_hook(prev);
    ctx.metric("panics", o.panics as f64);
    ctx.metric("accepted_hostile_files", o.accepted as f64);
    ctx.metric("unclear_errors", o.unclear as f64);
    ctx.note(format!(
        "{} hostile files; failures: {:?}",
        cases.len(),
        o.failures
    ));
    Ok(())
}

/// The hostile runner counts an accepted file and a message lacking its words.
#[test]
fn hostile_runner_can_fail() {
    let o = run_hostile(&[
        ("valid".into(), base_file(), vec![]),
        ("bad magic".into(), b"XXXX".to_vec(), vec!["no such words"]),
    ]);
    assert_eq!((o.accepted, o.unclear, o.panics), (1, 1, 0));
}

// ---------------------------------------------------------------------------------------------
// Mutation fuzzing (the same property as fuzz/fuzz_targets/gguf_reader.rs, without libFuzzer)

/// Opens `bytes`; on success checks every view: inside the file, and of the implied length.
/// Returns the number of invalid views.
pub fn check_reader_on(bytes: Vec<u8>) -> usize {
    let len = bytes.len();
    let Ok(f) = GgufFile::from_bytes(bytes) else {
        return 0;
    };
    let base = f.bytes().as_ptr() as usize;
    let mut bad = 0;
    for t in f.tensor_views() {
        let n: u64 = t.dims.iter().product();
        let want = n as usize / t.qtype.block_size() * t.qtype.block_bytes();
        let start = t.data.as_ptr() as usize - base;
        if t.data.len() != want || start + t.data.len() > len {
            bad += 1;
        }
    }
    bad
}

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    let edits = 1 + rng.next_u64() % 4;
    for _ in 0..edits {
        let len = b.len().max(1);
        let at = (rng.next_u64() % len as u64) as usize;
        // Header bytes matter most: bias positions towards the first 160 bytes.
        let at = if rng.next_u64() % 4 != 0 {
            at % 160.min(len)
        } else {
            at
        };
        match rng.next_u64() % 6 {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << (rng.next_u64() % 8);
            }
            1 if !b.is_empty() => {
                const BOUNDARY: [u8; 4] = [0, 0xff, 0x7f, 0x80];
                let i = at.min(b.len() - 1);
                b[i] = BOUNDARY[(rng.next_u64() % 4) as usize];
            }
            2 => b.truncate(at),
            3 => {
                let n = (rng.next_u64() % 9) as usize;
                for _ in 0..n {
                    b.insert(at.min(b.len()), rng.next_u64() as u8);
                }
            }
            4 if b.len() > 8 => {
                // Copy an 8-byte span over another (moves plausible lengths around).
                let from = (rng.next_u64() % (b.len() as u64 - 8)) as usize;
                let to = at.min(b.len() - 8);
                let span: Vec<u8> = b[from..from + 8].to_vec();
                b[to..to + 8].copy_from_slice(&span);
            }
            _ => {
                if !b.is_empty() {
                    let i = at.min(b.len() - 1);
                    b[i] = rng.next_u64() as u8;
                }
            }
        }
    }
    b
}

/// Seed files for mutation: the base file, random round-trip files, a nested-array file.
pub fn seed_files() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(77);
    let mut seeds = vec![base_file()];
    while seeds.len() < 8 {
        let p = rand_file(&mut rng);
        if let Ok(b) = write_planned(&p) {
            if b.len() < 8192 {
                seeds.push(b);
            }
        }
    }
    seeds
}

#[falsifier("FALSIFY-GGUF-FUZZ-001")]
fn gguf_reader_survives_mutations(ctx: &mut Ctx) -> FalsifierResult {
    let seeds = seed_files();
    let mut rng = Rng::new(0xF022);
    let (mut panics, mut invalid, mut accepted) = (0usize, 0usize, 0usize);
    let mut first: Option<String> = None;
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let runs = 30_000;
    for i in 0..runs {
        let seed = &seeds[i % seeds.len()];
        let m = mutate(&mut rng, seed);
        accepted += GgufFile::from_bytes(m.clone()).is_ok() as usize;
        match catch_unwind(AssertUnwindSafe(|| check_reader_on(m))) {
            Ok(0) => {}
            Ok(n) => {
                invalid += n;
                first.get_or_insert(format!("iteration {i}: {n} invalid views"));
            }
            Err(_) => {
                panics += 1;
                first.get_or_insert(format!("iteration {i}: panic"));
            }
        }
    }
    std::panic::set_hook(prev);
    ctx.metric("panics", panics as f64);
    ctx.metric("invalid_views", invalid as f64);
    ctx.metric("mutations_run", runs as f64);
    ctx.note(format!(
        "seed 0xF022, {} seed files; {accepted} mutated files were still valid; first failure: {}",
        seeds.len(),
        first.as_deref().unwrap_or("none")
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// gguf-py in both directions

fn oracle(py: &Path, args: &[&str]) -> Result<String, FalsifierError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oracles/gguf_py_oracle.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .context("running gguf_py_oracle.py")?;
    if !out.status.success() {
        return Err(FalsifierError::msg(format!(
            "gguf_py_oracle.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).context("oracle output is not UTF-8")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn scalar_hex(v: &Value) -> Option<serde_json::Value> {
    Some(serde_json::Value::String(match v {
        Value::U8(x) => hex(&x.to_le_bytes()),
        Value::I8(x) => hex(&x.to_le_bytes()),
        Value::U16(x) => hex(&x.to_le_bytes()),
        Value::I16(x) => hex(&x.to_le_bytes()),
        Value::U32(x) => hex(&x.to_le_bytes()),
        Value::I32(x) => hex(&x.to_le_bytes()),
        Value::F32(x) => hex(&x.to_le_bytes()),
        Value::Bool(x) => hex(&[*x as u8]),
        Value::U64(x) => hex(&x.to_le_bytes()),
        Value::I64(x) => hex(&x.to_le_bytes()),
        Value::F64(x) => hex(&x.to_le_bytes()),
        Value::String(s) => s.clone(),
        Value::Array(..) => return None,
    }))
}

/// Our reader's view of a file in the oracle's JSON form.
fn our_json(f: &GgufFile) -> serde_json::Value {
    let meta: Vec<serde_json::Value> = f
        .metadata()
        .iter()
        .map(|(k, v)| {
            let (sub, values) = match v {
                Value::Array(t, items) => (
                    serde_json::json!(t.id()),
                    items.iter().filter_map(scalar_hex).collect::<Vec<_>>(),
                ),
                other => (serde_json::Value::Null, scalar_hex(other).into_iter().collect()),
            };
            serde_json::json!({"key": k, "type": v.value_type().id(), "sub_type": sub, "values": values})
        })
        .collect();
    let tensors: Vec<serde_json::Value> = f
        .tensor_views()
        .map(|t| {
            serde_json::json!({"name": t.name, "type": t.qtype.ggml_id(), "shape": t.dims, "data": hex(t.data)})
        })
        .collect();
    serde_json::json!({"metadata": meta, "tensors": tensors})
}

/// Differences between two JSON descriptions, entry by entry.
fn json_mismatches(a: &serde_json::Value, b: &serde_json::Value, log: &mut Vec<String>) -> usize {
    let mut bad = 0;
    for part in ["metadata", "tensors"] {
        let (x, y) = (
            a[part].as_array().cloned().unwrap_or_default(),
            b[part].as_array().cloned().unwrap_or_default(),
        );
        if x.len() != y.len() {
            bad += 1;
            log.push(format!("{part}: {} vs {} entries", x.len(), y.len()));
        }
        for (p, q) in x.iter().zip(&y) {
            if p != q {
                bad += 1;
                log.push(format!("{p} vs {q}").chars().take(400).collect());
            }
        }
    }
    bad
}

#[falsifier("FALSIFY-GGUF-GGUFPY-001")]
fn gguf_agrees_with_gguf_py(ctx: &mut Ctx) -> FalsifierResult {
    let py = std::path::PathBuf::from(ctx.fixture("python-oracle")?);
    let dir = tempfile::tempdir()?;
    let mut log = Vec::new();
    // 1. Our writer -> gguf-py's reader.
    let ours = dir.path().join("ours.gguf");
    let mut w = GgufWriter::create(&ours)?;
    let mut rng = Rng::new(11);
    for (i, t) in SCALARS.iter().enumerate() {
        w.add_metadata(&format!("s.{i}.{t}"), rand_scalar(&mut rng, *t))?;
        let items = (0..3).map(|_| rand_scalar(&mut rng, *t)).collect();
        w.add_metadata(&format!("a.{i}.{t}"), Value::Array(*t, items))?;
    }
    let qts = [QType::F32, QType::F16, QType::Q8_0, QType::Q4K, QType::Q6K];
    let mut datas = Vec::new();
    for (i, q) in qts.iter().enumerate() {
        let dims = [q.block_size() as u64 * 2, 3];
        w.add_tensor(&format!("t{i}"), *q, &dims)?;
        let n = 6 * q.block_bytes();
        datas.push((0..n).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>());
    }
    let mut d = w.begin_data()?;
    for data in &datas {
        d.write_tensor_data(data)?;
    }
    d.finish()?;
    let theirs: serde_json::Value =
        serde_json::from_str(&oracle(&py, &["read", &ours.to_string_lossy()])?)?;
    let mine = our_json(&GgufFile::open(&ours)?);
    let m1 = json_mismatches(&mine, &theirs, &mut log);
    // 2. gguf-py's writer -> our reader.
    let pyfile = dir.path().join("gguf_py.gguf");
    let written: serde_json::Value =
        serde_json::from_str(&oracle(&py, &["write", &pyfile.to_string_lossy()])?)?;
    let read = our_json(&GgufFile::open(&pyfile)?);
    let m2 = json_mismatches(&read, &written, &mut log);
    ctx.metric("mismatches", (m1 + m2) as f64);
    ctx.note(format!(
        "our file: {} keys, {} tensors, {m1} mismatches; gguf-py's file: {m2} mismatches; first: {:?}",
        mine["metadata"].as_array().map_or(0, |a| a.len()),
        mine["tensors"].as_array().map_or(0, |a| a.len()),
        &log[..log.len().min(3)]
    ));
    Ok(())
}

/// The JSON comparison sees a single changed hex digit.
#[test]
fn gguf_py_comparison_can_fail() {
    let f = GgufFile::from_bytes(base_file()).unwrap();
    let a = our_json(&f);
    let mut b = a.clone();
    assert_eq!(json_mismatches(&a, &b, &mut Vec::new()), 0);
    b["tensors"][0]["data"] = serde_json::json!("00");
    assert_eq!(json_mismatches(&a, &b, &mut Vec::new()), 1);
}

/// Writes the mutation seeds as the committed cargo-fuzz corpus (fuzz/corpus/gguf_reader).
/// Run by hand when the seed files change: `cargo test -p falsifiers --test gguf -- --ignored
/// write_fuzz_corpus`.
#[test]
#[ignore = "writes files into fuzz/corpus; run by hand"]
fn write_fuzz_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/gguf_reader");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, b) in seed_files().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), b).unwrap();
    }
    std::fs::write(dir.join("nested-arrays"), nested_raw("deep", 3)).unwrap();
}

/// Writer throughput (not a falsifier: numbers for the report): 64 tensors of 32 MiB each
/// streamed in 4 MiB chunks into a temporary file, with fsync. The writer copies nothing
/// beyond its BufWriter, so on this VM the figure is the disk's. `cargo test -p falsifiers --test gguf -- --ignored
/// --nocapture writer_throughput`.
#[test]
#[ignore = "benchmark; writes 2 GiB"]
fn writer_throughput() {
    fn stream<W: std::io::Write>(w: GgufWriter<W>) -> (W, u64) {
        let mut w = w;
        for i in 0..64 {
            let rows = (32usize << 20) / QType::Q4K.block_bytes() * 256 / 4096;
            w.add_tensor(&format!("t{i}"), QType::Q4K, &[4096, rows as u64])
                .unwrap();
        }
        let total = w.file_len();
        let mut d = w.begin_data().unwrap();
        let chunk = vec![0x55u8; 4 << 20];
        while let Some((_, _, _, left)) = d.next_tensor() {
            let n = (left as usize).min(chunk.len());
            d.write_tensor_data(&chunk[..n]).unwrap();
        }
        (d.finish().unwrap(), total)
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    let t = std::time::Instant::now();
    let (f, total) = stream(GgufWriter::create(&path).unwrap());
    f.into_inner().unwrap().sync_all().unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "file: {:.2} GB in {s:.2} s: {:.2} GB/s (including fsync)",
        total as f64 / 1e9,
        total as f64 / 1e9 / s
    );
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.file_len() as u64, total);
}
