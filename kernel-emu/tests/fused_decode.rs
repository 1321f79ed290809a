//! decode.cu's kernels of 2026-12-02 (fifth session) against the CPU dequantizer in float64:
//! matvec3n (the attention RMSNorm fused into the q/k/v launch, v of another qtype in the same
//! grid) and matvec4 (four rows per warp, the output head). Their sums run in another order
//! than kernels.cu's, so the check is against the reference with an error bound, not bit
//! equality.

use engine::cuda::GpuQType;
use kernel_emu::testdata::{
    activations, device, random_matrix, rmsnorm_f64, weights, QkvCase, Reference, Rng, ALL_QTYPES,
};
use kernel_emu::{matvec3n, matvec4};

/// The (q/k, v) qtype pairs the engine instantiates, as the synthetic files hold them.
const PAIRS: [(GpuQType, GpuQType); 13] = [
    (GpuQType::Q4K, GpuQType::Q4K),
    (GpuQType::Q4K, GpuQType::Q6K),
    (GpuQType::Q4K, GpuQType::Q5K),
    (GpuQType::Q5K, GpuQType::Q6K),
    (GpuQType::Q6K, GpuQType::Q8_0),
    (GpuQType::Q8_0, GpuQType::F16),
    (GpuQType::F16, GpuQType::F32),
    (GpuQType::F32, GpuQType::Q4K),
    (GpuQType::Q6K, GpuQType::Q6K),
    (GpuQType::Q5K, GpuQType::Q5K),
    (GpuQType::Q8_0, GpuQType::Q8_0),
    (GpuQType::F16, GpuQType::F16),
    (GpuQType::F32, GpuQType::F32),
];

#[test]
fn fused_norm_qkv_matches_the_cpu_dequantizer() {
    // 38 + 10 q/k rows (even, as the mixed-qtype grid needs; 19 two-row warps, so the last
    // block is partial) and 7 v rows (one per warp when v's qtype differs)
    let (rows, k, eps) = ([38usize, 10, 7], 512usize, 1e-6f32);
    for (i, (qt, vt)) in PAIRS.into_iter().enumerate() {
        let mut rng = Rng(300 + i as u64);
        let c = QkvCase::new([qt, qt, vt], rows, k, &mut rng);
        let (x, nw) = (&c.x, &c.nw);
        let (h, y) = matvec3n(c.weights(), x, nw, eps).expect("geometry");
        // the norm in float64
        for (i, (&got, &want)) in h.iter().zip(&rmsnorm_f64(x, nw, eps as f64)).enumerate() {
            assert!(
                (got as f64 - want).abs() <= 1e-6 * want.abs().max(1e-30),
                "{} / {}: h[{i}] {got} against {want}",
                qt.name(),
                vt.name()
            );
        }
        for (j, yj) in y.iter().enumerate() {
            let rf = c.reference(j).expect("reference");
            for (r, &got) in yj.iter().enumerate() {
                let (want, mag) = rf.dot(0, r, &h);
                let e = (got as f64 - want).abs() / mag.max(1e-30);
                assert!(
                    e <= 1e-5,
                    "{} / {} matrix {j} row {r}: {e:.3e} of sum |w h|",
                    qt.name(),
                    vt.name()
                );
            }
        }
    }
}

#[test]
fn fused_norm_qkv_refuses_what_the_engine_does_not_instantiate() {
    let mut rng = Rng(1);
    let f = random_matrix(GpuQType::Q8_0, 4, 64, &mut rng);
    let d = device(GpuQType::Q8_0, &f);
    let w = weights(GpuQType::Q8_0, &d, 4, 64, 1);
    let v = weights(GpuQType::Q8_0, &d, 4, 64, 1);
    let x = vec![1.0f32; 64];
    // q8_0 with a q8_0 v is instantiated; f16 with a q8_0 v (another pair) is not
    assert!(matvec3n([w, w, v], &x, &x, 1e-6).is_ok());
    let f16m = random_matrix(GpuQType::F16, 4, 64, &mut rng);
    let d16 = device(GpuQType::F16, &f16m);
    let v16 = weights(GpuQType::F16, &d16, 4, 64, 1);
    assert!(matvec3n([v16, v16, w], &x, &x, 1e-6).is_err());
}

#[test]
fn four_rows_per_warp_matches_the_cpu_dequantizer() {
    // 45 rows: a last warp with one row, a last block with three warps
    let (rows, k) = (45usize, 768usize);
    for (i, qt) in ALL_QTYPES.into_iter().enumerate() {
        let mut rng = Rng(70 + i as u64);
        let file = random_matrix(qt, rows, k, &mut rng);
        let dev = device(qt, &file);
        let x = activations(1, k, &mut rng);
        let y = matvec4(weights(qt, &dev, rows, k, 1), &x).expect("geometry");
        let rf = Reference::new(qt, &file, 1, rows, k).expect("reference");
        for (r, &got) in y.iter().enumerate() {
            let (want, mag) = rf.dot(0, r, &x);
            let e = (got as f64 - want).abs() / mag.max(1e-30);
            assert!(e <= 1e-5, "{} row {r}: {e:.3e} of sum |w x|", qt.name());
        }
    }
}
