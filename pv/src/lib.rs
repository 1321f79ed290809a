//! The `pv` library: what the `pv` binary's commands are made of.

pub mod status;
