//! RabbitMQ: the job queue's topology, publishing with confirms, consuming.
//!
//! RabbitMQ carries wake-ups; PostgreSQL holds the truth. A message names a job; the
//! worker claims the job in PostgreSQL before it acks.

use anyhow::{bail, Context};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use strata_core::config::SecretUrl;

/// Names of the queues and exchange of one Strata installation (tests use their own).
#[derive(Debug, Clone)]
pub struct Topology {
    /// The durable quorum queue jobs are published to (through the default exchange).
    pub queue: String,
    /// Where rejected messages go.
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
}

impl Topology {
    pub fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_string(),
            dead_letter_exchange: format!("{queue}.dlx"),
            dead_letter_queue: format!("{queue}.dead"),
        }
    }
}

/// Opens a connection named after the process, for the broker's management view.
pub async fn connect(url: &SecretUrl, name: &str) -> anyhow::Result<Connection> {
    Connection::connect(
        url.expose(),
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .with_context(|| format!("connecting to RabbitMQ at {}", url.redacted()))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Declares the exchange and queues (idempotent: every process declares on start).
pub async fn declare(channel: &Channel, topo: &Topology) -> anyhow::Result<()> {
    channel
        .exchange_declare(
            topo.dead_letter_exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .context("declaring the dead-letter exchange")?;
    channel
        .queue_declare(
            topo.dead_letter_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            quorum_args(),
        )
        .await
        .context("declaring the dead-letter queue")?;
    channel
        .queue_bind(
            topo.dead_letter_queue.as_str().into(),
            topo.dead_letter_exchange.as_str().into(),
            topo.queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("binding the dead-letter queue")?;
    let mut args = quorum_args();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(topo.dead_letter_exchange.as_str().into()),
    );
    channel
        .queue_declare(
            topo.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .context("declaring the job queue")?;
    Ok(())
}

/// A channel in confirm mode that publishes persistent job messages.
pub struct Publisher {
    _connection: Connection,
    channel: Channel,
    topo: Topology,
}

impl Publisher {
    pub async fn connect(url: &SecretUrl, topo: Topology, name: &str) -> anyhow::Result<Self> {
        let connection = connect(url, name).await?;
        let channel = connection.create_channel().await?;
        declare(&channel, &topo).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(Self {
            _connection: connection,
            channel,
            topo,
        })
    }

    /// The queue this publisher sends to.
    pub fn queue(&self) -> &str {
        &self.topo.queue
    }

    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes one persistent message whose `message_id` is the job id, and waits for
    /// the broker's confirm: `Ok` means the broker has it.
    pub async fn publish(
        &self,
        message_id: &str,
        payload: &[u8],
        headers: FieldTable,
    ) -> anyhow::Result<()> {
        let props = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let confirm = self
            .channel
            .basic_publish(
                ShortString::from(""),
                self.topo.queue.as_str().into(),
                BasicPublishOptions::default(),
                payload,
                props,
            )
            .await
            .context("publishing a job message")?
            .await
            .context("waiting for the broker's confirm")?;
        if !confirm.is_ack() {
            bail!("the broker refused the message for job {message_id}");
        }
        Ok(())
    }
}

/// The string headers of a delivery (the W3C trace context among them).
pub fn string_headers(props: &BasicProperties) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    if let Some(headers) = props.headers() {
        for (k, v) in headers.inner() {
            let value = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => continue,
            };
            out.insert(k.to_string(), value);
        }
    }
    out
}

/// Starts consuming the job queue with at most `prefetch` unacknowledged messages.
pub async fn consume(
    connection: &Connection,
    topo: &Topology,
    prefetch: u16,
    consumer_tag: &str,
) -> anyhow::Result<(Channel, Consumer)> {
    let channel = connection.create_channel().await?;
    declare(&channel, topo).await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("setting prefetch")?;
    let consumer = channel
        .basic_consume(
            topo.queue.as_str().into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the job queue")?;
    Ok((channel, consumer))
}
