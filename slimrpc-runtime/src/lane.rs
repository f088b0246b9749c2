//! One call's queue between a session's single reader and that call.
//!
//! Job: let the reader hand a call its frames without ever waiting (the
//! reader serves every call of the session: waiting for one would hold up
//! the others), while a call whose consumer stops reading still costs
//! bounded memory and gets a clear end. Used by the client's dispatcher
//! (responses) and the server's demultiplexer (request streams).
//! Must not: wait, interpret what it carries, or end a lane whose consumer
//! reads, however late, within its limits.
//!
//! The rules: a lane holds any number of items up to its `buffer`. Past it,
//! the writer learns that a watchdog should look after the lane
//! ([`Push::Watch`]); the watchdog ([`LaneTx::watch`]) checks every `wait`
//! that the consumer took at least one item since its last look and runs
//! the writer's `on_stall` when it did not. At [`hold_limit`] items the
//! lane refuses the next one ([`Push::Full`]) whoever reads. Notices (the
//! few out-of-band events) never count and always get through.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

/// The most items a lane with a `buffer`-item buffer ever holds: twice its
/// buffer, and at least 16 more than it.
pub const fn hold_limit(buffer: usize) -> usize {
    let twice = buffer.saturating_mul(2);
    let plus = buffer.saturating_add(16);
    if twice > plus { twice } else { plus }
}

enum Slot<T> {
    Counted(T),
    Notice(T),
}

/// What the writer and the consumer share.
#[derive(Default)]
struct Progress {
    /// Counted items queued and not yet taken.
    held: AtomicUsize,
    /// Counted items taken so far.
    taken: AtomicU64,
    /// A watchdog looks after the lane.
    watched: AtomicBool,
    /// The writer ended the lane ([`LaneTx::end`]): nothing more goes in.
    ended: AtomicBool,
}

/// Outcome of [`LaneTx::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued.
    Queued,
    /// Queued, past the buffer, and no watchdog looks after the lane yet:
    /// the writer should start one ([`LaneTx::watch`]).
    Watch,
    /// Not queued: the lane holds [`hold_limit`] items. The writer should
    /// end it.
    Full,
    /// Not queued: the consumer is gone or the lane was ended.
    Closed,
}

/// The writer's end; cloneable.
pub struct LaneTx<T> {
    tx: mpsc::UnboundedSender<Slot<T>>,
    progress: Arc<Progress>,
    buffer: usize,
}

impl<T> Clone for LaneTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            progress: self.progress.clone(),
            buffer: self.buffer,
        }
    }
}

/// The consumer's end.
pub struct LaneRx<T> {
    rx: mpsc::UnboundedReceiver<Slot<T>>,
    progress: Arc<Progress>,
}

/// A lane whose consumer may leave `buffer` items (at least 1) unread
/// without having to show progress.
pub fn lane<T>(buffer: usize) -> (LaneTx<T>, LaneRx<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let progress = Arc::new(Progress::default());
    (
        LaneTx {
            tx,
            progress: progress.clone(),
            buffer: buffer.max(1),
        },
        LaneRx { rx, progress },
    )
}

impl<T: Send + 'static> LaneTx<T> {
    /// Queues a counted item, never waiting.
    pub fn push(&self, item: T) -> Push {
        let p = &self.progress;
        if p.ended.load(Ordering::Acquire) {
            return Push::Closed;
        }
        let held = p.held.load(Ordering::Acquire);
        if held >= hold_limit(self.buffer) {
            return Push::Full;
        }
        // Counted before the send so the consumer never sees it below zero.
        p.held.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Slot::Counted(item)).is_err() {
            p.held.fetch_sub(1, Ordering::AcqRel);
            return Push::Closed;
        }
        if held >= self.buffer && !p.watched.swap(true, Ordering::AcqRel) {
            Push::Watch
        } else {
            Push::Queued
        }
    }

    /// Queues an uncounted notice; false when the consumer is gone.
    pub fn notice(&self, item: T) -> bool {
        self.tx.send(Slot::Notice(item)).is_ok()
    }

    /// Ends the lane: `last` is the last thing its consumer gets (after
    /// what it holds), and every later push is refused.
    pub fn end(&self, last: T) {
        if !self.progress.ended.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Slot::Notice(last));
        }
    }

    /// True when the consumer is gone or the lane was ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.progress.ended.load(Ordering::Acquire)
    }

    /// True when both ends are the same lane.
    pub fn same_lane(&self, other: &Self) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Looks after the lane, which holds more than its buffer: every
    /// `wait`, runs `on_stall` (once, then leaves) unless the consumer took
    /// an item since the last look; leaves once the lane is back within its
    /// buffer or closed. Needs a tokio runtime; without one, only
    /// [`hold_limit`] bounds the lane.
    pub fn watch(&self, wait: Duration, on_stall: impl FnOnce() + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lane = self.clone();
        runtime.spawn(async move {
            let p = &lane.progress;
            let mut seen = p.taken.load(Ordering::Acquire);
            loop {
                tokio::time::sleep(wait).await;
                if lane.is_closed() {
                    return;
                }
                if p.held.load(Ordering::Acquire) <= lane.buffer {
                    p.watched.store(false, Ordering::Release);
                    // An item queued between the load and the store found
                    // the watch still on: look again rather than leave the
                    // lane unwatched.
                    if p.held.load(Ordering::Acquire) <= lane.buffer
                        || p.watched.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                let taken = p.taken.load(Ordering::Acquire);
                if taken == seen {
                    on_stall();
                    return;
                }
                seen = taken;
            }
        });
    }
}

impl<T> LaneRx<T> {
    /// The next item or notice; `None` once every writer is gone.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Slot::Notice(item))) => Poll::Ready(Some(item)),
            Poll::Ready(Some(Slot::Counted(item))) => {
                self.progress.held.fetch_sub(1, Ordering::AcqRel);
                self.progress.taken.fetch_add(1, Ordering::AcqRel);
                Poll::Ready(Some(item))
            }
        }
    }

    /// As [`Self::poll_recv`]; cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn the_hold_limit_is_twice_the_buffer_and_at_least_sixteen_more() {
        assert_eq!(hold_limit(1), 17);
        assert_eq!(hold_limit(16), 32);
        assert_eq!(hold_limit(1024), 2048);
        assert_eq!(hold_limit(usize::MAX), usize::MAX);
    }

    #[tokio::test]
    async fn pushes_past_the_buffer_ask_for_one_watchdog_and_the_limit_refuses() {
        let (tx, mut rx) = lane::<u32>(2);
        assert_eq!(tx.push(0), Push::Queued);
        assert_eq!(tx.push(1), Push::Queued);
        assert_eq!(tx.push(2), Push::Watch);
        for i in 3..18 {
            assert_eq!(tx.push(i), Push::Queued, "{i}");
        }
        assert_eq!(tx.push(18), Push::Full);
        // Notices get through a full lane.
        assert!(tx.notice(100));
        for i in 0..18 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert_eq!(rx.recv().await, Some(100));
    }

    #[tokio::test]
    async fn an_ended_lane_gives_its_items_then_the_last_word_and_refuses_more() {
        let (tx, mut rx) = lane::<u32>(4);
        tx.push(1);
        tx.end(99);
        tx.end(98);
        assert!(tx.is_closed());
        assert_eq!(tx.push(2), Push::Closed);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(99));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_dropped_consumer_closes_the_lane() {
        let (tx, rx) = lane::<u32>(4);
        drop(rx);
        assert_eq!(tx.push(1), Push::Closed);
        assert!(tx.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_a_stalled_lane_and_spares_one_that_makes_progress() {
        let stalls = Arc::new(AtomicUsize::new(0));
        let counted = |s: &Arc<AtomicUsize>| {
            let s = s.clone();
            move || {
                s.fetch_add(1, Ordering::SeqCst);
            }
        };
        // Progressing: one item taken per 40 ms against a 50 ms watch.
        let (tx, mut rx) = lane::<u32>(1);
        tx.push(0);
        assert_eq!(tx.push(1), Push::Watch);
        tx.push(2);
        tx.push(3);
        tx.watch(Duration::from_millis(50), counted(&stalls));
        for i in 0..3 {
            assert_eq!(rx.recv().await, Some(i));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            stalls.load(Ordering::SeqCst),
            0,
            "a slow reader is no stall"
        );
        // Back within its buffer: the watchdog left; the next overflow asks again.
        assert_eq!(tx.push(4), Push::Watch);

        // Stalled: nothing taken during the wait.
        let (tx, _rx) = lane::<u32>(1);
        tx.push(0);
        assert_eq!(tx.push(1), Push::Watch);
        tx.watch(Duration::from_millis(50), counted(&stalls));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(stalls.load(Ordering::SeqCst), 0, "not before the wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(stalls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(stalls.load(Ordering::SeqCst), 1, "once");
    }
}
