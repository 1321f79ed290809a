//! Harness for the GGUF reader's layout arithmetic (PO-GGUF-ALIGN-001 in
//! contracts/gguf-format-v1.yaml): for any tensor offset, dimensions and type in a header, the
//! reader either rejects the file or returns a byte range that is where the layout equation
//! puts it, aligned, of the equation's size and inside the file.

#[cfg(any(kani, test))]
use engine::gguf::{GgufFile, DEFAULT_ALIGNMENT};
#[cfg(any(kani, test))]
use engine::quant::QType;

/// Bytes of tensor data after the header's padding in the files the harness builds.
pub const DATA_LEN: usize = 320;

/// A GGUF v3 file with no metadata and one tensor `t` of `dims` (GGUF order) and ggml type
/// `type_id` at `offset`, followed by `DATA_LEN` zero bytes after the default alignment padding.
pub fn one_tensor_file(dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes()); // tensors
    h.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    h.extend_from_slice(&1u64.to_le_bytes()); // name length
    h.push(b't');
    h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        h.extend_from_slice(&d.to_le_bytes());
    }
    h.extend_from_slice(&type_id.to_le_bytes());
    h.extend_from_slice(&offset.to_le_bytes());
    let padded = h.len().div_ceil(32) * 32;
    h.resize(padded + DATA_LEN, 0);
    h
}

/// The property: rejected, or placed exactly as EQ-GGUF-LAYOUT says. Returns whether the file
/// was accepted (so tests can check that both branches are exercised).
#[cfg(any(kani, test))]
pub fn layout_holds(dims: &[u64], type_id: u32, offset: u64) -> Result<bool, String> {
    let bytes = one_tensor_file(dims, type_id, offset);
    let len = bytes.len() as u64;
    let Ok(f) = GgufFile::from_bytes(bytes) else {
        return Ok(false);
    };
    let t = &f.tensors()[0];
    let a = f.alignment();
    let q = QType::from_ggml_id(type_id).ok_or("accepted an unknown type")?;
    let n: u128 = dims.iter().map(|&d| d as u128).product();
    let (bs, bb) = (q.block_size() as u128, q.block_bytes() as u128);
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    check(a == DEFAULT_ALIGNMENT, "alignment is the default")?;
    check((f.data_start() as u64) % a == 0, "data_start is aligned")?;
    check(f.data_start() >= f.header_len(), "data after the header")?;
    check(
        t.offset == offset && offset % a == 0,
        "offset as stored and aligned",
    )?;
    check(
        t.start as u128 == f.data_start() as u128 + offset as u128,
        "start = data_start + offset",
    )?;
    check(dims[0] as u128 % bs == 0, "row is whole blocks")?;
    check(t.n_bytes as u128 == n / bs * bb, "n_bytes = n / B * S")?;
    check(
        t.start as u128 + t.n_bytes as u128 <= len as u128,
        "range inside the file",
    )?;
    Ok(true)
}

/// For any offset, two dimensions and any type id, the reader rejects the file or places the
/// tensor as the layout equation says, without overflow.
#[cfg(kani)]
#[kani::proof]
#[kani::unwind(400)]
pub fn tensor_range_checked() {
    let d0: u64 = kani::any();
    let d1: u64 = kani::any();
    let type_id: u32 = kani::any();
    let offset: u64 = kani::any();
    assert!(layout_holds(&[d0, d1], type_id, offset).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so the sample is the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Twin of `tensor_range_checked`: every supported and some unsupported type ids, against
    /// offsets and dimensions around every boundary the arithmetic has (0, the alignment, the
    /// data length, block multiples, the i64 element limit, overflow of the byte size and of
    /// start + size), plus 200,000 random draws.
    #[test]
    fn tensor_range_checked_sampled() {
        let ids: Vec<u32> = QType::ALL
            .iter()
            .map(|q| q.ggml_id())
            .chain([3, 16, 39, 1000, u32::MAX])
            .collect();
        let mut edges = vec![0u64, 1, 2, 31, 32, 33, 64, 256, 288, 320, 512, 4096];
        edges.extend([
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX,
            u64::MAX - 31,
        ]);
        edges.extend([u64::MAX / 144 * 2, u64::MAX / 2, 1 << 32, (1 << 32) - 32]);
        let (mut accepted, mut rejected) = (0u32, 0u32);
        for &id in &ids {
            for &d0 in &edges {
                for &d1 in &[0u64, 1, 2, 3, u64::MAX, 1 << 40] {
                    for &off in &edges {
                        match layout_holds(&[d0, d1], id, off) {
                            Ok(true) => accepted += 1,
                            Ok(false) => rejected += 1,
                            Err(e) => panic!("dims [{d0}, {d1}] type {id} offset {off}: {e}"),
                        }
                    }
                }
            }
        }
        let mut rng = Rng(0x5eed_6775_f00d);
        for _ in 0..200_000 {
            let id = ids[(rng.next() % ids.len() as u64) as usize];
            // Mostly small values, so that acceptance is common; sometimes anything at all.
            let draw = |r: &mut Rng| match r.next() % 4 {
                0 => r.next(),
                _ => r.next() % 600,
            };
            let (d0, d1, off) = (draw(&mut rng), draw(&mut rng), draw(&mut rng) & !31);
            match layout_holds(&[d0, d1], id, off) {
                Ok(true) => accepted += 1,
                Ok(false) => rejected += 1,
                Err(e) => panic!("dims [{d0}, {d1}] type {id} offset {off}: {e}"),
            }
        }
        // Both branches must be exercised, or the property was checked on nothing.
        assert!(
            accepted > 1000 && rejected > 1000,
            "{accepted} accepted, {rejected} rejected"
        );
    }
}
