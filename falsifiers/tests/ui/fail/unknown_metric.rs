use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

#[falsifier("FALSIFY-META-OK-001")]
fn typo_in_metric(ctx: &mut Ctx) -> FalsifierResult {
    ctx.metric("mismatched_value", 0.0);
    ctx.metric("speed_ratio", 2.0);
    Ok(())
}

fn main() {}
