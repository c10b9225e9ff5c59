//! A job's progress as it changes: the server-sent events of `GET /api/v1/jobs/{id}/events`,
//! and [`Client::wait_for_job`] on top of them (polling when the stream cannot be had).

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header::ACCEPT;

use crate::routes as r;
use crate::types::{JobStatusName, JobView};
use crate::{Client, Error, Result};

/// `job` while it runs, `end` with its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEventKind {
    Job,
    End,
}

/// One event of a job's stream.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// Send back as `last_event_id` to resume after it.
    pub id: String,
    pub kind: JobEventKind,
    pub job: JobView,
}

/// A job status that will not change again.
pub fn is_final(status: &JobStatusName) -> bool {
    matches!(
        status,
        JobStatusName::Succeeded | JobStatusName::Failed | JobStatusName::Cancelled
    )
}

impl Client {
    /// `GET /api/v1/jobs/{id}/events`: the job each time it changes, ending with an
    /// [`JobEventKind::End`] event. `last_event_id` resumes after an event already seen.
    pub async fn job_events(
        &self,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<JobEvent>>> {
        let path = r::JOB_EVENTS.path_with(&[id])?;
        let resp = self
            .send(r::JOB_EVENTS, &path, true, |req| {
                let req = req.header(ACCEPT, "text/event-stream");
                match last_event_id {
                    Some(last) => req.header("Last-Event-ID", last),
                    None => req,
                }
            })
            .await?;
        let stream = resp
            .bytes_stream()
            .eventsource()
            .filter_map(|event| async move {
                match event {
                    Err(e) => Some(Err(Error::network(e))),
                    Ok(ev) => {
                        let kind = match ev.event.as_str() {
                            "job" => JobEventKind::Job,
                            "end" => JobEventKind::End,
                            _ => return None,
                        };
                        Some(
                            serde_json::from_str::<JobView>(&ev.data)
                                .map(|job| JobEvent {
                                    id: ev.id,
                                    kind,
                                    job,
                                })
                                .map_err(|e| Error::invalid_response(format!("job event: {e}"))),
                        )
                    }
                }
            });
        Ok(stream)
    }

    /// Waits until the job is final and returns it, calling `progress` with the job each
    /// time it changes. Follows the events stream, reconnecting with `Last-Event-ID` when
    /// it breaks, and polls `GET /api/v1/jobs/{id}` once a second when the stream cannot
    /// be had (a proxy that buffers it, say). A failed or cancelled job is returned, not
    /// an error: look at its `status`.
    pub async fn wait_for_job(
        &self,
        id: &str,
        mut progress: impl FnMut(&JobView),
    ) -> Result<JobView> {
        let mut last: Option<String> = None;
        let mut stream_failures = 0;
        while stream_failures < 3 {
            let events = match self.job_events(id, last.as_deref()).await {
                Ok(events) => events,
                // 404 and the like are the answer; only a stream problem falls back.
                Err(e) if e.kind() == crate::ErrorKind::Api && !e.is_transient() => return Err(e),
                Err(_) => {
                    stream_failures += 1;
                    continue;
                }
            };
            let mut events = Box::pin(events);
            let mut got_any = false;
            // A stream that stays silent (buffered by a proxy) is given up for polling.
            loop {
                match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
                    Ok(Some(Ok(ev))) => {
                        got_any = true;
                        last = Some(ev.id.clone());
                        progress(&ev.job);
                        if ev.kind == JobEventKind::End || is_final(&ev.job.status) {
                            return Ok(ev.job);
                        }
                    }
                    Ok(Some(Err(_))) | Ok(None) => break,
                    // Silent for longer than a job usually is: reconnect (after the
                    // third time, poll).
                    Err(_) => {
                        stream_failures += 1;
                        break;
                    }
                }
            }
            if !got_any {
                stream_failures += 1;
            }
        }
        // Polling.
        loop {
            let job = self.get_job(id).await?;
            progress(&job);
            if is_final(&job.status) {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
