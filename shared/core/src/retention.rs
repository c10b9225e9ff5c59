//! Retention policies: which backups of one source a prune keeps and which it deletes.
//! Pure computation (no I/O), with semantics like restic's `forget`:
//!
//! - `keep_last N`: the N newest complete backups;
//! - `daily N` / `weekly N` / `monthly N` / `yearly N`: the newest backup of each of the N
//!   most recent calendar days (UTC) / ISO weeks / months / years that have backups;
//! - `retention_days N`: every backup created within the last N days.
//!
//! A backup is kept when any rule keeps it, and then every ancestor of a kept backup
//! (its chain) is kept too, so no kept backup loses a parent it needs. Failed backups
//! hold no restorable data and are always deleted; pending and deleting ones are never
//! touched.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Maps a time to its calendar bucket (day, ISO week, month or year).
type BucketOf = fn(&DateTime<Utc>) -> (i32, u32);

/// A retention policy; a field left out keeps nothing by that rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

impl Policy {
    /// The wire names of the rules, as requests and stored policies spell them.
    pub const FIELDS: [&'static str; 6] = [
        "keep_last",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "retention_days",
    ];

    /// The policy used when neither the request nor the source names one.
    pub const DEFAULT: Policy = Policy {
        keep_last: None,
        daily: Some(7),
        weekly: Some(4),
        monthly: None,
        yearly: None,
        retention_days: None,
    };

    /// No field given at all.
    pub fn is_unset(&self) -> bool {
        *self == Policy::default()
    }

    /// Every given field is zero: such a policy would delete every backup.
    pub fn keeps_nothing(&self) -> bool {
        [
            self.keep_last,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
            self.retention_days,
        ]
        .iter()
        .all(|f| f.unwrap_or(0) == 0)
    }
}

/// What a backup is, as far as retention cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Complete,
    Failed,
    /// Pending or deleting: neither kept nor deleted by a prune.
    Other,
}

impl State {
    pub fn from_status(status: &str) -> Self {
        match status {
            "complete" => State::Complete,
            "failed" => State::Failed,
            _ => State::Other,
        }
    }
}

/// One backup of the source being pruned.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub parent_id: Option<String>,
    pub state: State,
    pub created_at: DateTime<Utc>,
}

/// The outcome for one source. Lists are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Complete backups that stay (by a rule, as an ancestor, or pinned).
    pub keep: Vec<String>,
    /// Complete and failed backups to delete.
    pub delete: Vec<String>,
    /// Backups the policy would delete but that are kept because they are pinned (a job
    /// uses them) or are an ancestor of a pinned backup.
    pub skipped: Vec<String>,
}

/// Decides what a prune of one source does. `pinned` backups (used by a queued or
/// running job) are never deleted, nor are their ancestors.
pub fn decide(
    items: &[Item],
    policy: &Policy,
    now: DateTime<Utc>,
    pinned: &HashSet<String>,
) -> Decision {
    let mut ordered: Vec<&Item> = items.iter().collect();
    ordered.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let complete: Vec<&Item> = ordered
        .iter()
        .copied()
        .filter(|i| i.state == State::Complete)
        .collect();

    let mut kept: HashSet<&str> = HashSet::new();
    if let Some(n) = policy.keep_last {
        kept.extend(complete.iter().take(n as usize).map(|i| i.id.as_str()));
    }
    let buckets: [(Option<u32>, BucketOf); 4] = [
        (policy.daily, |t| (t.year(), t.ordinal())),
        (policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        (policy.monthly, |t| (t.year(), t.month())),
        (policy.yearly, |t| (t.year(), 0)),
    ];
    for (count, bucket) in buckets {
        if let Some(n) = count {
            kept.extend(newest_per_bucket(&complete, n, bucket));
        }
    }
    if let Some(days) = policy.retention_days {
        // A window reaching before the calendar's start keeps everything (it must not
        // overflow: `retention_days` is any u32 the client sent).
        let since = now
            .checked_sub_signed(Duration::days(i64::from(days)))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        kept.extend(
            complete
                .iter()
                .filter(|i| i.created_at >= since)
                .map(|i| i.id.as_str()),
        );
    }

    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let by_policy = with_ancestors(&by_id, kept.iter().copied());
    let pinned_roots = items
        .iter()
        .filter(|i| pinned.contains(&i.id))
        .map(|i| i.id.as_str());
    let by_pin = with_ancestors(&by_id, pinned_roots);

    let mut decision = Decision::default();
    for item in ordered {
        let id = item.id.as_str();
        if item.state == State::Other {
            continue;
        }
        if item.state == State::Complete && by_policy.contains(id) {
            decision.keep.push(item.id.clone());
        } else if by_pin.contains(id) {
            decision.skipped.push(item.id.clone());
        } else {
            decision.delete.push(item.id.clone());
        }
    }
    decision
}

/// The newest backup of each of the `n` most recent buckets that have backups.
fn newest_per_bucket<'a>(
    newest_first: &[&'a Item],
    n: u32,
    bucket: fn(&DateTime<Utc>) -> (i32, u32),
) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut last = None;
    for item in newest_first {
        if out.len() >= n as usize {
            break;
        }
        let b = bucket(&item.created_at);
        if last != Some(b) {
            out.push(item.id.as_str());
            last = Some(b);
        }
    }
    out
}

/// `roots` and every ancestor of them (following `parent_id` through `by_id`).
fn with_ancestors<'a>(
    by_id: &HashMap<&'a str, &'a Item>,
    roots: impl Iterator<Item = &'a str>,
) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    for root in roots {
        let mut next = Some(root);
        while let Some(id) = next {
            if !out.insert(id) {
                break;
            }
            next = by_id
                .get(id)
                .and_then(|i| i.parent_id.as_deref())
                .and_then(|p| by_id.get_key_value(p).map(|(k, _)| *k));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn item(id: &str, parent: Option<&str>, state: State, t: DateTime<Utc>) -> Item {
        Item {
            id: id.into(),
            parent_id: parent.map(str::to_string),
            state,
            created_at: t,
        }
    }

    fn full(id: &str, t: DateTime<Utc>) -> Item {
        item(id, None, State::Complete, t)
    }

    fn run(items: &[Item], policy: Policy) -> Decision {
        decide(items, &policy, at(2026, 3, 31, 23), &HashSet::new())
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_complete_ones() {
        let items = [
            full("a", at(2026, 3, 1, 1)),
            full("b", at(2026, 3, 2, 1)),
            full("c", at(2026, 3, 3, 1)),
            item("f", None, State::Failed, at(2026, 3, 4, 1)),
            item("p", None, State::Other, at(2026, 3, 5, 1)),
        ];
        let d = run(
            &items,
            Policy {
                keep_last: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(d.keep, ids(&["c", "b"]));
        // Failed ones are always deleted; pending ones never appear.
        assert_eq!(d.delete, ids(&["f", "a"]));
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn chain_protection_keeps_every_ancestor() {
        let items = [
            full("f", at(2026, 3, 1, 1)),
            item("i1", Some("f"), State::Complete, at(2026, 3, 2, 1)),
            item("i2", Some("i1"), State::Complete, at(2026, 3, 3, 1)),
            full("g", at(2026, 2, 1, 1)),
        ];
        let d = run(
            &items,
            Policy {
                keep_last: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(d.keep, ids(&["i2", "i1", "f"]));
        assert_eq!(d.delete, ids(&["g"]));
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day() {
        let items = [
            full("d1-early", at(2026, 3, 1, 1)),
            full("d1-late", at(2026, 3, 1, 20)),
            full("d2", at(2026, 3, 2, 5)),
            full("d4-a", at(2026, 3, 4, 5)),
            full("d4-b", at(2026, 3, 4, 6)),
        ];
        let d = run(
            &items,
            Policy {
                daily: Some(2),
                ..Default::default()
            },
        );
        // Days without backups do not count: the two most recent days with backups.
        assert_eq!(d.keep, ids(&["d4-b", "d2"]));
        assert_eq!(d.delete, ids(&["d4-a", "d1-late", "d1-early"]));
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2026-03-01 is a Sunday (ISO week 9); 2026-03-02 a Monday (week 10).
        let items = [
            full("sat", at(2026, 2, 28, 1)),
            full("sun", at(2026, 3, 1, 1)),
            full("mon", at(2026, 3, 2, 1)),
            full("tue", at(2026, 3, 3, 1)),
        ];
        let d = run(
            &items,
            Policy {
                weekly: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(d.keep, ids(&["tue", "sun"]));
        assert_eq!(d.delete, ids(&["mon", "sat"]));
    }

    #[test]
    fn monthly_and_yearly() {
        let items = [
            full("2024", at(2024, 6, 1, 1)),
            full("2025-jan", at(2025, 1, 10, 1)),
            full("2025-dec", at(2025, 12, 10, 1)),
            full("2026-feb", at(2026, 2, 10, 1)),
            full("2026-mar-a", at(2026, 3, 1, 1)),
            full("2026-mar-b", at(2026, 3, 9, 1)),
        ];
        let monthly = run(
            &items,
            Policy {
                monthly: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(monthly.keep, ids(&["2026-mar-b", "2026-feb"]));
        let yearly = run(
            &items,
            Policy {
                yearly: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(yearly.keep, ids(&["2026-mar-b", "2025-dec", "2024"]));
    }

    #[test]
    fn a_retention_window_longer_than_the_calendar_keeps_everything() {
        let items = [
            full("old", at(2000, 1, 1, 12)),
            full("new", at(2026, 3, 1, 12)),
        ];
        let d = run(
            &items,
            Policy {
                retention_days: Some(u32::MAX),
                ..Default::default()
            },
        );
        assert!(d.delete.is_empty(), "{d:?}");
    }

    #[test]
    fn retention_days_keeps_everything_recent() {
        let items = [
            full("old", at(2026, 3, 20, 22)),
            full("edge", at(2026, 3, 24, 23)),
            full("new1", at(2026, 3, 30, 1)),
            full("new2", at(2026, 3, 30, 2)),
        ];
        let d = run(
            &items,
            Policy {
                retention_days: Some(7),
                ..Default::default()
            },
        );
        assert_eq!(d.keep, ids(&["new2", "new1", "edge"]));
        assert_eq!(d.delete, ids(&["old"]));
    }

    #[test]
    fn rules_combine_as_a_union() {
        let items = [
            full("a", at(2026, 1, 5, 1)),
            full("b", at(2026, 3, 30, 1)),
            full("c", at(2026, 3, 30, 2)),
        ];
        let d = run(
            &items,
            Policy {
                keep_last: Some(1),
                monthly: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(d.keep, ids(&["c", "a"]));
        assert_eq!(d.delete, ids(&["b"]));
    }

    #[test]
    fn defaults_are_seven_daily_and_four_weekly() {
        assert!(Policy::default().is_unset());
        assert_eq!(Policy::DEFAULT.daily, Some(7));
        assert_eq!(Policy::DEFAULT.weekly, Some(4));
        // One backup a day for 60 days: 7 days, plus the newest of 4 weeks (3 of them
        // older than the 7 days, since the newest week's newest is already kept).
        let items: Vec<Item> = (0..60)
            .map(|i| full(&format!("b{i:02}"), at(2026, 1, 1, 12) + Duration::days(i)))
            .collect();
        let d = run(&items, Policy::DEFAULT);
        // 2026-03-01 (b59) is a Sunday: the weekly picks are the Sundays b59, b52, b45, b38.
        assert_eq!(
            d.keep,
            ids(&["b59", "b58", "b57", "b56", "b55", "b54", "b53", "b52", "b45", "b38"])
        );
        assert_eq!(d.delete.len(), 50);
    }

    #[test]
    fn pinned_backups_and_their_ancestors_are_skipped_not_deleted() {
        let items = [
            full("f", at(2026, 3, 1, 1)),
            item("i", Some("f"), State::Complete, at(2026, 3, 2, 1)),
            full("g", at(2026, 3, 3, 1)),
        ];
        let pinned: HashSet<String> = ["i".to_string()].into();
        let d = decide(
            &items,
            &Policy {
                keep_last: Some(1),
                ..Default::default()
            },
            at(2026, 3, 31, 1),
            &pinned,
        );
        assert_eq!(d.keep, ids(&["g"]));
        assert_eq!(d.skipped, ids(&["i", "f"]));
        assert!(d.delete.is_empty());
    }

    #[test]
    fn keeps_nothing_detects_all_zero_policies() {
        assert!(Policy {
            keep_last: Some(0),
            ..Default::default()
        }
        .keeps_nothing());
        assert!(!Policy::DEFAULT.keeps_nothing());
    }
}
