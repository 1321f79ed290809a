//! Matrix-vector and matrix-matrix products over row-major quantized weights, rows in parallel
//! on the current rayon pool. Each output element is computed by exactly one call of the row
//! kernel, so results do not depend on the number of threads (FALSIFY-QK-MATVEC-001).

use rayon::prelude::*;

use super::dot::{acts_for, dot_f32_unchecked, dot_q8_unchecked};
use super::{check_row, QType, QuantError, QuantizedActs};

/// Rows per rayon task: enough work per task to amortise scheduling (a Q4_K row of 2048
/// columns is ~1.2 KB), small enough to balance 2..16 threads.
fn rows_per_task(rows: usize, row_bytes: usize) -> usize {
    let by_bytes = (64 * 1024 / row_bytes.max(1)).max(1);
    by_bytes.min(rows.div_ceil(rayon::current_num_threads() * 4).max(1))
}

fn check_matrix(
    q: QType,
    w: &[u8],
    rows: usize,
    cols: usize,
    out: usize,
) -> Result<usize, QuantError> {
    let rb = q.row_bytes(cols).ok_or(QuantError::PartialBlock {
        qtype: q,
        cols,
        block: q.block_size(),
    })?;
    check_row(q, rb, cols)?;
    let expected = rb.saturating_mul(rows);
    if w.len() != expected {
        return Err(QuantError::Length {
            qtype: q,
            what: "weight bytes",
            got: w.len(),
            expected,
        });
    }
    if out != rows {
        return Err(QuantError::Length {
            qtype: q,
            what: "output",
            got: out,
            expected: rows,
        });
    }
    Ok(rb)
}

/// out[r] = W[r] . x with f32 activations (W: `rows` rows of `cols` values of `q`).
pub fn matvec_f32(
    q: QType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let rb = check_matrix(q, w, rows, cols, out.len())?;
    if x.len() != cols {
        return Err(QuantError::Length {
            qtype: q,
            what: "activations",
            got: x.len(),
            expected: cols,
        });
    }
    let per = rows_per_task(rows, rb);
    out.par_chunks_mut(per)
        .zip(w.par_chunks(per * rb))
        .for_each(|(o, wc)| {
            for (y, r) in o.iter_mut().zip(wc.chunks_exact(rb)) {
                *y = dot_f32_unchecked(q, r, x);
            }
        });
    Ok(())
}

/// out[r] = W[r] . x with 8-bit activations prepared by [`QuantizedActs::new`].
pub fn matvec_q8(
    q: QType,
    w: &[u8],
    rows: usize,
    cols: usize,
    a: &QuantizedActs,
    out: &mut [f32],
) -> Result<(), QuantError> {
    let rb = check_matrix(q, w, rows, cols, out.len())?;
    // Validates the activations once (length, prepared format) for all rows.
    let (k, z) = acts_for(q, a, cols)?;
    let per = rows_per_task(rows, rb);
    out.par_chunks_mut(per)
        .zip(w.par_chunks(per * rb))
        .for_each(|(o, wc)| {
            for (y, r) in o.iter_mut().zip(wc.chunks_exact(rb)) {
                *y = dot_q8_unchecked(q, r, a, k, z);
            }
        });
    Ok(())
}

/// Batched product for prefill: out[t * rows + r] = W[r] . acts[t]. Each task takes a block of
/// weight rows and runs it against every activation row, so weights are read from memory once
/// per batch instead of once per token.
pub fn matmat_q8(
    q: QType,
    w: &[u8],
    rows: usize,
    cols: usize,
    acts: &[QuantizedActs],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let rb = check_matrix(q, w, rows, cols, rows)?;
    let expected = rows.saturating_mul(acts.len());
    if out.len() != expected {
        return Err(QuantError::Length {
            qtype: q,
            what: "output (tokens x rows)",
            got: out.len(),
            expected,
        });
    }
    for a in acts {
        acts_for(q, a, cols)?;
    }
    let per = rows_per_task(rows, rb).max(1);
    let n_tasks = rows.div_ceil(per);
    // Results per task (rows x tokens), scattered into the token-major output afterwards.
    let parts: Vec<Vec<f32>> = (0..n_tasks)
        .into_par_iter()
        .map(|t| {
            let r0 = t * per;
            let r1 = (r0 + per).min(rows);
            let mut part = Vec::with_capacity((r1 - r0) * acts.len());
            for r in r0..r1 {
                let row = &w[r * rb..(r + 1) * rb];
                for a in acts {
                    part.push(dot_q8_unchecked(q, row, a, a.q8k.as_ref(), a.q80.as_ref()));
                }
            }
            part
        })
        .collect();
    for (t, part) in parts.iter().enumerate() {
        let r0 = t * per;
        for (i, v) in part.iter().enumerate() {
            let (r, tok) = (r0 + i / acts.len(), i % acts.len());
            out[tok * rows + r] = *v;
        }
    }
    Ok(())
}
