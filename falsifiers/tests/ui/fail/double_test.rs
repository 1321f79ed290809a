use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

#[falsifier("FALSIFY-META-OK-001")]
#[test]
fn twice(ctx: &mut Ctx) -> FalsifierResult {
    let _ = ctx;
    Ok(())
}

fn main() {}
