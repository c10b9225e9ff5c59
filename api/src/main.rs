//! `strata-api`: validates requests, records jobs, relays the outbox to RabbitMQ.
//!
//! `strata-api` serves; `strata-api generate-key` prints a fresh API key in the format
//! `STRATA_BOOTSTRAP_ADMIN_KEY` expects.

use strata_api::startup;
use strata_shared::config::Config;
use strata_shared::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("generate-key") {
        println!("{}", strata_shared::auth::keys::generate().token);
        return Ok(());
    }
    let config = Config::from_env()?;
    telemetry::init("strata-api", &config.log_format);
    if let Err(e) = startup::run(config).await {
        tracing::error!(error = %format!("{e:#}"), "strata-api stopped");
        return Err(e);
    }
    Ok(())
}
