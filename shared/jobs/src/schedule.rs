//! Schedules: when a schedule fires, and firing it exactly once however many API
//! replicas tick.
//!
//! The cron expression has five fields (`minute hour day-of-month month day-of-week`,
//! as in `"0 2 * * *"`) or six with seconds first, read on the wall clock of the
//! schedule's IANA time zone ([croner] with [chrono_tz]). Around DST changes a fire
//! time that falls into the spring-forward gap runs at the first valid time after the
//! gap, and one that occurs twice in the fall-back overlap runs once, at the first.
//!
//! Firing ([`fire_due`]) is a transaction per schedule: the replica that locks a due
//! schedule's row (`FOR UPDATE SKIP LOCKED`, so replicas never wait for one another)
//! records the fire under the primary key (schedule, fire time), creates the job, and
//! moves `next_run_at` past now — all or nothing. A second replica either skips the
//! locked row or, after the commit, no longer sees it due; and were it ever to try the
//! same fire again, the key would refuse the record and no job would be created.

use std::str::FromStr;
use strata_core::errors::ErrorCode;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Serialize;
use sqlx::{Acquire, PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::enqueue::{enqueue, EnqueueError, EnqueueOptions, JobRequest};
use strata_catalog as db;
use strata_catalog::schedules::ScheduleRow;
use strata_core::model::{BackupId, BackupPayload, BackupType, FieldError};

/// Fires of one schedule looked at per tick at most (an every-second schedule after a
/// long downtime has many; the ones beyond are counted by time, not one by one).
const MAX_FIRES_PER_TICK: usize = 1000;

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    tz: Tz,
}

impl When {
    /// Parses both; the error names the field (`cron` or `timezone`).
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, FieldError> {
        Ok(Self {
            cron: parse_cron(cron)?,
            tz: parse_timezone(timezone)?,
        })
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fires fall on whole seconds; croner keeps the fraction of its input.
        self.cron
            .find_next_occurrence(&floor(t).with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The fires in `[from, to]`, oldest first, at most `limit`.
    pub fn fires_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let start = if floor(from) == from {
            from
        } else {
            floor(from) + Duration::seconds(1)
        };
        let mut t = match self
            .cron
            .find_next_occurrence(&start.with_timezone(&self.tz), true)
        {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => return out,
        };
        while t <= to && out.len() < limit {
            out.push(t);
            match self.next_after(t) {
                Some(n) => t = n,
                None => break,
            }
        }
        out
    }

    /// The last fire at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&floor(t).with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// `t` without its fraction of a second.
fn floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// Five fields (`"0 2 * * *"`) or six with seconds first; no year field.
pub fn parse_cron(expr: &str) -> Result<Cron, FieldError> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(FieldError::new(ErrorCode::InvalidCron,
            "cron",
            format!(
                "{expr:?} has {fields} fields; expected five (minute hour day-of-month month day-of-week, \
                 e.g. \"0 2 * * *\") or six with seconds first"
            ),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| FieldError::new(ErrorCode::InvalidCron, "cron", format!("{expr:?}: {e}")))
        .and_then(|c| {
            // A pattern that can never match (31 February) is refused now, not at runtime.
            let now = Utc::now();
            c.find_next_occurrence(&now, false)
                .map(|_| c.clone())
                .map_err(|_| {
                    FieldError::new(
                        ErrorCode::InvalidCron,
                        "cron",
                        format!("{expr:?} never matches a date"),
                    )
                })
        })
}

/// An IANA time zone name (`Europe/Paris`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, FieldError> {
    Tz::from_str(name).map_err(|_| {
        FieldError::new(ErrorCode::InvalidTimezone,
            "timezone",
            format!("{name:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Paris\", \"America/New_York\")"),
        )
    })
}

/// How firing behaves.
#[derive(Debug, Clone)]
pub struct FireOptions {
    /// A fire older than this when seen is missed (downtime): run once if the schedule
    /// catches up, else skipped.
    pub misfire_grace: Duration,
    pub max_attempts: i32,
    /// Who records the fires (host and process), for operators.
    pub replica: String,
}

/// What one tick did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FireReport {
    pub queued: u32,
    pub skipped_busy: u32,
    pub missed: u32,
    pub failed: u32,
}

/// Fires every schedule due at `now` (the caller's clock: the ticker passes the current
/// time). Each schedule is its own transaction; an error on one is logged and the others
/// still fire.
pub async fn fire_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    opts: &FireOptions,
) -> anyhow::Result<FireReport> {
    let mut report = FireReport::default();
    let mut failed_ids: Vec<Uuid> = Vec::new();
    loop {
        let mut tx = pool.begin().await?;
        let Some(schedule) = db::schedules::lock_due(&mut tx, now, &failed_ids).await? else {
            break;
        };
        let id = schedule.id;
        match fire_one(&mut tx, &schedule, now, opts, &mut report).await {
            Ok(()) => tx.commit().await?,
            Err(e) => {
                drop(tx);
                tracing::error!(schedule_id = %id, error = %format!("{e:#}"), "firing a schedule failed; next tick retries");
                failed_ids.push(id);
            }
        }
    }
    Ok(report)
}

/// Records the schedule's due fires and moves its `next_run_at` past `now`.
async fn fire_one(
    tx: &mut PgConnection,
    s: &ScheduleRow,
    now: DateTime<Utc>,
    opts: &FireOptions,
    report: &mut FireReport,
) -> anyhow::Result<()> {
    let when = match When::parse(&s.cron, &s.timezone) {
        Ok(w) => w,
        Err(e) => {
            // Validated on write; a zone that a newer tz database dropped lands here.
            tracing::error!(schedule_id = %s.id, error = %e.message, "schedule cannot be read; disabled");
            db::schedules::set_next_run(tx, s.id, None).await?;
            return Ok(());
        }
    };
    let first = s.next_run_at.unwrap_or(now);
    let cutoff = now - opts.misfire_grace;
    // Fires older than the grace window were missed (the replicas were down): all of
    // them are folded into one record at the newest.
    let newest_missed = when
        .last_at_or_before(cutoff - Duration::nanoseconds(1))
        .filter(|m| *m >= first);
    if let Some(newest) = newest_missed {
        let covers = count_fires(&when, first, newest);
        if s.catch_up {
            fire(tx, s, newest, covers, now, opts, report).await?;
        } else {
            db::schedules::record_fire(
                tx,
                s.id,
                newest,
                "missed",
                covers,
                None,
                None,
                &opts.replica,
            )
            .await?;
            report.missed += 1;
            tracing::warn!(schedule_id = %s.id, fire_at = %newest, covers, "missed fires skipped (catch_up is off)");
        }
    }
    let on_time = when.fires_between(first.max(cutoff), now, MAX_FIRES_PER_TICK);
    for at in &on_time {
        fire(tx, s, *at, 1, now, opts, report).await?;
    }
    let next = when.next_after(now);
    db::schedules::set_next_run(tx, s.id, next).await?;
    Ok(())
}

/// Counts fires in `[from, to]` past the per-tick cap, a day at a time at most.
fn count_fires(when: &When, from: DateTime<Utc>, to: DateTime<Utc>) -> i32 {
    let mut n: i64 = 0;
    let mut t = from;
    // Ten million fires at most (115 days of an every-second schedule).
    for _ in 0..10_000 {
        if t > to {
            break;
        }
        let got = when.fires_between(t, to, MAX_FIRES_PER_TICK);
        n += got.len() as i64;
        match got.last() {
            Some(last) if got.len() == MAX_FIRES_PER_TICK => {
                t = *last + Duration::nanoseconds(1);
            }
            _ => break,
        }
    }
    n.min(i32::MAX as i64) as i32
}

/// One fire: a backup job, unless the source is busy.
async fn fire(
    tx: &mut PgConnection,
    s: &ScheduleRow,
    at: DateTime<Utc>,
    covers: i32,
    now: DateTime<Utc>,
    opts: &FireOptions,
    report: &mut FireReport,
) -> anyhow::Result<()> {
    if !db::schedules::record_fire(tx, s.id, at, "queued", covers, None, None, &opts.replica)
        .await?
    {
        // Recorded already (only possible when next_run_at was moved back by hand).
        return Ok(());
    }
    if let Some(busy) = crate::store::active_for_source(tx, s.source_id).await? {
        let error = serde_json::json!({
            "code": ErrorCode::JobInProgress,
            "message": format!("a {} job of this source was {}; this fire is skipped, not queued behind it", busy.kind, busy.status),
            "job_id": busy.id,
        });
        db::schedules::update_fire(tx, s.id, at, "skipped_busy", None, Some(&error)).await?;
        report.skipped_busy += 1;
        tracing::info!(schedule_id = %s.id, fire_at = %at, busy_job = %busy.id, "fire skipped: the source is busy");
        return Ok(());
    }
    // A savepoint: a job created meanwhile through the API (unique index on active jobs
    // per source) or a vanished source fails this fire only.
    let mut sp = tx.begin().await?;
    // Each fire's job starts a trace of its own, rooted in this span.
    let span = tracing::info_span!(
        parent: None,
        "schedule.fire",
        schedule_id = %s.id,
        fire_at = %at
    );
    match create_job(&mut sp, s, now, opts).instrument(span).await {
        Ok(Some(job_id)) => {
            sp.commit().await?;
            db::schedules::update_fire(tx, s.id, at, "queued", Some(job_id), None).await?;
            report.queued += 1;
            tracing::info!(schedule_id = %s.id, fire_at = %at, %job_id, covers, "schedule fired");
        }
        Ok(None) => {
            sp.rollback().await?;
            let error = serde_json::json!({"code": ErrorCode::JobInProgress,
                "message": EnqueueError::SourceBusy.to_string()});
            db::schedules::update_fire(tx, s.id, at, "skipped_busy", None, Some(&error)).await?;
            report.skipped_busy += 1;
        }
        Err(e) => {
            sp.rollback().await?;
            let error =
                serde_json::json!({"code": ErrorCode::FireFailed, "message": format!("{e:#}")});
            db::schedules::update_fire(tx, s.id, at, "failed", None, Some(&error)).await?;
            report.failed += 1;
            tracing::error!(schedule_id = %s.id, fire_at = %at, error = %format!("{e:#}"), "schedule fire failed");
        }
    }
    Ok(())
}

/// The backup job of a fire: as `POST /api/v1/backup` would make it, every part of the
/// source, created at `now`. `None` when the source is busy (a backup or restore of it
/// is queued or running).
async fn create_job(
    tx: &mut PgConnection,
    s: &ScheduleRow,
    now: DateTime<Utc>,
    opts: &FireOptions,
) -> anyhow::Result<Option<Uuid>> {
    let source = db::sources::get(tx, s.source_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the schedule's source {} no longer exists", s.source_id))?;
    let backup_type = BackupType::parse(&s.backup_type).map_err(|e| anyhow::anyhow!(e.message))?;
    let backup_id = BackupId::generate(&source.name, now);
    db::backups::insert_pending(tx, &backup_id, source.id, backup_type).await?;
    sqlx::query("UPDATE backups SET created_at = $2 WHERE id = $1")
        .bind(backup_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let spec = &source.spec.0;
    let payload = BackupPayload {
        backup_id: backup_id.clone(),
        source_id: source.id,
        backup_type,
        include_files: Some(spec.files.is_some()),
        include_database: Some(spec.database.is_some()),
    };
    let options = EnqueueOptions {
        schedule_id: Some(s.id),
        ..EnqueueOptions::new(opts.max_attempts)
    };
    match enqueue(tx, &JobRequest::Backup(payload), options).await {
        Ok(job_id) => Ok(Some(job_id)),
        Err(EnqueueError::SourceBusy) => Ok(None),
        Err(EnqueueError::Database(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields() {
        let w = When::parse("0 2 * * *", "UTC").unwrap();
        assert_eq!(
            w.next_after(utc("2026-03-01T02:00:00Z")),
            Some(utc("2026-03-02T02:00:00Z"))
        );
        let w = When::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            w.next_after(utc("2026-03-01T02:00:01Z")),
            Some(utc("2026-03-01T02:00:10Z"))
        );
    }

    #[test]
    fn bad_cron_and_zone_name_their_field() {
        for bad in [
            "",
            "0 2 * *",
            "61 * * * *",
            "0 2 * * * * 2026",
            "a b c d e",
            "0 0 31 2 *",
        ] {
            let e = parse_cron(bad).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.field.as_str()),
                ("invalid_cron", "cron"),
                "{bad:?}"
            );
        }
        let e = parse_timezone("Mars/Olympus").unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_str()),
            ("invalid_timezone", "timezone")
        );
        parse_timezone("Europe/Paris").unwrap();
    }

    #[test]
    fn wall_clock_of_the_zone_across_dst() {
        // Paris: 29 March 2026 02:00 → 03:00 (gap); 25 October 2026 03:00 → 02:00 (overlap).
        let w = When::parse("30 2 * * *", "Europe/Paris").unwrap();
        let paris = chrono_tz::Europe::Paris;
        let before = paris
            .with_ymd_and_hms(2026, 3, 28, 2, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        let gap = w.next_after(before).unwrap();
        // 02:30 does not exist that night: the fire runs right after the gap, once.
        assert_eq!(gap, utc("2026-03-29T01:00:00Z"));
        assert_eq!(w.next_after(gap).unwrap(), utc("2026-03-30T00:30:00Z"));
        // 02:30 happens twice on 25 October: one fire, at the first.
        let before = paris
            .with_ymd_and_hms(2026, 10, 24, 2, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        let overlap = w.next_after(before).unwrap();
        assert_eq!(overlap, utc("2026-10-25T00:30:00Z"));
        assert_eq!(w.next_after(overlap).unwrap(), utc("2026-10-26T01:30:00Z"));
        // Summer time: 02:30 Paris is 00:30 UTC.
        let fires = w.fires_between(utc("2026-06-01T00:00:00Z"), utc("2026-06-03T23:00:00Z"), 10);
        assert_eq!(
            fires,
            vec![
                utc("2026-06-01T00:30:00Z"),
                utc("2026-06-02T00:30:00Z"),
                utc("2026-06-03T00:30:00Z")
            ]
        );
    }

    #[test]
    fn counting_past_the_cap() {
        let w = When::parse("* * * * * *", "UTC").unwrap();
        let from = utc("2026-01-01T00:00:00Z");
        assert_eq!(count_fires(&w, from, from + Duration::seconds(4999)), 5000);
        assert_eq!(
            w.last_at_or_before(utc("2026-01-01T00:00:07.5Z")),
            Some(utc("2026-01-01T00:00:07Z"))
        );
        // Fractions of a second never leak into fire times.
        assert_eq!(
            w.next_after(utc("2026-01-01T00:00:07.5Z")),
            Some(utc("2026-01-01T00:00:08Z"))
        );
        assert_eq!(
            w.fires_between(
                utc("2026-01-01T00:00:07.5Z"),
                utc("2026-01-01T00:00:09.2Z"),
                10
            ),
            vec![utc("2026-01-01T00:00:08Z"), utc("2026-01-01T00:00:09Z")]
        );
    }
}
