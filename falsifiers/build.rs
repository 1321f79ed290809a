//! The registry, the one-test-per-falsifier check and the property-test strategies: pv-build.
fn main() {
    pv_build::generate()
}
