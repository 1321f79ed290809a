// A test bound to a retired falsifier compiles with a deprecation warning; denying the lint
// here turns it into an error so that the message can be checked.
#![deny(deprecated)]

use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

#[falsifier("FALSIFY-META-OLD-001")]
fn still_bound(ctx: &mut Ctx) -> FalsifierResult {
    ctx.metric("old_metric", 0.0);
    Ok(())
}

fn main() {}
