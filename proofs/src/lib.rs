//! Proof harnesses for small pure functions of the engine, and the specifications they check.
//!
//! Each `#[kani::proof]` harness is compiled only under `cfg(kani)` (set by `cargo kani`), so
//! ordinary builds ignore it. **Kani is not installed on the machines this repository is
//! developed and tested on: no harness here has been run or even compiled by Kani.** They are
//! written to be checked by `cargo kani -p proofs` where Kani exists; until then `pv coverage`
//! counts an obligation they discharge only as "by harness" (the weaker kind), never as
//! evidence, and `pv status` derives nothing from them.
//!
//! So that the properties are checked somewhere today, every harness has a twin `#[test]` in
//! the same module that runs the same assertions over the same function exhaustively (where the
//! input space is small) or over a large deterministic sample; `cargo test -p proofs` runs them
//! in CI. The specifications (`spec_*`, `pack_*`) are written from the format's description,
//! not copied from the engine, so that a harness compares two independent statements.
//!
//! - [`quant`]: Q4_K/Q5_K 6-bit scale unpacking (`get_scale_min_k4`), row byte arithmetic.
//! - [`gguf`]: the reader's tensor offset, size and bounds arithmetic.

pub mod gguf;
pub mod quant;
