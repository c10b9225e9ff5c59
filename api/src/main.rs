//! `strata-api`: validates requests, records jobs, relays the outbox to RabbitMQ.

mod error;
mod middleware;
mod relay;
mod routes;
mod startup;
mod state;

use strata_shared::config::Config;
use strata_shared::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init("strata-api", &config.log_format);
    if let Err(e) = startup::run(config).await {
        tracing::error!(error = %format!("{e:#}"), "strata-api stopped");
        return Err(e);
    }
    Ok(())
}
