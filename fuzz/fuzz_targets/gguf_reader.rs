//! libFuzzer target for engine::gguf's reader: any input must give Ok or Err, never a panic,
//! and every tensor view of an accepted file must lie inside the input with the byte length
//! its qtype and dims imply. The same property runs without libFuzzer (seeded mutations) as
//! FALSIFY-GGUF-FUZZ-001 in falsifiers/tests/gguf.rs.
//!
//!   cargo +nightly fuzz run gguf_reader fuzz/corpus/gguf_reader -- -max_total_time=300

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len();
    if let Ok(f) = engine::gguf::GgufFile::from_bytes(data.to_vec()) {
        let base = f.bytes().as_ptr() as usize;
        for t in f.tensor_views() {
            let n: u64 = t.dims.iter().product();
            let want = n as usize / t.qtype.block_size() * t.qtype.block_bytes();
            assert_eq!(
                t.data.len(),
                want,
                "tensor {} has the wrong byte length",
                t.name
            );
            let start = t.data.as_ptr() as usize - base;
            assert!(
                start + t.data.len() <= len,
                "tensor {} lies outside the file",
                t.name
            );
        }
        // Typed getters must not panic on whatever the file holds.
        for (k, _) in f.metadata() {
            let _ = f.get_u32(k);
            let _ = f.get_f32(k);
            let _ = f.get_str(k);
            let _ = f.get_str_array(k);
            let _ = f.get_i64_array(k);
        }
    }
});
