// Compiles the staged kernels (staging/cuda/*.cu) as C++ for the SIMT emulator (simt.h).
fn main() {
    for f in [
        "src/host.cpp",
        "simt.h",
        "../cuda/mmq.cu",
        "../cuda/attn_prefill.cu",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new()
        .cpp(true)
        .file("src/host.cpp")
        .std("c++20")
        .opt_level(2)
        .flag("-pthread")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("kernel_emu");
    println!("cargo:rustc-link-lib=pthread");
}
