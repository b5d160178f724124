//! The raw ceiling's wire format: the exact bytes pushwarden sends a MessagePack client for a
//! fan-out notification, in an unmasked server-to-client WebSocket binary frame, and a reader
//! that splits a byte stream into such frames without a WebSocket library.

use anyhow::{anyhow, Result};
use pushwarden_bitwarden::Notification;
use pushwarden_protocol::Protocol;
use serde_json::json;

use crate::{ids, marker};

/// The `/send` envelope of fan-out notification `seq` sent at `nanos` to organization `org`.
pub fn fanout_envelope(org: &str, seq: u64, nanos: u64) -> String {
    json!({
        "type": 18,
        "payload": {"organizationId": org, "enabled": true},
        "contextId": marker::context_id(seq, nanos),
    })
    .to_string()
}

/// The `/send` envelope of unicast notification `seq` (type 5, SyncVault) to `user`.
pub fn unicast_envelope(user: &str, seq: u64, nanos: u64) -> String {
    json!({
        "type": 5,
        "payload": {"userId": user, "date": "2024-01-01T00:00:00Z"},
        "contextId": marker::context_id(seq, nanos),
    })
    .to_string()
}

/// Appends the header of a final, unmasked binary frame of `len` payload bytes.
pub fn binary_frame_header(len: usize, out: &mut Vec<u8>) {
    out.push(0x82);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// The hub message a MessagePack client of pushwarden receives for a fan-out notification
/// (organization 0), encoded by the server's own code, and where its context id starts.
pub fn fanout_message_template() -> Result<(Vec<u8>, usize)> {
    let envelope = fanout_envelope(&ids::org_id(0), 0, 0);
    let notification =
        Notification::parse(envelope.as_bytes()).map_err(|e| anyhow!("envelope: {e:?}"))?;
    let message = notification.message("ReceiveMessage");
    let message = message.bytes(Protocol::MessagePack).to_vec();
    let at = message
        .windows(marker::PREFIX.len())
        .position(|w| w == marker::PREFIX)
        .ok_or_else(|| anyhow!("context id not found in the encoded message"))?;
    Ok((message, at))
}

/// Calls `on_frame` with the payload of every complete frame at the start of `buf`; returns
/// how many bytes those frames took (the rest is an incomplete frame). Masked frames are
/// accepted (the mask is not applied: only lengths matter here).
pub fn scan_frames(buf: &[u8], mut on_frame: impl FnMut(&[u8])) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            return at;
        }
        let masked = rest[1] & 0x80 != 0;
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return at,
            n => (u64::from(n), 2),
        };
        let header: usize = header + if masked { 4 } else { 0 };
        let Ok(len) = usize::try_from(len) else {
            return at;
        };
        let Some(total) = header.checked_add(len) else {
            return at;
        };
        if rest.len() < total {
            return at;
        }
        on_frame(&rest[header..total]);
        at += total;
    }
}

/// Bytes a frame needs in the buffer, from its header: `None` until the header is complete.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let mask = if buf[1] & 0x80 != 0 { 4 } else { 0 };
    let (len, header) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(buf.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(b)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    len.checked_add(header + mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_carries_a_context_id() {
        let (mut message, at) = fanout_message_template().unwrap();
        marker::patch(&mut message, at, 12, 34);
        let mut frame = Vec::new();
        binary_frame_header(message.len(), &mut frame);
        frame.extend_from_slice(&message);
        assert_eq!(frame[0], 0x82);
        assert_eq!(marker::find(&frame), Some((12, 34)));
        let mut seen = 0;
        let used = scan_frames(&frame, |payload| {
            seen += 1;
            assert_eq!(marker::find(payload), Some((12, 34)));
        });
        assert_eq!((seen, used), (1, frame.len()));
        assert_eq!(frame_len(&frame), Some(frame.len()));
    }

    #[test]
    fn split_and_long_frames() {
        let mut stream = Vec::new();
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            binary_frame_header(len, &mut stream);
            stream.extend(std::iter::repeat_n(7u8, len));
        }
        let mut lens = Vec::new();
        let mut used = 0;
        // Feed it in awkward pieces.
        let mut end = 0;
        while used < stream.len() {
            end = (end + 97).min(stream.len());
            used += scan_frames(&stream[used..end], |p| lens.push(p.len()));
        }
        assert_eq!(lens, vec![0, 5, 125, 126, 300, 70_000]);
        assert_eq!(frame_len(&stream[..1]), None);
    }
}
