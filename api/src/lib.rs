//! Strata's HTTP API as a library: `startup::run` serves it; tests read the route table.

pub mod auth;
pub mod body;
pub mod commands;
pub mod config;
pub mod error;
pub mod http_metrics;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod scheduler;
pub mod startup;
pub mod state;
