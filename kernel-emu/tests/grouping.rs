//! The prefill MoE's expert grouping on the CPU under the SIMT emulator: kernels.cu's
//! group_pairs_w (pairs split over 32 warps, `__match_any_sync` ranks) must give exactly the
//! serial kernel's and the reference's (list, off): pair ids in increasing order per expert.

use kernel_emu::{group_pairs_kernel, testdata::group_pairs, Grouping};

/// t tokens choosing k distinct experts each (a small LCG), as router top-k does.
fn choices(t: usize, k: usize, experts: usize, seed: u64) -> Vec<usize> {
    let mut s = seed;
    let mut ids = Vec::with_capacity(t * k);
    for _ in 0..t {
        let mut row: Vec<usize> = Vec::with_capacity(k);
        while row.len() < k {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = ((s >> 33) as usize) % experts;
            if !row.contains(&e) {
                row.push(e);
            }
        }
        ids.extend(row);
    }
    ids
}

#[test]
fn warp_grouping_equals_the_serial_kernel_and_the_reference() {
    // 512 x 8 = 4096 pairs (the engine's largest chunk), an odd count that leaves warps with
    // partial and empty slices, and a skewed choice where few experts take every pair
    for (t, k, experts, skew) in [
        (512, 8, 128, false),
        (37, 8, 128, false),
        (5, 3, 16, false),
        (300, 4, 128, true),
    ] {
        let mut ids = choices(t, k, experts, 7 + t as u64);
        if skew {
            for e in ids.iter_mut() {
                *e %= 5;
            }
        }
        let want = group_pairs(&ids, experts);
        let ids32: Vec<i32> = ids.iter().map(|&e| e as i32).collect();
        for which in [Grouping::Serial, Grouping::Warps] {
            let got = group_pairs_kernel(which, &ids32, experts).expect("geometry");
            assert_eq!(
                got, want,
                "{which:?}, t {t}, k {k}, {experts} experts, skew {skew}"
            );
        }
    }
}

#[test]
fn bad_ids_are_an_error_not_a_fault() {
    assert!(group_pairs_kernel(Grouping::Warps, &[0, 3, 9], 4).is_err());
    assert!(group_pairs_kernel(Grouping::Warps, &[0], 0).is_err());
}
