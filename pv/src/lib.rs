//! The `pv` library: what the `pv` binary's commands are made of.

pub mod evidence_cmd;
pub mod status;
pub mod status_cmd;
pub mod status_load;
pub mod status_render;
pub mod verify;
pub mod authoring;
pub mod diff;
pub mod git;
pub mod list;
pub mod render;
pub mod schema;
pub mod validate;
