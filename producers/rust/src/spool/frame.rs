//! On-disk record framing of the spool: pure encode, decode, resync and segment scan.
//!
//! One record on disk is a 20-byte header followed by the payload:
//!
//! | bytes  | field                                                  |
//! | ------ | ------------------------------------------------------ |
//! | 0      | magic `0x56` (`V`)                                     |
//! | 1      | format version `1`                                     |
//! | 2..4   | flags, u16 LE, must be 0 (reserved)                    |
//! | 4..8   | payload length, u32 LE                                 |
//! | 8..16  | sequence number, u64 LE                                |
//! | 16..20 | CRC32 (IEEE) over bytes 0..16 followed by the payload  |
//!
//! The CRC covers the length and sequence number too, so a flipped length can not make the
//! scanner skip to a wrong offset and accept what follows. Storing the sequence number in every
//! record lets the scanner count exactly how many records a corrupt region swallowed and
//! refuse stale or foreign frames whose sequence number does not increase.

use std::ops::Range;

/// Length of a record header in bytes.
pub(crate) const HEADER_LEN: usize = 20;
/// First byte of every record.
pub(crate) const MAGIC: u8 = 0x56;
/// Current (and only) record format version.
pub(crate) const VERSION: u8 = 1;

/// Why bytes at an offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the header or its declared payload needs.
    Truncated,
    /// The magic byte is wrong: not the start of a record.
    BadMagic,
    /// A format version this code does not know.
    BadVersion,
    /// Reserved flag bits are set.
    BadFlags,
    /// The checksum does not match the header and payload.
    BadCrc,
}

/// A header whose magic, version and flags are valid (the CRC is not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Payload length in bytes.
    pub(crate) len: u32,
    /// Sequence number of the record.
    pub(crate) seq: u64,
    /// Stored checksum.
    pub(crate) crc: u32,
}

/// A complete, checksum-verified record found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Sequence number of the record.
    pub(crate) seq: u64,
    /// Where the payload lies in the scanned buffer.
    pub(crate) payload: Range<usize>,
    /// Offset just past the record.
    pub(crate) end: usize,
}

/// Appends the encoded record for `payload` to `out`.
///
/// The caller guarantees `payload.len() <= u32::MAX` (the spool refuses larger records first).
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; HEADER_LEN];
    header[0] = MAGIC;
    header[1] = VERSION;
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = checksum(&header[..16], payload);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Computes the record checksum over the first 16 header bytes and the payload.
pub(crate) fn checksum(header_prefix: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_prefix);
    hasher.update(payload);
    hasher.finalize()
}

/// Parses and checks the fixed fields of a header.
pub(crate) fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    if bytes[0] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if bytes[1] != VERSION {
        return Err(FrameError::BadVersion);
    }
    if bytes[2] != 0 || bytes[3] != 0 {
        return Err(FrameError::BadFlags);
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[8..16]);
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    Ok(Header {
        len,
        seq: u64::from_le_bytes(seq),
        crc,
    })
}

/// Decodes and verifies the record starting at `off` in `buf`.
pub(crate) fn decode_at(buf: &[u8], off: usize) -> Result<Frame, FrameError> {
    let header_end = off.checked_add(HEADER_LEN).ok_or(FrameError::Truncated)?;
    let header_bytes: &[u8; HEADER_LEN] = buf
        .get(off..header_end)
        .and_then(|s| s.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let header = parse_header(header_bytes)?;
    let len = usize::try_from(header.len).map_err(|_| FrameError::Truncated)?;
    let end = header_end.checked_add(len).ok_or(FrameError::Truncated)?;
    let payload = buf.get(header_end..end).ok_or(FrameError::Truncated)?;
    if checksum(&header_bytes[..16], payload) != header.crc {
        return Err(FrameError::BadCrc);
    }
    Ok(Frame {
        seq: header.seq,
        payload: header_end..end,
        end,
    })
}

/// Finds the first offset at or after `from` where a valid record with `seq > floor` starts.
///
/// A valid frame must match magic, version, flags, length and a CRC32 over header and payload,
/// so a false match inside garbage or payload bytes needs a deliberately embedded frame.
pub(crate) fn resync(buf: &[u8], from: usize, floor: u64) -> Option<usize> {
    let last_start = buf.len().checked_sub(HEADER_LEN)?;
    (from..=last_start).find(|&off| {
        buf[off] == MAGIC
            && buf[off + 1] == VERSION
            && matches!(decode_at(buf, off), Ok(frame) if frame.seq > floor)
    })
}

/// A stretch of a segment that held no valid record and is skipped when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skip {
    /// Offset where the invalid bytes start.
    pub(crate) start: u64,
    /// Offset of the next valid record.
    pub(crate) resume: u64,
}

/// What scanning one segment's bytes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Number of valid records.
    pub(crate) records: u64,
    /// Sequence number of the first valid record.
    pub(crate) first_seq: Option<u64>,
    /// Sequence number of the last valid record.
    pub(crate) last_seq: Option<u64>,
    /// Offset just past the last valid record: everything after it is a torn tail.
    pub(crate) valid_end: usize,
    /// Invalid stretches in the middle of the segment, followed by valid records.
    pub(crate) skips: Vec<Skip>,
    /// Unacknowledged records known to be lost (sequence numbers missing between valid records).
    pub(crate) lost_records: u64,
    /// Bytes inside `skips`.
    pub(crate) corrupt_bytes: u64,
}

/// Scans a whole segment.
///
/// `prev` is the last sequence number accepted before this segment (None for the first
/// segment), `base` the sequence number in the segment's file name, `acked` the persisted ack
/// cursor: records at or below it may legitimately be missing and are not counted as lost.
pub(crate) fn scan(buf: &[u8], base: u64, mut prev: Option<u64>, acked: u64) -> ScanOutcome {
    let mut out = ScanOutcome::default();
    let mut off = 0usize;
    while off < buf.len() {
        let floor = prev.unwrap_or(0).max(base.saturating_sub(1));
        match decode_at(buf, off) {
            Ok(frame) if frame.seq > floor => {
                out.lost_records += missing_between(prev, frame.seq, acked);
                out.records += 1;
                out.first_seq.get_or_insert(frame.seq);
                out.last_seq = Some(frame.seq);
                prev = Some(frame.seq);
                off = frame.end;
                out.valid_end = off;
            }
            _ => match resync(buf, off + 1, floor) {
                Some(resume) => {
                    out.skips.push(Skip {
                        start: off as u64,
                        resume: resume as u64,
                    });
                    out.corrupt_bytes += (resume - off) as u64;
                    off = resume;
                }
                None => break,
            },
        }
    }
    out
}

/// Counts unacknowledged sequence numbers strictly between `prev` and `seq`.
pub(crate) fn missing_between(prev: Option<u64>, seq: u64, acked: u64) -> u64 {
    match prev {
        // The first record of the spool: earlier ones were acked and deleted.
        None => 0,
        Some(prev) => seq.saturating_sub(prev.max(acked)).saturating_sub(1),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frames(seqs: &[(u64, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (seq, payload) in seqs {
            encode(&mut buf, *seq, payload);
        }
        buf
    }

    #[test]
    fn encode_decode_round_trip() {
        let buf = frames(&[(7, b"hello"), (8, b"")]);
        let first = decode_at(&buf, 0).unwrap();
        assert_eq!(first.seq, 7);
        assert_eq!(&buf[first.payload.clone()], b"hello");
        let second = decode_at(&buf, first.end).unwrap();
        assert_eq!(second.seq, 8);
        assert!(second.payload.is_empty());
        assert_eq!(second.end, buf.len());
    }

    #[test]
    fn every_truncation_is_detected() {
        let buf = frames(&[(1, b"payload bytes")]);
        for cut in 0..buf.len() {
            assert_eq!(
                decode_at(&buf[..cut], 0),
                Err(FrameError::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let buf = frames(&[(1, b"payload bytes")]);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode_at(&bad, 0).is_err(), "flip byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn scan_skips_middle_corruption_and_counts_lost_records() {
        let mut buf = frames(&[(1, b"a"), (2, b"bb"), (3, b"ccc")]);
        let second_start = HEADER_LEN + 1;
        buf[second_start + HEADER_LEN] ^= 0xff;
        let out = scan(&buf, 1, None, 0);
        assert_eq!(out.records, 2);
        assert_eq!(out.first_seq, Some(1));
        assert_eq!(out.last_seq, Some(3));
        assert_eq!(out.lost_records, 1);
        assert_eq!(out.valid_end, buf.len());
        assert_eq!(out.skips.len(), 1);
        assert_eq!(out.skips[0].start, second_start as u64);
    }

    #[test]
    fn scan_stops_at_torn_tail() {
        let buf = frames(&[(4, b"abc"), (5, b"defg")]);
        let torn = &buf[..buf.len() - 2];
        let out = scan(torn, 4, Some(3), 0);
        assert_eq!(out.records, 1);
        assert_eq!(out.last_seq, Some(4));
        assert_eq!(out.valid_end, HEADER_LEN + 3);
        assert!(out.skips.is_empty());
        assert_eq!(out.lost_records, 0);
    }

    #[test]
    fn scan_refuses_non_increasing_sequence_numbers() {
        let buf = frames(&[(10, b"x"), (9, b"stale"), (11, b"y")]);
        let out = scan(&buf, 10, None, 0);
        assert_eq!(out.records, 2);
        assert_eq!(out.last_seq, Some(11));
        assert_eq!(out.skips.len(), 1);
    }

    #[test]
    fn missing_records_at_or_below_the_ack_are_not_lost() {
        assert_eq!(missing_between(Some(5), 9, 0), 3);
        assert_eq!(missing_between(Some(5), 9, 7), 1);
        assert_eq!(missing_between(Some(5), 9, 20), 0);
        assert_eq!(missing_between(None, 9, 0), 0);
    }
}
