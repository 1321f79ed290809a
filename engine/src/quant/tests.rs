//! Unit tests with hand-computed values (the oracle comparisons and the randomized checks live
//! in falsifiers/tests/quant.rs).

use super::blocks::*;
use super::*;

#[test]
fn block_sizes_are_ggmls() {
    // ggml-common.h static_asserts: sizeof(block_q4_0) == 18, q8_0 34, q4_K 144, q5_K 176,
    // q6_K 210, q8_K 292.
    let table: Vec<(QType, usize, usize)> = QType::ALL
        .iter()
        .map(|q| (*q, q.block_size(), q.block_bytes()))
        .collect();
    assert!(table.contains(&(QType::Q4_0, 32, Q4_0Block::BYTES)));
    assert!(table.contains(&(QType::Q8_0, 32, Q8_0Block::BYTES)));
    assert!(table.contains(&(QType::Q4K, 256, Q4KBlock::BYTES)));
    assert!(table.contains(&(QType::Q5K, 256, Q5KBlock::BYTES)));
    assert!(table.contains(&(QType::Q6K, 256, Q6KBlock::BYTES)));
    assert!(table.contains(&(QType::Q8K, 256, Q8KBlock::BYTES)));
    assert_eq!(Q6KBlock::BYTES, 210);
    for q in QType::ALL {
        assert_eq!(QType::from_ggml_id(q.ggml_id()), Some(q));
        assert_eq!(QType::from_name(q.name()), Some(q));
        assert_eq!(ggml_type_name(q.ggml_id()), Some(q.name()));
    }
    assert_eq!(QType::from_ggml_id(3), None); // Q4_1 exists in ggml, not here
}

#[test]
fn f16_conversion_round_trips_and_rounds_to_even() {
    for h in [
        0u16, 0x3c00, 0xbc00, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00,
    ] {
        assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
    }
    assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8); // smallest subnormal, 2^-24
                                                    // 1 + 2^-11 is halfway between 1 and the next f16: ties to even gives 1.
    assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
    assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds up to inf
    assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    assert_eq!(bf16_to_f32(0x3f80), 1.0);
}

#[test]
fn q4_k_handmade_block() {
    // d = 1, dmin = 0.5, sub-block 0: scale 2, min 3; sub-block 5 (j >= 4 packing): scale
    // 0x2a = 42 (low 4 bits in scales[9], high 2 bits in scales[1] >> 6), min 1.
    let mut b = Q4KBlock {
        d: f32_to_f16(1.0),
        dmin: f32_to_f16(0.5),
        scales: [0; 12],
        qs: [0x55; 128],
    };
    b.scales[0] = 2;
    b.scales[4] = 3;
    b.scales[9] = 0x1a; // scale low bits 0xa, min low bits 0x1
    b.scales[1] = 0x80; // scale high bits 0b10 -> 0x20
    assert_eq!(b.scale_min(5), (0x2a, 1));
    let mut y = vec![0.0f32; 256];
    dequantize_row(QType::Q4K, &b.to_bytes(), &mut y).unwrap();
    assert_eq!(y[0], 2.0 * 5.0 - 1.5);
    assert_eq!(y[31], 8.5);
    // Sub-block 1 (values 32..64) has scale scales[1] & 63 = 0, min scales[5] & 63 = 0.
    assert_eq!(y[32], 0.0);
    // Sub-block 5 = values 160..192: 42 * 5 - 0.5 * 1.
    assert_eq!(y[160], 209.5);
    assert_eq!(Q4KBlock::parse(&b.to_bytes()), b);
}

#[test]
fn q6_k_and_q4_0_handmade_blocks() {
    let mut b = Q6KBlock {
        ql: [0; 128],
        qh: [0; 64],
        scales: [0; 16],
        d: f32_to_f16(0.5),
    };
    b.scales[0] = -2;
    b.ql[0] = 0x07; // value 0: low 4 bits 7, high bits 0 -> 7 - 32 = -25
    b.qh[0] = 0x01; // value 0: high bits 01 -> 7 + 16 - 32 = -9
    let mut y = vec![0.0f32; 256];
    dequantize_row(QType::Q6K, &b.to_bytes(), &mut y).unwrap();
    assert_eq!(y[0], 0.5 * -2.0 * -9.0);
    let q = Q4_0Block {
        d: f32_to_f16(2.0),
        qs: [0xf0; 16],
    };
    let mut y = vec![0.0f32; 32];
    dequantize_row(QType::Q4_0, &q.to_bytes(), &mut y).unwrap();
    assert_eq!((y[0], y[16]), (2.0 * -8.0, 2.0 * 7.0));
}

#[test]
fn q8_k_quantization_maps_the_signed_extreme_to_minus_127() {
    let mut x = vec![0.25f32; 256];
    x[7] = -2.0;
    let mut a = Q8KActs::default();
    quantize_row_q8_k(&x, &mut a).unwrap();
    assert_eq!(a.qs[7], -127);
    // iscale = -127 / -2 = 63.5; 0.25 * 63.5 = 15.875 -> 16.
    assert_eq!(a.qs[0], 16);
    assert_eq!(
        a.bsums[0],
        a.qs[..16].iter().map(|&v| v as i16).sum::<i16>()
    );
    assert_eq!(a.d[0], 1.0 / 63.5);
}

#[test]
fn shape_errors_name_the_problem() {
    let mut y = vec![0.0f32; 255];
    assert!(matches!(
        dequantize_row(QType::Q4K, &[0u8; 144], &mut y),
        Err(QuantError::PartialBlock { .. })
    ));
    let mut y = vec![0.0f32; 256];
    let e = dequantize_row(QType::Q4K, &[0u8; 143], &mut y).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Q4_K: row bytes has 143 elements, expected 144"
    );
    let a = QuantizedActs::new(&[0.0; 256], &[QType::Q8_0]).unwrap();
    assert_eq!(
        vec_dot_q8(QType::Q4K, &[0u8; 144], &a),
        Err(QuantError::ActsMissing { qtype: QType::Q4K })
    );
    let mut out = vec![0.0f32; 2];
    assert!(matches!(
        matvec_f32(QType::F32, &[0u8; 12], 2, 2, &[0.0; 2], &mut out),
        Err(QuantError::Length { .. })
    ));
}
