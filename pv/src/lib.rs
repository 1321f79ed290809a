//! The `pv` library: what the `pv` binary's commands are made of.

pub mod status;
pub mod status_cmd;
pub mod status_load;
pub mod status_render;
pub mod verify;
pub mod git;
pub mod render;
pub mod schema;
pub mod validate;
