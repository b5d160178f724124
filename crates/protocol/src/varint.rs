//! The VarInt length prefix of the MessagePack framing.
//!
//! 7 bits per byte, least significant group first, high bit set on every byte but the last;
//! at most 5 bytes and at most 2^31 - 1, like the .NET and JS implementations.

use crate::ProtocolError;

/// Longest valid prefix.
pub(crate) const MAX_PREFIX_LEN: usize = 5;

/// Appends the length prefix for a body of `len` bytes.
///
/// Lengths above 2^31 - 1 cannot be read by any peer; callers keep messages far smaller.
pub fn write_varint(len: usize, out: &mut Vec<u8>) {
    let mut rest = len;
    loop {
        let group = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(group);
            return;
        }
        out.push(group | 0x80);
    }
}

/// Reads a prefix from the start of `buf`.
///
/// `Ok(None)`: the prefix is not complete yet. `Ok(Some((body_len, prefix_len)))` otherwise.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut value: usize = 0;
    for index in 0..MAX_PREFIX_LEN {
        let Some(&byte) = buf.get(index) else {
            return Ok(None);
        };
        // The fifth byte may only contribute the top 3 bits of a 31-bit length; this also
        // rejects a continuation bit there.
        if index == MAX_PREFIX_LEN - 1 && byte > 0x07 {
            return Err(ProtocolError::InvalidLengthPrefix);
        }
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    // Unreachable in practice: the fifth byte either ends the prefix or is rejected above.
    Err(ProtocolError::InvalidLengthPrefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(len, &mut out);
        out
    }

    #[test]
    fn vectors() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(2), [0x02]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(i32::MAX as usize), [0xff, 0xff, 0xff, 0xff, 0x07]);
    }

    #[test]
    fn round_trip_and_partial() {
        for len in [
            0usize,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            i32::MAX as usize,
        ] {
            let bytes = encoded(len);
            assert_eq!(read_varint(&bytes), Ok(Some((len, bytes.len()))));
            for cut in 0..bytes.len() {
                assert_eq!(read_varint(&bytes[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn over_two_gigabytes_is_rejected() {
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x08]),
            Err(ProtocolError::InvalidLengthPrefix)
        );
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(ProtocolError::InvalidLengthPrefix)
        );
        // Non-minimal encodings are accepted, as by the .NET reader.
        assert_eq!(read_varint(&[0x82, 0x00]), Ok(Some((2, 2))));
    }
}
