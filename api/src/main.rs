//! `strata-api`: validates requests, records jobs, relays the outbox to RabbitMQ.
//!
//! `strata-api` serves; `strata-api generate-key` prints a fresh API key in the format
//! `STRATA_BOOTSTRAP_ADMIN_KEY` expects; `strata-api migrate` applies the database
//! migrations and exits; `strata-api create-key --role admin` registers a new key in the
//! database and prints it (the way back in after a lock-out); `strata-api create-user
//! --email … --role admin` registers a user, the password read from stdin.

use strata_api::commands;
use strata_api::config::Config;
use strata_api::startup;
use strata_telemetry as telemetry;

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("generate-key") {
        println!("{}", strata_auth::keys::generate().token);
        return;
    }
    if args.first().map(String::as_str) == Some("openapi") {
        // The OpenAPI document, as `GET /api/v1/openapi.json` serves it, with no
        // database or broker needed (client generators, shared/client/openapi.json).
        println!("{}", strata_api::openapi::spec_json());
        return;
    }
    if args.first().map(String::as_str) == Some("migrate") {
        // Applies the database migrations and exits (a Kubernetes Job before a rollout;
        // every process also migrates at start, under a lock, so this is optional).
        let result = match Config::from_env() {
            Ok(config) => {
                let telemetry = telemetry::init("strata-api", &config.common.log_format);
                let r = startup::migrate(&config).await;
                telemetry.shutdown();
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("strata-api migrate: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let command = args.first().map(String::as_str);
    if let Some(name @ ("create-key" | "create-user")) = command {
        let result = match Config::from_env() {
            Ok(config) => {
                let telemetry = telemetry::init("strata-api", &config.common.log_format);
                let r = if name == "create-key" {
                    commands::create_key(&config, &args[1..]).await
                } else {
                    commands::create_user(&config, &args[1..]).await
                };
                telemetry.shutdown();
                r
            }
            Err(e) => Err(e),
        };
        match result {
            // The key (or the user's id) on stdout alone, so
            // `KEY=$(strata-api create-key --role admin)` works.
            Ok(out) => println!("{out}"),
            Err(e) => {
                eprintln!("strata-api {name}: {e:#}");
                std::process::exit(2);
            }
        }
        return;
    }
    let result = match Config::from_env() {
        Ok(config) => {
            let telemetry = telemetry::init("strata-api", &config.common.log_format);
            let r = startup::run(config).await;
            if let Err(e) = &r {
                tracing::error!(error = %format!("{e:#}"), "strata-api stopped");
            }
            // Spans still buffered leave before the process does.
            telemetry.shutdown();
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // The cause chain on one line, without a backtrace dump: it is for operators.
        eprintln!("strata-api: {e:#}");
        std::process::exit(1);
    }
}
