//! The spool's payload: one Kafka record to produce (topic, key, value, headers), serialized
//! with every length checked on the way back, since a spool file is bytes from outside.

use vigil_schemas::SignedRecord;

const VERSION: u8 = 1;
/// Upper bound on headers per record, so a damaged length cannot make us allocate much.
const MAX_HEADERS: usize = 64;

/// A record waiting to be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Vec<u8>,
    /// Record value (framed Avro, signed).
    pub value: Vec<u8>,
    /// Headers in send order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A spool payload that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spooled record: {0}")]
pub struct RecordDecodeError(&'static str);

impl PendingRecord {
    /// Wraps a signed record for `topic`.
    pub fn new(topic: &str, record: SignedRecord) -> Self {
        Self {
            topic: topic.to_owned(),
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }

    /// Returns the value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Serializes: version, then length-prefixed (u32 LE) topic, key, value, header count (u16)
    /// and each header's name and value.
    pub fn encode(&self) -> Vec<u8> {
        let size = 1
            + 4 * 3
            + self.topic.len()
            + self.key.len()
            + self.value.len()
            + 2
            + self
                .headers
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.push(VERSION);
        put(&mut out, self.topic.as_bytes());
        put(&mut out, &self.key);
        put(&mut out, &self.value);
        out.extend_from_slice(&(self.headers.len().min(MAX_HEADERS) as u16).to_le_bytes());
        for (name, value) in self.headers.iter().take(MAX_HEADERS) {
            put(&mut out, name.as_bytes());
            put(&mut out, value);
        }
        out
    }

    /// Parses what [`PendingRecord::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let mut r = Reader { bytes };
        if r.take(1)? != [VERSION] {
            return Err(RecordDecodeError("unknown version"));
        }
        let topic = String::from_utf8(r.field()?.to_vec())
            .map_err(|_| RecordDecodeError("topic is not UTF-8"))?;
        let key = r.field()?.to_vec();
        let value = r.field()?.to_vec();
        let count = u16::from_le_bytes([r.take(1)?[0], r.take(1)?[0]]) as usize;
        if count > MAX_HEADERS {
            return Err(RecordDecodeError("too many headers"));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = String::from_utf8(r.field()?.to_vec())
                .map_err(|_| RecordDecodeError("header name is not UTF-8"))?;
            headers.push((name, r.field()?.to_vec()));
        }
        if !r.bytes.is_empty() {
            return Err(RecordDecodeError("trailing bytes"));
        }
        Ok(Self {
            topic,
            key,
            value,
            headers,
        })
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordDecodeError> {
        if self.bytes.len() < n {
            return Err(RecordDecodeError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8], RecordDecodeError> {
        let len = self.take(4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PendingRecord {
        PendingRecord {
            topic: "vigil.events.raw".into(),
            key: b"key-1".to_vec(),
            value: vec![0, 0, 0, 0, 1, 2, 3],
            headers: vec![
                ("vigil-sig".into(), vec![7; 64]),
                ("ce_id".into(), b"x".to_vec()),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(PendingRecord::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(
                PendingRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PendingRecord::decode(&bytes);
        }
    }
}
