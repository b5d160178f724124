//! The outgoing queue of one connection.
//!
//! Producers (fan-out, keep-alive, the session answering its client) push pre-encoded frames;
//! the connection's transport drains them and writes them to the wire. The queue is bounded so
//! that a client that stops reading can never make the server buffer without limit: a push that
//! would exceed the bound fails with [`PushError::Overflow`] and the caller closes the connection.
//!
//! For stateful reconnect the queue also *retains* frames that were written but not yet
//! acknowledged by the client, so that they can be written again on a new transport.
//!
//! An idle outbox owns no heap memory: the deque allocates on first use and is shrunk again when
//! it empties after a burst.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use pushwarden_protocol::TransferFormat;
use tokio::sync::Notify;

/// Limits of one outbox.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    /// Maximum bytes of frames queued and not yet written.
    pub max_queued_bytes: usize,
    /// Maximum bytes of written-but-unacknowledged frames kept for stateful reconnect.
    pub max_retained_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_queued_bytes: 512 * 1024,
            // ASP.NET Core's StatefulReconnectBufferSize default.
            max_retained_bytes: 100_000,
        }
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// The queue is full: the client does not read fast enough.
    Overflow,
}

/// What a transport gets when it drains the outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Frames were appended to the caller's vector; write them in this format.
    Frames(TransferFormat),
    /// The connection is closing: the caller's vector holds the last frames to write (possibly
    /// none), after which the transport closes.
    Closed(TransferFormat),
}

struct Frame {
    bytes: Bytes,
    /// Sequence id for stateful reconnect; 0 for frames that are not tracked (pings, acks, ...).
    seq: u64,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Index in `frames` of the first frame not yet written. Frames before it are retained.
    unsent: usize,
    queued_bytes: usize,
    retained_bytes: usize,
    /// Sequence id the next tracked frame gets (stateful reconnect numbers from 1).
    next_seq: u64,
    retain: bool,
    binary: bool,
    /// Set once: no more pushes; the transport writes what is queued, then closes.
    closing: bool,
}

/// The outgoing queue of one connection. See the module documentation.
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    limits: OutboxLimits,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            wake: Notify::new(),
            limits,
        }
    }

    /// Sets the transfer format frames are written in (decided by the hub protocol).
    pub fn set_format(&self, format: TransferFormat) {
        self.state.lock().binary = format == TransferFormat::Binary;
    }

    /// Keep written frames until acknowledged (stateful reconnect was granted).
    pub fn set_retain(&self, retain: bool) {
        self.state.lock().retain = retain;
    }

    /// Queues a frame. `tracked` frames get a sequence id and are retained when retaining.
    pub fn push(&self, bytes: Bytes, tracked: bool) -> Result<(), PushError> {
        {
            let mut st = self.state.lock();
            if st.closing {
                return Err(PushError::Closed);
            }
            // With stateful reconnect every unacknowledged byte counts, as ASP.NET Core's
            // message buffer does; otherwise only what waits to be written.
            let (held, limit) = if st.retain {
                (
                    st.retained_bytes + st.queued_bytes,
                    self.limits.max_retained_bytes,
                )
            } else {
                (st.queued_bytes, self.limits.max_queued_bytes)
            };
            if held + bytes.len() > limit {
                return Err(PushError::Overflow);
            }
            let seq = if tracked {
                let s = st.next_seq;
                st.next_seq += 1;
                s
            } else {
                0
            };
            st.queued_bytes += bytes.len();
            st.frames.push_back(Frame { bytes, seq });
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Starts closing: queued frames are still written, then `last` (for example a protocol
    /// Close message), then the transport closes. With `discard_queued` the queued frames are
    /// dropped first (the client is too slow to be worth waiting for). Idempotent: only the
    /// first call has an effect; returns whether it was the first.
    pub fn close(&self, last: Option<Bytes>, discard_queued: bool) -> bool {
        {
            let mut st = self.state.lock();
            if st.closing {
                return false;
            }
            st.closing = true;
            if discard_queued {
                let unsent = st.unsent;
                st.frames.truncate(unsent);
                st.queued_bytes = 0;
            }
            if let Some(bytes) = last {
                st.queued_bytes += bytes.len();
                st.frames.push_back(Frame { bytes, seq: 0 });
            }
        }
        self.wake.notify_one();
        true
    }

    pub fn is_closing(&self) -> bool {
        self.state.lock().closing
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().queued_bytes
    }

    /// Moves queued frames into `out` (up to about `max_bytes`, at least one frame), waiting
    /// until there is one. Cancel-safe: frames are only taken when the call returns.
    /// Only one task may drain an outbox at a time.
    pub async fn drain(&self, out: &mut Vec<Bytes>, max_bytes: usize) -> Drained {
        loop {
            if let Some(drained) = self.try_drain(out, max_bytes) {
                return drained;
            }
            self.wake.notified().await;
        }
    }

    /// Non-waiting form of [`Outbox::drain`]: `None` when there is nothing to write.
    pub fn try_drain(&self, out: &mut Vec<Bytes>, max_bytes: usize) -> Option<Drained> {
        let mut st = self.state.lock();
        let format = if st.binary {
            TransferFormat::Binary
        } else {
            TransferFormat::Text
        };
        let mut taken = 0usize;
        while st.unsent < st.frames.len() && (taken == 0 || taken < max_bytes) {
            let idx = st.unsent;
            let frame = &st.frames[idx];
            let len = frame.bytes.len();
            let keep = st.retain && frame.seq != 0;
            out.push(frame.bytes.clone());
            taken += len;
            st.queued_bytes -= len;
            if keep {
                st.retained_bytes += len;
                st.unsent += 1;
            } else if idx == 0 {
                st.frames.pop_front();
            } else {
                // An untracked frame behind retained ones: it need not be resent.
                st.frames.remove(idx);
            }
        }
        if st.frames.is_empty() && st.frames.capacity() > 0 {
            // Give the queue's memory back: an idle connection should cost nothing here.
            st.frames = VecDeque::new();
        }
        if taken > 0 {
            // The last frames of a closing connection say so, so that a transport that
            // answers once per drain (a long poll) ends the connection now.
            if st.closing && st.unsent == st.frames.len() {
                Some(Drained::Closed(format))
            } else {
                Some(Drained::Frames(format))
            }
        } else if st.closing {
            Some(Drained::Closed(format))
        } else {
            None
        }
    }

    /// The client acknowledged every tracked frame up to and including `sequence_id`.
    pub fn ack(&self, sequence_id: u64) {
        let mut st = self.state.lock();
        while st.unsent > 0 {
            match st.frames.front() {
                Some(f) if f.seq <= sequence_id => {
                    let len = f.bytes.len();
                    st.frames.pop_front();
                    st.unsent -= 1;
                    st.retained_bytes -= len;
                }
                _ => break,
            }
        }
    }

    /// A new transport took over after a reconnect: every retained frame is written again,
    /// preceded by the frame `sequence(first_seq)` builds (the protocol's Sequence message,
    /// telling the client the id of the first frame it is about to receive).
    pub fn rewind(&self, sequence: impl FnOnce(u64) -> Bytes) {
        {
            let mut st = self.state.lock();
            let first_seq = st
                .frames
                .iter()
                .find(|f| f.seq != 0)
                .map(|f| f.seq)
                .unwrap_or(st.next_seq);
            let seq_frame = sequence(first_seq);
            st.queued_bytes += st.retained_bytes + seq_frame.len();
            st.retained_bytes = 0;
            st.unsent = 0;
            st.frames.push_front(Frame {
                bytes: seq_frame,
                seq: 0,
            });
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn push_drain_in_order() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(b("a"), true).unwrap();
        o.push(b("b"), false).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            o.try_drain(&mut out, 1024),
            Some(Drained::Frames(TransferFormat::Text))
        );
        assert_eq!(out, vec![b("a"), b("b")]);
        assert_eq!(o.try_drain(&mut out, 1024), None);
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn overflow_is_reported_and_nothing_is_queued() {
        let o = Outbox::new(OutboxLimits {
            max_queued_bytes: 4,
            max_retained_bytes: 0,
        });
        o.push(b("abc"), true).unwrap();
        assert_eq!(o.push(b("de"), true), Err(PushError::Overflow));
        assert_eq!(o.queued_bytes(), 3);
    }

    #[test]
    fn close_writes_queue_then_last_frame_then_reports_closed() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(b("a"), true).unwrap();
        assert!(o.close(Some(b("bye")), false));
        assert!(!o.close(Some(b("again")), false));
        assert_eq!(o.push(b("late"), true), Err(PushError::Closed));
        let mut out = Vec::new();
        assert_eq!(
            o.try_drain(&mut out, 1024),
            Some(Drained::Closed(TransferFormat::Text))
        );
        assert_eq!(out, vec![b("a"), b("bye")]);
        out.clear();
        assert_eq!(
            o.try_drain(&mut out, 1024),
            Some(Drained::Closed(TransferFormat::Text))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn close_discarding_drops_queued_frames() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(b("a"), true).unwrap();
        o.close(Some(b("bye")), true);
        let mut out = Vec::new();
        o.try_drain(&mut out, 1024);
        assert_eq!(out, vec![b("bye")]);
    }

    #[test]
    fn retained_frames_are_resent_after_rewind_until_acked() {
        let o = Outbox::new(OutboxLimits::default());
        o.set_retain(true);
        o.push(b("m1"), true).unwrap();
        o.push(b("ping"), false).unwrap();
        o.push(b("m2"), true).unwrap();
        let mut out = Vec::new();
        o.try_drain(&mut out, 1024);
        assert_eq!(out.len(), 3);
        o.ack(1);
        o.push(b("m3"), true).unwrap();
        o.rewind(|first| Bytes::from(format!("seq{first}")));
        out.clear();
        o.try_drain(&mut out, 1024);
        assert_eq!(out, vec![Bytes::from("seq2"), b("m2"), b("m3")]);
        o.ack(3);
        o.rewind(|first| Bytes::from(format!("seq{first}")));
        out.clear();
        o.try_drain(&mut out, 1024);
        assert_eq!(out, vec![Bytes::from("seq4")]);
    }

    #[test]
    fn drain_respects_byte_budget_but_always_makes_progress() {
        let o = Outbox::new(OutboxLimits::default());
        o.push(Bytes::from(vec![0u8; 100]), false).unwrap();
        o.push(Bytes::from(vec![0u8; 100]), false).unwrap();
        let mut out = Vec::new();
        o.try_drain(&mut out, 10);
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn drain_waits_for_a_push() {
        let o = std::sync::Arc::new(Outbox::new(OutboxLimits::default()));
        let o2 = o.clone();
        let waiter = tokio::spawn(async move {
            let mut out = Vec::new();
            o2.drain(&mut out, 1024).await;
            out
        });
        tokio::task::yield_now().await;
        o.push(b("x"), false).unwrap();
        assert_eq!(waiter.await.unwrap(), vec![b("x")]);
    }
}
