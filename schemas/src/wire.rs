//! Confluent wire framing: magic byte `0x00`, 4-byte big-endian schema id, Avro body.

use std::fmt;

use crate::error::ErrorClass;

/// First byte of every framed value.
pub const MAGIC_BYTE: u8 = 0x00;
/// Bytes before the Avro body: magic byte plus schema id.
pub const FRAME_HEADER_LEN: usize = 5;
/// Default bound on a framed value (1 MiB); larger values are refused on encode and decode.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Schema registry id of the schema a value was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(pub u32);

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Failure to frame, unframe, encode or decode a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the 5-byte frame header.
    #[error("value truncated: {len} bytes, frame header needs {FRAME_HEADER_LEN}")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// First byte is not the Confluent magic byte.
    #[error("bad magic byte 0x{0:02x}")]
    BadMagic(u8),
    /// Value larger than the configured bound.
    #[error("value of {len} bytes exceeds the {max} byte limit")]
    Oversized {
        /// Bytes received or produced.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// The schema id is not known to the registry.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(SchemaId),
    /// Bytes remain after a complete record was decoded.
    #[error("{0} trailing bytes after the avro record")]
    TrailingBytes(usize),
    /// A writer schema (e.g. from the registry) is not valid Avro.
    #[error("invalid writer schema")]
    InvalidSchema(#[source] apache_avro::Error),
    /// The body does not decode under the writer schema.
    #[error("avro decode failed")]
    Decode(#[source] apache_avro::Error),
    /// A value of the typed model could not be encoded (a bug in the caller or this crate).
    #[error("avro encode failed")]
    Encode(#[source] apache_avro::Error),
    /// A schema this crate derives from its embedded ones could not be built (a bug).
    #[error("derived schema: {0}")]
    DerivedSchema(String),
}

impl WireError {
    /// Returns how a consumer must treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            WireError::Encode(_) | WireError::DerivedSchema(_) => ErrorClass::Internal,
            _ => ErrorClass::BadData,
        }
    }

    /// Returns a short stable label for metrics and the `vigil-error` header prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated { .. } => "truncated",
            WireError::BadMagic(_) => "bad_magic",
            WireError::Oversized { .. } => "oversized",
            WireError::UnknownSchemaId(_) => "unknown_schema_id",
            WireError::TrailingBytes(_) => "trailing_bytes",
            WireError::InvalidSchema(_) => "invalid_schema",
            WireError::Decode(_) => "avro_decode",
            WireError::Encode(_) => "avro_encode",
            WireError::DerivedSchema(_) => "derived_schema",
        }
    }
}

/// Appends the frame header and `body` to `out`.
pub fn frame_into(schema_id: SchemaId, body: &[u8], out: &mut Vec<u8>) {
    out.reserve(FRAME_HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.0.to_be_bytes());
    out.extend_from_slice(body);
}

/// Returns `body` framed with `schema_id`.
pub fn frame(schema_id: SchemaId, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    frame_into(schema_id, body, &mut out);
    out
}

/// Splits a framed value into schema id and body, refusing values above [`DEFAULT_MAX_VALUE_BYTES`].
pub fn split_frame(value: &[u8]) -> Result<(SchemaId, &[u8]), WireError> {
    split_frame_with_limit(value, DEFAULT_MAX_VALUE_BYTES)
}

/// Splits a framed value into schema id and body, refusing values above `max_value_bytes`.
pub fn split_frame_with_limit(
    value: &[u8],
    max_value_bytes: usize,
) -> Result<(SchemaId, &[u8]), WireError> {
    if value.len() > max_value_bytes {
        return Err(WireError::Oversized {
            len: value.len(),
            max: max_value_bytes,
        });
    }
    let Some((header, body)) = value.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(WireError::Truncated { len: value.len() });
    };
    let [magic, id @ ..] = *header;
    if magic != MAGIC_BYTE {
        return Err(WireError::BadMagic(magic));
    }
    Ok((SchemaId(u32::from_be_bytes(id)), body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_and_split_round_trip() {
        let framed = frame(SchemaId(0x0102_0304), b"body");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'b', b'o', b'd', b'y']);
        let (id, body) = split_frame(&framed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id, SchemaId(0x0102_0304));
        assert_eq!(body, b"body");
        // An empty body is a valid frame (Avro records with no fields encode to nothing).
        assert!(matches!(
            split_frame(&[0, 0, 0, 0, 7]),
            Ok((SchemaId(7), []))
        ));
    }

    #[test]
    fn hostile_frames_give_typed_errors() {
        assert!(matches!(
            split_frame(&[]),
            Err(WireError::Truncated { len: 0 })
        ));
        assert!(matches!(
            split_frame(&[0, 0, 0, 1]),
            Err(WireError::Truncated { len: 4 })
        ));
        assert!(matches!(
            split_frame(&[1, 0, 0, 0, 1]),
            Err(WireError::BadMagic(1))
        ));
        assert!(matches!(
            split_frame(b"{\"json\":1}"),
            Err(WireError::BadMagic(b'{'))
        ));
        let big = vec![0u8; DEFAULT_MAX_VALUE_BYTES + 1];
        let err = split_frame(&big).err();
        assert!(matches!(err, Some(WireError::Oversized { .. })));
        assert_eq!(err.map(|e| e.class().as_str()), Some("bad_data"));
        assert!(matches!(
            split_frame_with_limit(&[0, 0, 0, 0, 1, 9, 9], 6),
            Err(WireError::Oversized { len: 7, max: 6 })
        ));
    }

    proptest! {
        #[test]
        fn split_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match split_frame(&bytes) {
                Ok((id, body)) => {
                    prop_assert_eq!(bytes[0], MAGIC_BYTE);
                    prop_assert_eq!(frame(id, body), bytes.clone());
                }
                Err(e) => prop_assert_eq!(e.class(), ErrorClass::BadData),
            }
        }
    }
}
