//! The NATS JetStream side of scaled-out jobs (`queue.url`): a work-queue stream (file storage)
//! that holds the ids of accepted jobs until a worker acknowledges them, the durable pull
//! consumer every `needtag worker` shares (explicit ack, `ack_wait`, `max_deliver`), and a
//! dead-letter stream that keeps the ids of jobs that ended `failed` after their last allowed
//! delivery.
//!
//! Only job ids travel through NATS; the job itself (audio or text, metadata, status, result)
//! is a row in PostgreSQL ([`super::postgres`]). Each publish carries `Nats-Msg-Id` = the job
//! id, so a publish repeated within the stream's duplicate window (a retried request, the
//! sweeper) is stored once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::{JobError, Result};
use crate::config::QueueConfig;

/// The stream's window for recognising a repeated `Nats-Msg-Id`.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

fn queue_err(what: &str, e: impl std::fmt::Display) -> JobError {
    JobError::Queue(format!("{what}: {e}"))
}

/// What the stream and its consumer hold now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Depth {
    /// Job ids not yet delivered to any worker.
    pub pending: u64,
    /// Delivered and not acknowledged yet (being worked on, or held by a dead worker until
    /// `ack_wait` passes).
    pub ack_pending: u64,
    /// Messages delivered more than once that are still unacknowledged.
    pub redelivered: u64,
    /// Job ids in the dead-letter stream.
    pub dead: u64,
}

/// A connection to NATS with the job streams in place.
#[derive(Clone)]
pub struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    cfg: QueueConfig,
}

impl Nats {
    /// Connect to `cfg.url` and create the streams and the consumer when they are missing
    /// (each replica and worker does it at start; the server keeps one of each).
    pub async fn connect(cfg: &QueueConfig) -> Result<Nats> {
        let url = cfg
            .nats()
            .ok_or_else(|| JobError::Invalid("queue.url is not set".into()))?;
        let client = async_nats::ConnectOptions::new()
            .name("needtag")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| queue_err("connecting to queue.url", e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_millis(cfg.publish_timeout_ms.max(100)));
        let nats = Nats {
            client,
            js,
            cfg: cfg.clone(),
        };
        tokio::time::timeout(Duration::from_secs(30), nats.ensure())
            .await
            .map_err(|_| JobError::Queue("NATS did not answer within 30 s".into()))??;
        Ok(nats)
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn ensure(&self) -> Result<()> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![self.cfg.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| queue_err("the job stream", e))?;
        self.js
            .get_or_create_stream(stream::Config {
                name: self.cfg.dead_stream.clone(),
                subjects: vec![self.cfg.dead_subject.clone()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| queue_err("the dead-letter stream", e))?;
        self.consumer().await?;
        Ok(())
    }

    /// The durable pull consumer the workers share.
    pub async fn consumer(&self) -> Result<consumer::PullConsumer> {
        let stream = self
            .js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| queue_err("the job stream", e))?;
        stream
            .get_or_create_consumer(
                &self.cfg.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.cfg.consumer.clone()),
                    description: Some("needtag workers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(self.cfg.ack_wait_s),
                    max_deliver: self.cfg.max_deliver,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| queue_err("the workers' consumer", e))
    }

    /// Publish a job's id and wait for the stream's acknowledgement.
    pub async fn publish(&self, job_id: &str) -> Result<()> {
        self.publish_to(&self.cfg.subject, job_id).await
    }

    /// Publish a failed job's id to the dead-letter subject.
    pub async fn dead_letter(&self, job_id: &str) -> Result<()> {
        self.publish_to(&self.cfg.dead_subject, job_id).await
    }

    /// Publish a stranded job's id again (see `worker::strays`): a message id of its own, so
    /// the stream's de-duplication of the first publish does not swallow it.
    pub async fn republish(&self, job_id: &str, attempts: i32) -> Result<()> {
        self.publish_with_id(
            &self.cfg.subject,
            job_id,
            &format!("{job_id}:again{attempts}"),
        )
        .await
    }

    async fn publish_to(&self, subject: &str, job_id: &str) -> Result<()> {
        self.publish_with_id(subject, job_id, job_id).await
    }

    async fn publish_with_id(&self, subject: &str, job_id: &str, msg_id: &str) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        let wait = Duration::from_millis(self.cfg.publish_timeout_ms.max(100));
        let publish = async {
            self.js
                .publish_with_headers(
                    subject.to_string(),
                    headers,
                    bytes::Bytes::copy_from_slice(job_id.as_bytes()),
                )
                .await
                .map_err(|e| queue_err("publishing a job", e))?
                .await
                .map_err(|e| queue_err("the stream's acknowledgement", e))
        };
        tokio::time::timeout(wait, publish)
            .await
            .map_err(|_| JobError::Queue(format!("no acknowledgement within {wait:?}")))??;
        Ok(())
    }

    /// Fails when the server cannot be reached (a round trip within two seconds).
    pub async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.client.flush())
            .await
            .map_err(|_| JobError::Queue("NATS did not answer within 2 s".into()))?
            .map_err(|e| queue_err("NATS", e))?;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(JobError::Queue("not connected to NATS".into()));
        }
        Ok(())
    }

    /// The stream's and the consumer's counts.
    pub async fn depth(&self) -> Result<Depth> {
        let consumer = self.consumer().await?;
        let info = consumer
            .get_info()
            .await
            .map_err(|e| queue_err("the workers' consumer", e))?;
        let mut depth = Depth {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            dead: 0,
        };
        let dead = self
            .js
            .get_stream(&self.cfg.dead_stream)
            .await
            .map_err(|e| queue_err("the dead-letter stream", e))?;
        depth.dead = dead
            .get_info()
            .await
            .map_err(|e| queue_err("the dead-letter stream", e))?
            .state
            .messages;
        Ok(depth)
    }

    /// The subject JetStream announces a message that reached `max_deliver` on.
    pub fn max_deliveries_subject(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.cfg.stream, self.cfg.consumer
        )
    }

    /// The job id at `seq` in the job stream (None when the message is gone).
    pub async fn job_at(&self, seq: u64) -> Result<Option<String>> {
        let stream = self
            .js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| queue_err("the job stream", e))?;
        match stream.get_raw_message(seq).await {
            Ok(msg) => Ok(Some(
                String::from_utf8_lossy(&msg.payload).trim().to_string(),
            )),
            Err(_) => Ok(None),
        }
    }

    /// Remove the message at `seq` from the job stream: a message past `max_deliver` stays in
    /// a work-queue stream until deleted.
    pub async fn remove(&self, seq: u64) {
        if let Ok(stream) = self.js.get_stream(&self.cfg.stream).await {
            if let Err(e) = stream.delete_message(seq).await {
                tracing::warn!(seq, "a job past its last delivery stays in the stream: {e}");
            }
        }
    }
}
