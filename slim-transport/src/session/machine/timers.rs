//! The session's own timers in one table keyed by [`Timer`] (as quinn-proto's
//! `TimerTable`): setting, stopping and asking for the earliest deadline.
//!
//! Per-message deadlines (a sent MSG's retransmission, a reorder gap, a
//! pending control request) stay with the sub-state that owns the message;
//! `Session::poll_timeout` folds their earliest deadline in with this table.
//! This module never reads a clock: every deadline is computed by the caller
//! from the `now` it was given.

use std::time::Instant;

/// A session-wide timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Moderator: start the next ping round.
    Ping,
    /// Participant: the moderator has been silent for too long.
    Watchdog,
    /// Closed: the session may be dropped (until then it still answers
    /// repeated GROUP_CLOSE / LEAVE_REQUEST).
    Linger,
}

impl Timer {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        match self {
            Timer::Ping => 0,
            Timer::Watchdog => 1,
            Timer::Linger => 2,
        }
    }
}

/// Deadlines of the [`Timer`]s; a stopped timer has none.
#[derive(Debug, Clone, Default)]
pub(super) struct Timers {
    at: [Option<Instant>; Timer::COUNT],
}

impl Timers {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.at[timer.index()] = None;
    }

    /// True when `timer` is set and due at `now`.
    pub(super) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest deadline of all timers.
    pub(super) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn next_is_the_earliest_running_timer_and_stopped_timers_do_not_count() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Ping, t0 + Duration::from_secs(10));
        t.set(Timer::Watchdog, t0 + Duration::from_secs(3));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(3)));
        t.stop(Timer::Watchdog);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
        assert!(!t.is_expired(Timer::Ping, t0 + Duration::from_secs(9)));
        assert!(t.is_expired(Timer::Ping, t0 + Duration::from_secs(10)));
        assert!(!t.is_expired(Timer::Linger, t0 + Duration::from_secs(100)));
    }
}
