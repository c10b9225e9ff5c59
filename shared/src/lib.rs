//! The library both Strata binaries use. One module per concept of DESIGN.md.

pub mod archive;
pub mod auth;
pub mod config;
pub mod db;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod prune;
pub mod queue;
pub mod repo;
pub mod retention;
pub mod schedule;
pub mod storage;
pub mod telemetry;
