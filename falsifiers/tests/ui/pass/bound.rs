//! Well-formed bindings compile, including a feature-gated hardware falsifier.

use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult, ResultExt};

/// Ordinary binding.
#[falsifier("FALSIFY-META-OK-001")]
fn ok(ctx: &mut Ctx) -> FalsifierResult {
    let n: u32 = "0".parse().context("parsing")?;
    ctx.metric("mismatched_values", f64::from(n));
    ctx.metric("speed_ratio", 2.0);
    helper(ctx);
    Ok(())
}

fn helper(ctx: &mut Ctx) {
    ctx.note("module-level helpers are visible from the body");
}

#[falsifier("FALSIFY-META-GPU-001")]
fn gpu(ctx: &mut Ctx) -> FalsifierResult {
    ctx.metric("disagreements", 0.0);
    Ok(())
}

fn main() {}
