use contract_macros::falsifier;
use pv_evidence::Ctx;

#[falsifier("FALSIFY-META-OK-001")]
fn returns_nothing(ctx: &mut Ctx) {
    let _ = ctx;
}

fn main() {}
