use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

#[falsifier("FALSIFY-META-OK-002")]
fn typo_in_id(ctx: &mut Ctx) -> FalsifierResult {
    ctx.metric("mismatched_values", 0.0);
    Ok(())
}

fn main() {}
