//! Slows down repeated authentication failures from one client (e.g. one IP address).
//!
//! A client that fails `max_failures` times within `window` (counted from its first
//! failure in the window) is locked out for `lockout`: [`FailureLimiter::check`] returns
//! the time left, for a `429` with `Retry-After`. A lockout runs its course: failures
//! during it do not extend it and a success does not lift it. A success outside a lockout
//! forgets the client's failures.
//!
//! Memory is bounded: expired entries are swept at most once per `max(window, lockout)`,
//! and when the map holds `capacity` clients (100 000 by default) expired entries are
//! dropped and then, if needed, the least recently failed 10 % are evicted. Client names
//! longer than 128 bytes are stored as their BLAKE3 hash.
//!
//! Note: since a success resets the count, a client holding one valid credential can
//! interleave successes with guesses. Guessing is hopeless anyway against 256-bit API key
//! secrets and signed JWTs; the limiter exists to shed noise and load.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Failures within [`DEFAULT_WINDOW`] that lock a client out.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(60);
/// Most clients tracked at once.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Longer client names are hashed.
const MAX_CLIENT_LEN: usize = 128;

/// Counts failures per client; thread-safe.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<String, Entry>,
    last_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Entry {
    fn fresh(now: Instant) -> Self {
        Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
            last_failure: now,
        }
    }
}

impl Default for FailureLimiter {
    /// 10 failures per 60 s → locked out for 60 s.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FAILURES, DEFAULT_WINDOW, DEFAULT_LOCKOUT)
    }
}

impl FailureLimiter {
    /// A client is locked out for `lockout` on its `max_failures`-th failure within
    /// `window` (a `max_failures` of 0 counts as 1).
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            lockout,
            capacity: DEFAULT_CAPACITY,
            state: Mutex::new(State::default()),
        }
    }

    /// The same limiter tracking at most `capacity` clients (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// `Err(retry_after)` (never zero) while `client` is locked out, else `Ok`.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let key = client_key(client);
        let mut state = self.lock();
        if let Some(entry) = state.clients.get(key.as_ref()) {
            if let Some(until) = entry.locked_until {
                if now < until {
                    return Err(until - now);
                }
                state.clients.remove(key.as_ref());
            }
        }
        Ok(())
    }

    /// Counts a failed authentication by `client`.
    pub fn record_failure(&self, client: &str, now: Instant) {
        let key = client_key(client);
        let mut state = self.lock();
        self.maybe_sweep(&mut state, now);
        if !state.clients.contains_key(key.as_ref()) {
            self.make_room(&mut state, now);
            state
                .clients
                .insert(key.clone().into_owned(), Entry::fresh(now));
        }
        let entry = state
            .clients
            .get_mut(key.as_ref())
            .expect("entry inserted above");
        match entry.locked_until {
            Some(until) if now < until => return, // a lockout runs its course
            Some(_) => *entry = Entry::fresh(now),
            None if now.saturating_duration_since(entry.window_start) >= self.window => {
                *entry = Entry::fresh(now)
            }
            None => {}
        }
        entry.failures += 1;
        entry.last_failure = entry.last_failure.max(now);
        if entry.failures >= self.max_failures {
            entry.locked_until = Some(now + self.lockout);
        }
    }

    /// A successful authentication by `client`: forgets its failures, unless it is locked
    /// out (the lockout runs its course).
    pub fn record_success(&self, client: &str) {
        let key = client_key(client);
        let mut state = self.lock();
        if state
            .clients
            .get(key.as_ref())
            .is_some_and(|e| e.locked_until.is_none())
        {
            state.clients.remove(key.as_ref());
        }
    }

    /// Clients currently tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        match entry.locked_until {
            Some(until) => now >= until,
            None => now.saturating_duration_since(entry.window_start) >= self.window,
        }
    }

    fn purge_expired(&self, state: &mut State, now: Instant) {
        state.clients.retain(|_, e| !self.expired(e, now));
        state.last_sweep = Some(now);
    }

    fn maybe_sweep(&self, state: &mut State, now: Instant) {
        let every = self.window.max(self.lockout).max(Duration::from_secs(1));
        let due = match state.last_sweep {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= every,
        };
        if due {
            self.purge_expired(state, now);
        }
    }

    /// Before inserting a client into a full map: drop expired entries, then the least
    /// recently failed tenth (so the next full scan is `capacity / 10` inserts away).
    fn make_room(&self, state: &mut State, now: Instant) {
        if state.clients.len() < self.capacity {
            return;
        }
        self.purge_expired(state, now);
        let len = state.clients.len();
        if len < self.capacity {
            return;
        }
        let keep = self.capacity - (self.capacity / 10).max(1);
        let evict = len - keep;
        let mut by_age: Vec<(Instant, &String)> = state
            .clients
            .iter()
            .map(|(k, e)| (e.last_failure, k))
            .collect();
        by_age.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        let victims: Vec<String> = by_age[..evict].iter().map(|(_, k)| (*k).clone()).collect();
        for k in victims {
            state.clients.remove(&k);
        }
    }
}

fn client_key(client: &str) -> Cow<'_, str> {
    if client.len() <= MAX_CLIENT_LEN {
        Cow::Borrowed(client)
    } else {
        Cow::Owned(format!("#{}", blake3::hash(client.as_bytes()).to_hex()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const S: Duration = Duration::from_secs(1);

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(3, 60 * S, 30 * S)
    }

    #[test]
    fn limiter_locks_after_n_failures() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..2 {
            l.record_failure("1.2.3.4", t0 + i * S);
            assert!(l.check("1.2.3.4", t0 + i * S).is_ok());
        }
        l.record_failure("1.2.3.4", t0 + 2 * S);
        assert_eq!(l.check("1.2.3.4", t0 + 2 * S), Err(30 * S));
        // Other clients are unaffected.
        assert!(l.check("5.6.7.8", t0 + 2 * S).is_ok());
    }

    #[test]
    fn limiter_retry_after_shrinks_and_unlocks_after_lockout() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record_failure("c", t0);
        }
        assert_eq!(l.check("c", t0 + 10 * S), Err(20 * S));
        assert_eq!(l.check("c", t0 + 29 * S), Err(S));
        let almost = t0 + 30 * S - Duration::from_millis(1);
        assert_eq!(l.check("c", almost), Err(Duration::from_millis(1)));
        assert!(l.check("c", t0 + 30 * S).is_ok());
        // After the lockout the count starts again from zero.
        l.record_failure("c", t0 + 31 * S);
        l.record_failure("c", t0 + 31 * S);
        assert!(l.check("c", t0 + 31 * S).is_ok());
        l.record_failure("c", t0 + 31 * S);
        assert!(l.check("c", t0 + 31 * S).is_err());
    }

    #[test]
    fn limiter_failures_during_lockout_do_not_extend_it() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record_failure("c", t0);
        }
        l.record_failure("c", t0 + 20 * S);
        assert_eq!(l.check("c", t0 + 20 * S), Err(10 * S));
        assert!(l.check("c", t0 + 30 * S).is_ok());
    }

    #[test]
    fn limiter_failures_outside_the_window_do_not_add_up() {
        let l = limiter();
        let t0 = Instant::now();
        l.record_failure("c", t0);
        l.record_failure("c", t0 + 30 * S);
        l.record_failure("c", t0 + 61 * S); // window restarted: count 1
        l.record_failure("c", t0 + 62 * S);
        assert!(l.check("c", t0 + 62 * S).is_ok());
        l.record_failure("c", t0 + 63 * S);
        assert!(l.check("c", t0 + 63 * S).is_err());
    }

    #[test]
    fn limiter_success_resets() {
        let l = limiter();
        let t0 = Instant::now();
        l.record_failure("c", t0);
        l.record_failure("c", t0);
        l.record_success("c");
        assert!(l.is_empty());
        l.record_failure("c", t0);
        l.record_failure("c", t0);
        assert!(l.check("c", t0).is_ok());
        // But a success does not lift a lockout.
        l.record_failure("c", t0);
        assert!(l.check("c", t0).is_err());
        l.record_success("c");
        assert!(l.check("c", t0 + S).is_err());
        l.record_success("unknown");
    }

    #[test]
    fn limiter_max_failures_one_and_zero() {
        for max in [0, 1] {
            let l = FailureLimiter::new(max, 60 * S, 30 * S);
            let t0 = Instant::now();
            l.record_failure("c", t0);
            assert_eq!(l.check("c", t0), Err(30 * S));
        }
    }

    #[test]
    fn limiter_map_is_bounded() {
        let l = limiter().with_capacity(100);
        let t0 = Instant::now();
        for i in 0..1_000u32 {
            l.record_failure(
                &format!("10.0.{}.{}", i / 256, i % 256),
                t0 + Duration::from_millis(i.into()),
            );
            assert!(l.len() <= 100);
        }
        // The most recent clients are the ones kept.
        assert!(l.len() >= 90);
        let t = t0 + Duration::from_millis(999);
        l.record_failure("10.0.3.231", t);
        l.record_failure("10.0.3.231", t);
        assert!(
            l.check("10.0.3.231", t).is_err(),
            "the newest client's count was kept"
        );
    }

    #[test]
    fn limiter_expired_entries_are_swept() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..50 {
            l.record_failure(&format!("c{i}"), t0);
        }
        assert_eq!(l.len(), 50);
        // Past the window and the sweep interval, one more failure sweeps the rest.
        l.record_failure("late", t0 + 61 * S);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn limiter_long_client_names_are_hashed() {
        let l = FailureLimiter::new(1, 60 * S, 30 * S);
        let t0 = Instant::now();
        let long = "x".repeat(10_000);
        l.record_failure(&long, t0);
        assert!(l.check(&long, t0).is_err());
        assert!(l.check(&"x".repeat(9_999), t0).is_ok());
        let state = l.lock();
        assert!(state.clients.keys().all(|k| k.len() <= MAX_CLIENT_LEN));
    }

    #[test]
    fn limiter_is_thread_safe() {
        let l = Arc::new(FailureLimiter::new(1_000, 60 * S, 30 * S));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for _ in 0..249 {
                        l.record_failure("shared", t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(l.check("shared", t0).is_ok(), "996 < 1000 failures");
        for _ in 0..4 {
            l.record_failure("shared", t0);
        }
        assert!(l.check("shared", t0).is_err());
    }
}
