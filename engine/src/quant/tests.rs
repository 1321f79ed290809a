//! Unit tests of the kernels against each other (the oracle comparisons live in
//! falsifiers/tests/quant.rs).
