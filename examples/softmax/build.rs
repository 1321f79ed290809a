// The registry and the one-test-per-falsifier check (two tests bound to one falsifier stop the
// build; a falsifier without a test is a warning).
fn main() {
    pv_build::generate()
}
