//! The session's own timers in one table keyed by [`Timer`] (as quinn-proto's
//! `TimerTable`): setting, stopping and asking for the earliest deadline.
//!
//! Per-message deadlines (a sent MSG's retransmission, a reorder gap, a
//! pending control request) stay with the sub-state that owns the message;
//! after every input the session copies each sub-state's earliest one into
//! [`Timer::Data`] / [`Timer::Control`], so `Session::poll_timeout` is this
//! table's [`Timers::next`].
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
    /// The earliest MSG retransmission or gap repair (the data sub-state
    /// keeps one deadline per message; this is their minimum).
    Data,
    /// The earliest control-request retransmission or give-up.
    Control,
    /// Held MSG_ACKs must go out (see `Session::hold_ack`).
    Ack,
}

impl Timer {
    const COUNT: usize = 6;

    fn index(self) -> usize {
        match self {
            Timer::Ping => 0,
            Timer::Watchdog => 1,
            Timer::Linger => 2,
            Timer::Data => 3,
            Timer::Control => 4,
            Timer::Ack => 5,
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

    /// Sets `timer` to `at`, or stops it when there is no deadline.
    pub(super) fn set_or_stop(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.index()] = at;
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

    #[test]
    fn a_sub_state_deadline_copied_in_moves_the_next_wakeup_and_none_stops_it() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(Timer::Ping, t0 + Duration::from_secs(10));
        t.set_or_stop(Timer::Data, Some(t0 + Duration::from_millis(200)));
        t.set_or_stop(Timer::Control, Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(200)));
        // Every MSG acknowledged: the data sub-state has no deadline left.
        t.set_or_stop(Timer::Data, None);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        t.set_or_stop(Timer::Control, None);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
    }
}
