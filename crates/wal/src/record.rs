//! Record framing: encoding, checked decoding, and the forward search that tells a torn tail
//! apart from damage in the middle of the log.
//!
//! A frame is `len: u32 LE | crc32c: u32 LE | body`, with body = `lsn: u64 LE | epoch: u64 LE |
//! payload` and `len` = body length. The checksum covers the whole body, so a damaged LSN or
//! epoch is caught as surely as a damaged payload.

use std::fmt;

/// Bytes before the body: length and checksum.
pub const HEADER_LEN: usize = 8;
/// Bytes of the body before the payload: lsn and epoch.
pub const BODY_PREFIX_LEN: usize = 16;
/// The smallest possible frame (empty payload).
pub const MIN_RECORD_LEN: usize = HEADER_LEN + BODY_PREFIX_LEN;
/// Bodies longer than this are taken for damage: a flipped high bit in `len` must not make
/// recovery try to read gigabytes.
pub const MAX_BODY_LEN: usize = 256 << 20;
/// The largest payload [`crate::Wal::append`] accepts; anything larger could not be read back.
pub const MAX_PAYLOAD_LEN: usize = MAX_BODY_LEN - BODY_PREFIX_LEN;

/// The size of the frame holding a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    MIN_RECORD_LEN + payload_len
}

/// Appends one frame to `out`. The caller enforces [`MAX_PAYLOAD_LEN`].
pub fn encode(out: &mut Vec<u8>, lsn: u64, epoch: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let body_len = (BODY_PREFIX_LEN + payload.len()) as u32;
    let start = out.len();
    out.reserve(encoded_len(payload.len()));
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded record borrowing its payload from the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub lsn: u64,
    pub epoch: u64,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    pub fn to_owned(self) -> crate::WalRecord {
        crate::WalRecord { lsn: self.lsn, epoch: self.epoch, payload: self.payload.to_vec() }
    }
}

/// Why the bytes at some offset are not a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than [`HEADER_LEN`] bytes remain.
    ShortHeader { have: usize },
    /// `len` is below the body prefix or above [`MAX_BODY_LEN`].
    BadLength { len: u32 },
    /// The header announces more body than there is.
    ShortBody { want: usize, have: usize },
    /// The body does not match its checksum.
    Checksum { stored: u32, computed: u32 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::ShortHeader { have } => {
                write!(f, "incomplete header ({have} of {HEADER_LEN} bytes)")
            }
            DecodeError::BadLength { len } => write!(f, "implausible body length {len}"),
            DecodeError::ShortBody { want, have } => {
                write!(f, "incomplete body ({have} of {want} bytes)")
            }
            DecodeError::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
        }
    }
}

/// Reads the header and returns the body length it announces and the stored checksum.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(usize, u32), DecodeError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if (len as usize) < BODY_PREFIX_LEN || len as usize > MAX_BODY_LEN {
        return Err(DecodeError::BadLength { len });
    }
    Ok((len as usize, crc))
}

/// Verifies a body against its stored checksum and splits it into its fields.
pub fn decode_body(body: &[u8], stored: u32) -> Result<RecordRef<'_>, DecodeError> {
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(RecordRef {
        lsn: read_u64(&body[0..8]),
        epoch: read_u64(&body[8..16]),
        payload: &body[16..],
    })
}

/// Decodes the frame at the start of `bytes`; returns it and the frame's length.
pub fn decode(bytes: &[u8]) -> Result<(RecordRef<'_>, usize), DecodeError> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::ShortHeader { have: bytes.len() });
    };
    let (len, crc) = parse_header(header)?;
    let have = bytes.len() - HEADER_LEN;
    if have < len {
        return Err(DecodeError::ShortBody { want: len, have });
    }
    let record = decode_body(&bytes[HEADER_LEN..HEADER_LEN + len], crc)?;
    Ok((record, HEADER_LEN + len))
}

/// Looks for a valid record starting anywhere after `bad_at` (the start of a record that failed
/// to decode) whose LSN could belong to this log after `last_good`. Finding one means the bad
/// record has good data behind it, so it is damage in the middle of the log rather than a torn
/// tail. Returns the offset and LSN of the first such record.
///
/// Plausible means `last_good < lsn <= last_good + 1 + (at - bad_at) / MIN_RECORD_LEN`: every
/// record between the bad one and `at` takes at least [`MIN_RECORD_LEN`] bytes, so a genuine
/// later record cannot be further ahead than that. The upper bound also keeps this search linear
/// on a garbage tail: random bytes almost never pass it, so the checksum is rarely computed.
pub fn find_valid_after(bytes: &[u8], bad_at: usize, last_good: u64) -> Option<(usize, u64)> {
    let last_start = bytes.len().checked_sub(MIN_RECORD_LEN)?;
    (bad_at + 1..=last_start).find_map(|at| {
        let rest = &bytes[at..];
        let header = rest.first_chunk::<HEADER_LEN>()?;
        let (len, crc) = parse_header(header).ok()?;
        if rest.len() - HEADER_LEN < len {
            return None;
        }
        let lsn = read_u64(&rest[HEADER_LEN..HEADER_LEN + 8]);
        let ceiling = last_good.saturating_add(1 + ((at - bad_at) / MIN_RECORD_LEN) as u64);
        if lsn <= last_good || lsn > ceiling {
            return None;
        }
        decode_body(&rest[HEADER_LEN..HEADER_LEN + len], crc).ok().map(|r| (at, r.lsn))
    })
}

fn read_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("caller passes exactly 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(records: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(lsn, epoch, payload) in records {
            encode(&mut out, lsn, epoch, payload);
        }
        out
    }

    #[test]
    fn round_trips_records_back_to_back() {
        let bytes = frames(&[(1, 7, b"hello"), (2, 7, b""), (3, u64::MAX, &[0xff; 300])]);
        let (a, n) = decode(&bytes).unwrap();
        assert_eq!(a, RecordRef { lsn: 1, epoch: 7, payload: b"hello" });
        assert_eq!(n, encoded_len(5));
        let (b, m) = decode(&bytes[n..]).unwrap();
        assert_eq!(b, RecordRef { lsn: 2, epoch: 7, payload: b"" });
        assert_eq!(m, MIN_RECORD_LEN);
        let (c, k) = decode(&bytes[n + m..]).unwrap();
        assert_eq!((c.lsn, c.epoch, c.payload), (3, u64::MAX, &[0xff; 300][..]));
        assert_eq!(n + m + k, bytes.len());
    }

    #[test]
    fn layout_is_little_endian_len_crc_lsn_epoch_payload() {
        let bytes = frames(&[(0x0102, 0x0304, b"xy")]);
        assert_eq!(&bytes[0..4], &18u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &crc32c::crc32c(&bytes[8..]).to_le_bytes());
        assert_eq!(&bytes[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &0x0304u64.to_le_bytes());
        assert_eq!(&bytes[24..], b"xy");
    }

    #[test]
    fn every_prefix_and_every_bit_flip_is_rejected() {
        let bytes = frames(&[(9, 2, b"some payload")]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn reports_why_a_frame_is_bad() {
        assert_eq!(decode(&[1, 2, 3]).unwrap_err(), DecodeError::ShortHeader { have: 3 });
        let mut bytes = frames(&[(1, 1, b"abc")]);
        assert_eq!(
            decode(&bytes[..20]).unwrap_err(),
            DecodeError::ShortBody { want: 19, have: 12 }
        );
        bytes[0..4].copy_from_slice(&(MAX_BODY_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::BadLength { .. })));
        bytes[0..4].copy_from_slice(&15u32.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap_err(), DecodeError::BadLength { len: 15 });
        assert_eq!(decode(&[0; 64]).unwrap_err(), DecodeError::BadLength { len: 0 });
    }

    #[test]
    fn forward_search_finds_the_next_genuine_record_only() {
        let mut bytes = frames(&[(5, 1, b"damaged"), (6, 1, b"next")]);
        bytes[12] ^= 0x10;
        let second = encoded_len(7);
        assert_eq!(find_valid_after(&bytes, 0, 4), Some((second, 6)));
        // An LSN at or below the last good one is stale data, not a continuation.
        assert_eq!(find_valid_after(&bytes, 0, 6), None);
        // Zeros and a torn copy of a record are no continuation either.
        let mut tail = frames(&[(5, 1, b"torn")]);
        tail.truncate(tail.len() - 1);
        tail.extend_from_slice(&[0; 100]);
        assert_eq!(find_valid_after(&tail, 0, 4), None);
    }

    #[test]
    fn forward_search_ignores_implausibly_distant_lsns() {
        // A valid frame right behind the bad one cannot carry an LSN many records ahead.
        let mut bytes = frames(&[(5, 1, b"bad")]);
        bytes[20] ^= 1;
        let at = bytes.len();
        encode(&mut bytes, 1_000, 1, b"far");
        assert_eq!(find_valid_after(&bytes, 0, 4), None);
        encode(&mut bytes, 6, 1, b"near");
        assert_eq!(find_valid_after(&bytes, 0, 4), Some((at + encoded_len(3), 6)));
    }
}
