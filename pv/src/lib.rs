//! The `pv` library: what the `pv` binary's commands are made of.

pub mod status;
pub mod git;
pub mod render;
pub mod schema;
pub mod validate;
