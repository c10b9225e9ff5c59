//! The outbox relay: publishes job messages recorded in PostgreSQL to RabbitMQ with
//! publisher confirms, and marks them sent in the same transaction that locked them.
//! A crash between publish and commit republishes the message; workers ignore the
//! duplicate because a job can be claimed only once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use std::collections::HashMap;

use crate::queue::{Publisher, Topology};
use crate::JobsConfig;
use lapin::types::{AMQPValue, FieldTable};
use sqlx::postgres::PgListener;
use strata_telemetry as telemetry;
use tokio::sync::watch;
use tracing::Instrument;

/// The relay's connection state, for the health endpoint.
#[derive(Default)]
pub struct RelayState {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RelayState {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn set(&self, connected: bool, error: Option<String>) {
        self.connected.store(connected, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

const BATCH: i64 = 100;
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` turns true, then publishes what is due one last time (a job
/// its process handed back while stopping reaches the queue before the process exits).
/// `process` names the connection (`strata-api`, `strata-worker`). Every process that
/// writes jobs runs one: relays share the outbox safely (`FOR UPDATE SKIP LOCKED`), so
/// a retry or a sweep a worker wrote is published with no API process running.
pub async fn run(
    pool: sqlx::PgPool,
    config: JobsConfig,
    process: &'static str,
    state: std::sync::Arc<RelayState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let topo = Topology::new(&config.queue_name);
    let mut listener = None;
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        // Named with the queue, so an operator (or a test) can tell installations apart.
        let name = format!("{process}-relay {}", config.queue_name);
        let publisher = match Publisher::connect(&config.amqp_url, topo.clone(), &name).await {
            Ok(p) => {
                state.set(true, None);
                backoff = Duration::from_millis(200);
                p
            }
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(error = %msg, "outbox relay cannot reach RabbitMQ; jobs wait in the outbox");
                state.set(false, Some(msg));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        loop {
            if *shutdown.borrow() {
                if let Err(e) = relay_batch(&pool, &publisher).await {
                    tracing::warn!(error = %format!("{e:#}"), "the last outbox batch was not published; another relay will");
                }
                return;
            }
            match relay_batch(&pool, &publisher).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!(error = %msg, "outbox relay failed; reconnecting");
                    state.set(publisher.is_connected(), Some(msg));
                    if !publisher.is_connected() {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
            if !publisher.is_connected() {
                state.set(false, Some("connection to RabbitMQ lost".into()));
                break;
            }
            // Sleep until a new row is notified, the next delayed row is due, or a poll.
            let wait = match pool.acquire().await {
                Ok(mut conn) => crate::outbox::next_due_in(&mut conn)
                    .await
                    .ok()
                    .flatten()
                    .map(|s| Duration::from_secs_f64(s).min(IDLE_POLL))
                    .unwrap_or(IDLE_POLL),
                Err(_) => IDLE_POLL,
            };
            if listener.is_none() {
                listener = connect_listener(&pool).await;
            }
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        r = l.try_recv() => if r.is_err() { listener = None; },
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }
}

async fn connect_listener(pool: &sqlx::PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool).await.ok()?;
    l.listen(crate::outbox::NOTIFY_CHANNEL).await.ok()?;
    Some(l)
}

/// Publishes one batch of due rows; returns how many.
async fn relay_batch(pool: &sqlx::PgPool, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows = crate::outbox::lock_due(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sent = Vec::with_capacity(rows.len());
    for row in &rows {
        let payload = serde_json::to_vec(&row.payload.0)?;
        // The publish is a span of the job's trace (the row carries the job's context),
        // and its own context travels on in the message headers to the worker.
        let span = tracing::info_span!(
            "outbox.publish",
            otel.kind = "producer",
            job_id = %row.job_id,
            messaging.system = "rabbitmq",
            messaging.destination.name = %publisher.queue(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let context: HashMap<String, String> =
            serde_json::from_value(row.headers.0.clone()).unwrap_or_default();
        telemetry::set_parent_from(&span, &context);
        telemetry::record_ids(&span);
        let mut headers = FieldTable::default();
        for (k, v) in telemetry::headers_of(&span) {
            headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
        }
        publisher
            .publish(&row.job_id.to_string(), &payload, headers)
            .instrument(span)
            .await?;
        sent.push(row.id);
    }
    crate::outbox::mark_sent(&mut tx, &sent).await?;
    tx.commit().await?;
    tracing::debug!(count = sent.len(), "published outbox rows");
    Ok(sent.len())
}
