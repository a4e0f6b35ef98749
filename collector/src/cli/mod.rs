//! Subcommands of `driftwatch-collector` that have grown past a few lines,
//! one file each. `main.rs` parses and dispatches.

pub mod keys;
pub mod serve;
pub mod waiver;
