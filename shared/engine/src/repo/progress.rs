//! What a running job shares with its stages: live counters and phase spans, the stop
//! flag, and the error a stage returns when it was stopped.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Live counters a job reports while it runs. A progress made with
/// [`Progress::traced`] also opens a span per phase under the job's span, so a trace
/// shows how long scanning, uploading, the manifest or a restore's swap took.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files_done: AtomicU64,
    pub files_total: AtomicU64,
    pub phase: Mutex<&'static str>,
    phase_spans: Mutex<PhaseSpans>,
    /// What the job's stages are waiting on right now ([`Progress::wait`]).
    waits: Mutex<Vec<(u64, &'static str, Instant)>>,
    next_wait: AtomicU64,
}

/// Removes its wait from the job's list when dropped (the awaited thing answered).
pub struct WaitGuard<'a> {
    progress: &'a Progress,
    id: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.progress
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _, _)| *id != self.id);
    }
}

#[derive(Debug, Default)]
struct PhaseSpans {
    parent: Option<tracing::Span>,
    current: Option<tracing::Span>,
}

impl Progress {
    /// A progress whose phases are spans under `parent`.
    pub fn traced(parent: tracing::Span) -> Self {
        Self {
            phase_spans: Mutex::new(PhaseSpans {
                parent: Some(parent),
                current: None,
            }),
            ..Self::default()
        }
    }

    pub fn set_phase(&self, phase: &'static str) {
        let previous = std::mem::replace(
            &mut *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            phase,
        );
        let mut guard = self.phase_spans.lock().unwrap_or_else(|e| e.into_inner());
        let PhaseSpans { parent, current } = &mut *guard;
        if let Some(parent) = parent {
            if previous != phase || current.is_none() {
                // Dropping the previous phase's span ends it.
                *current = None;
                *current = Some(tracing::info_span!(
                    parent: &*parent,
                    "phase",
                    otel.name = phase,
                    phase
                ));
            }
        }
    }

    pub fn phase(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a stage now waits on `what` (a storage upload, the chunk index…)
    /// until the guard drops: a stalled job's log says what it was waiting on.
    pub fn wait(&self, what: &'static str) -> WaitGuard<'_> {
        let id = self
            .next_wait
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, what, Instant::now()));
        WaitGuard { progress: self, id }
    }

    /// What the stages wait on now, with how long each has waited, longest first.
    pub fn waits(&self) -> Vec<(&'static str, Duration)> {
        let mut waits: Vec<_> = self
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, what, since)| (*what, since.elapsed()))
            .collect();
        waits.sort_by_key(|w| std::cmp::Reverse(w.1));
        waits
    }

    /// Ends the current phase's span (the job is over).
    pub fn end_phase(&self) {
        self.phase_spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .current = None;
    }
}

/// Set when the job must stop at its next checkpoint (cancelled, or lease lost).
pub type CancelFlag = Arc<AtomicBool>;

/// The error a stage returns when the job was asked to stop.
#[derive(Debug, thiserror::Error)]
#[error("the job was stopped")]
pub struct Stopped;

/// Whether `e` says the job was stopped: [`Stopped`] anywhere in its chain, including
/// inside a storage error (a request abandoned by [`super::cancel`]).
pub fn is_stopped(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<Stopped>()
            || matches!(
                cause.downcast_ref::<strata_storage::StorageError>(),
                Some(strata_storage::StorageError::Other(inner)) if is_stopped(inner)
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_listed_until_answered() {
        let p = Progress::default();
        let upload = p.wait("storage: uploading a pack");
        {
            let _index = p.wait("catalog: recording chunks");
            let now: Vec<_> = p.waits().into_iter().map(|(w, _)| w).collect();
            assert_eq!(
                now,
                ["storage: uploading a pack", "catalog: recording chunks"]
            );
        }
        assert_eq!(p.waits().len(), 1);
        drop(upload);
        assert!(p.waits().is_empty());
    }
}
