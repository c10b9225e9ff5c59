//! Strata's lowest layer: the domain (sources, backups, jobs), error codes, secrets and the
//! environment helpers every crate reads its settings with, and retention rules.
//! Nothing here does I/O beyond reading environment variables.

pub mod config;
pub mod errors;
pub mod model;
pub mod retention;
