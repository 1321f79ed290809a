use contract_macros::falsifier;

#[falsifier("FALSIFY-META-OK-001")]
fn no_ctx() {}

fn main() {}
