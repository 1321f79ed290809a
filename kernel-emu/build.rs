// Compiles CUDA C kernels as C++ for the SIMT emulator (simt.h): engine/src/cuda/mmq.cu,
// attn_prefill.cu, decode.cu and decode_q16.cu as they are, and kernels.cu after a textual replacement of its few inline-PTX helpers by the emulator's
// (below). The replacements are exact strings with an expected count:
// if kernels.cu changes one of them, this build fails and names it, rather than emulate
// something else.
use std::path::PathBuf;

const KERNELS_CU: &str = "../engine/src/cuda/kernels.cu";

/// (exact text in kernels.cu, replacement, occurrences)
const REPLACE: &[(&str, &str, usize)] = &[
    // <cmath> defines INFINITY
    ("#define INFINITY __int_as_float(0x7f800000)", "", 1),
    (
        "asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));",
        "f = emu_h2f(h);",
        1,
    ),
    (
        "asm volatile(\"griddepcontrol.launch_dependents;\" ::: \"memory\");",
        "",
        1,
    ),
    ("asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");", "", 1),
    (
        "asm volatile(\"prefetch.global.L2 [%0];\" ::\"l\"(p + off));",
        "(void)(p + off);",
        1,
    ),
    (
        "asm volatile(\"prefetch.global.L2 [%0];\" ::\"l\"(row + off));",
        "(void)(row + off);",
        1,
    ),
    (
        "asm(\"{ .reg .f16 lo, hi;\\n cvt.rn.f16.f32 lo, %1;\\n cvt.rn.f16.f32 hi, %2;\\n mov.b32 %0, {lo, hi}; }\"\n        : \"=r\"(r) : \"f\"(a), \"f\"(b));",
        "r = emu_pack_h2(a, b);",
        1,
    ),
    (
        "asm volatile(\n        \"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, \"\n        \"{%0,%1,%2,%3};\\n\"\n        : \"+f\"(c[0]), \"+f\"(c[1]), \"+f\"(c[2]), \"+f\"(c[3])\n        : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1]));",
        "emu_mma16816(c, a, b);",
        1,
    ),
    (
        "asm(\"{ .reg .f16 lo, hi;\\n mov.b32 {lo, hi}, %2;\\n cvt.f32.f16 %0, lo;\\n cvt.f32.f16 %1, hi; }\"\n        : \"=f\"(ah), \"=f\"(bh) : \"r\"(hi));",
        "ah = emu_h2f((u16)(hi & 0xFFFF)); bh = emu_h2f((u16)(hi >> 16));",
        1,
    ),
    (
        "extern __shared__ __align__(16) float sh[];",
        "float* sh = (float*)emu_dyn_smem();",
        1,
    ),
    (
        "extern __shared__ __align__(16) u16 tc_smem[];",
        "u16* tc_smem = (u16*)emu_dyn_smem();",
        1,
    ),
    (
        "extern __shared__ int ids[];",
        "int* ids = (int*)emu_dyn_smem();",
        1,
    ),
    (
        "extern __shared__ int gp_smem[];",
        "int* gp_smem = (int*)emu_dyn_smem();",
        1,
    ),
];

fn main() {
    for f in [
        "src/host.cpp",
        "simt.h",
        "../engine/src/cuda/mmq.cu",
        "../engine/src/cuda/attn_prefill.cu",
        "../engine/src/cuda/decode.cu",
        "../engine/src/cuda/decode_q16.cu",
        KERNELS_CU,
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let mut src = std::fs::read_to_string(KERNELS_CU).expect("reading engine/src/cuda/kernels.cu");
    for (from, to, n) in REPLACE {
        let found = src.matches(from).count();
        assert_eq!(
            found, *n,
            "kernels.cu: expected {n} occurrence(s) of {from:?} for the emulator, found {found}; \
             update kernel-emu/build.rs"
        );
        src = src.replace(from, to);
    }
    assert!(
        !src.contains("asm(") && !src.contains("asm volatile"),
        "kernels.cu has inline PTX the emulator does not replace; add it to kernel-emu/build.rs"
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("kernels_emu.cu"), src).expect("writing kernels_emu.cu");
    println!("cargo:rerun-if-env-changed=PV_EMU_ASAN");
    // PV_EMU_ASAN=1: the kernels under AddressSanitizer, so a read or write past a buffer's end
    // is reported (run the tests with LD_PRELOAD=$(gcc -print-file-name=libasan.so): the Rust
    // test binary itself is not instrumented, so the runtime must be loaded first).
    let asan = std::env::var("PV_EMU_ASAN").is_ok_and(|v| v == "1");
    let mut build = cc::Build::new();
    if asan {
        build
            .flag("-fsanitize=address")
            .flag("-fno-omit-frame-pointer");
        println!("cargo:rustc-link-lib=dylib=asan");
    }
    build
        .cpp(true)
        .file("src/host.cpp")
        .include(&out)
        .std("c++20")
        .opt_level(2)
        .flag("-pthread")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-variable")
        .flag_if_supported("-Wno-sign-compare")
        .compile("kernel_emu");
    println!("cargo:rustc-link-lib=pthread");
}
