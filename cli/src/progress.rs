//! `--wait` and `jobs watch`: a job followed to its end, with a live progress bar on a
//! terminal (phase, bytes and files done / total, rate, ETA), nothing until the end
//! otherwise, and Ctrl-C asking whether to cancel the job (or detaching, `--detach`).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_client::types::{JobStatusName, JobView};
use strata_client::Client;

use crate::output::{self, exit, CmdResult, Failure};

/// How the wait should behave.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Print JSON: the final job (or, `lines`, every change as a JSON line).
    pub json: bool,
    pub lines: bool,
    /// Ctrl-C leaves the job running without asking.
    pub detach: bool,
}

/// A bar on stderr when it is a terminal and the output is not JSON.
pub fn bar_for_bytes(total: Option<u64>, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(bytes_style(total.is_some()));
    bar
}

fn bytes_style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{spinner} {msg:20} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{spinner} {msg:20} {bytes} {binary_bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

/// Follows a job to its end; the final job, and whether it succeeded, decide the exit.
pub async fn wait(client: &Client, job_id: &str, opts: WaitOptions) -> CmdResult<JobView> {
    let bar = bar_for_bytes(None, opts.json);
    let mut known_total = false;
    let update = |job: &JobView| {
        if opts.lines {
            output::json_line(job);
            return;
        }
        let p = &job.progress;
        if let Some(total) = p.bytes_total.filter(|t| *t > 0) {
            if !known_total {
                known_total = true;
                bar.set_style(bytes_style(true));
            }
            bar.set_length(total as u64);
        }
        bar.set_position(p.bytes_done.max(0) as u64);
        let phase = job
            .phase
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| output::name(&job.status));
        let files = match p.files_total {
            Some(total) if total > 0 => format!(" {}/{} files", p.files_done, total),
            _ if p.files_done > 0 => format!(" {} files", p.files_done),
            _ => String::new(),
        };
        bar.set_message(format!("{phase}{files}"));
        bar.tick();
    };
    let waiting = client.wait_for_job(job_id, update);
    tokio::pin!(waiting);
    let job = loop {
        tokio::select! {
            job = &mut waiting => break job?,
            _ = tokio::signal::ctrl_c() => {
                bar.suspend(|| ());
                let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
                if opts.detach || (interactive && !ask_cancel(job_id)) {
                    bar.finish_and_clear();
                    eprintln!("detached: job {job_id} goes on (strata jobs watch {job_id})");
                    std::process::exit(exit::OK);
                }
                if !interactive {
                    bar.finish_and_clear();
                    return Err(Failure::new(130, format!("interrupted; job {job_id} goes on (strata jobs cancel {job_id} stops it)")));
                }
                client.cancel_job(job_id).await?;
                eprintln!("strata: cancelling job {job_id}…");
            }
        }
    };
    bar.finish_and_clear();
    Ok(job)
}

/// Asks on the terminal; `true` for yes.
fn ask_cancel(job_id: &str) -> bool {
    eprint!("\nCancel job {job_id}? [y/N] (N leaves it running) ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok();
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// The exit of a finished job: `0` when it succeeded, `1` with its error otherwise.
pub fn outcome(job: &JobView) -> CmdResult {
    match job.status {
        JobStatusName::Succeeded => Ok(()),
        _ => {
            let why = job
                .error
                .as_ref()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!(": {msg} ({code})")
                })
                .unwrap_or_default();
            Err(Failure::new(
                exit::JOB_FAILED,
                format!(
                    "{} job {} {}{why}",
                    output::name(&job.kind),
                    job.job_id,
                    output::name(&job.status)
                ),
            ))
        }
    }
}

/// A one-line summary of a finished job for people.
pub fn summary(job: &JobView) -> String {
    let took = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => {
            let ms = (f - s).num_milliseconds().max(0) as u64;
            format!(
                " in {}",
                indicatif::HumanDuration(Duration::from_millis(ms))
            )
        }
        _ => String::new(),
    };
    let what = match &job.backup_id {
        Some(b) => format!(" {b}"),
        None => String::new(),
    };
    format!(
        "{} job {}{what} {}: {}, {} files{took}",
        output::name(&job.kind),
        job.job_id,
        output::name(&job.status),
        output::bytes(job.progress.bytes_done.max(0) as u64),
        job.progress.files_done
    )
}
