//! The send timestamp carried in a notification's `contextId`, which servers pass through
//! unchanged: `bench:<seq, 10 digits>:<unix nanoseconds, 19 digits>`. Fixed width, so every
//! notification of a run has the same size and a pre-encoded frame can be patched in place.

use std::time::{SystemTime, UNIX_EPOCH};

pub const PREFIX: &[u8] = b"bench:";
const SEQ_DIGITS: usize = 10;
const NANOS_DIGITS: usize = 19;
/// Length of a context id.
pub const LEN: usize = PREFIX.len() + SEQ_DIGITS + 1 + NANOS_DIGITS;

/// Nanoseconds since the Unix epoch (the clock every process on the machine shares).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn context_id(seq: u64, nanos: u64) -> String {
    format!("bench:{seq:010}:{nanos:019}")
}

/// Parses a context id (exactly [`LEN`] bytes).
pub fn parse(id: &[u8]) -> Option<(u64, u64)> {
    if id.len() != LEN || !id.starts_with(PREFIX) {
        return None;
    }
    let seq = digits(&id[PREFIX.len()..PREFIX.len() + SEQ_DIGITS])?;
    if id[PREFIX.len() + SEQ_DIGITS] != b':' {
        return None;
    }
    let nanos = digits(&id[PREFIX.len() + SEQ_DIGITS + 1..])?;
    Some((seq, nanos))
}

/// Finds a context id anywhere in `bytes` (a raw frame) and parses it.
#[cfg(test)]
pub fn find(bytes: &[u8]) -> Option<(u64, u64)> {
    let at = bytes.windows(PREFIX.len()).position(|w| w == PREFIX)?;
    parse(bytes.get(at..at + LEN)?)
}

/// Calls `found` for every context id in `bytes` (several hub messages in one frame).
pub fn find_all(bytes: &[u8], mut found: impl FnMut(Option<(u64, u64)>)) {
    let mut rest = bytes;
    while let Some(at) = rest.windows(PREFIX.len()).position(|w| w == PREFIX) {
        found(rest.get(at..at + LEN).and_then(parse));
        rest = &rest[at + PREFIX.len()..];
    }
}

/// Overwrites the context id at `at` in `bytes` (as placed by [`context_id`]).
pub fn patch(bytes: &mut [u8], at: usize, seq: u64, nanos: u64) {
    let id = context_id(seq, nanos);
    bytes[at..at + LEN].copy_from_slice(id.as_bytes());
}

fn digits(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let now = unix_nanos();
        let id = context_id(42, now);
        assert_eq!(id.len(), LEN);
        assert_eq!(parse(id.as_bytes()), Some((42, now)));
        let mut frame = b"xx\xa9ContextId\xd9\x24".to_vec();
        frame.extend_from_slice(id.as_bytes());
        frame.push(0xc3);
        assert_eq!(find(&frame), Some((42, now)));
        let at = frame.windows(6).position(|w| w == PREFIX).unwrap();
        patch(&mut frame, at, 7, 9);
        assert_eq!(find(&frame), Some((7, 9)));
        assert_eq!(parse(b"bench:x"), None);
        assert_eq!(find(b"nothing here"), None);
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        let mut seen = Vec::new();
        find_all(&two, |f| seen.push(f));
        assert_eq!(seen, vec![Some((7, 9)), Some((7, 9))]);
    }
}
