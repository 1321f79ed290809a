//! The `pv` library: what the `pv` binary's commands are made of.

pub mod adopt;
pub mod audit;
pub mod authoring;
pub mod bump;
pub mod coverage;
pub mod crate_scan;
pub mod diff;
pub mod evidence_cmd;
pub mod evidence_verify;
pub mod git;
pub mod graph;
pub mod init;
pub mod kani;
pub mod list;
pub mod render;
pub mod schema;
pub mod show;
pub mod sign;
pub mod status;
pub mod status_cmd;
pub mod status_load;
pub mod status_math;
pub mod status_render;
pub mod unclaimed;
pub mod validate;
pub mod verify;
