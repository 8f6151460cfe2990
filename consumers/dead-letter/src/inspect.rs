//! One dead letter shown in full: headers, and the value decoded when possible.

use std::fmt::Write as _;

use serde::Serialize;
use vigil_schemas::{Codec, ErrorChain, SchemaRegistry, VerificationEvent, error_chain};

use crate::filter::format_ms;
use crate::record::DeadLetter;

/// Bytes of a value shown in a hexdump.
pub const HEXDUMP_LIMIT: usize = 4096;
/// Bytes of a header value shown.
const HEADER_LIMIT: usize = 1024;

/// A dead letter rendered for people (`to_text`) or machines (serde).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// `PARTITION:OFFSET`.
    pub at: String,
    /// When the record was parked (the DLQ record's timestamp).
    pub parked_at: Option<String>,
    /// The key, as text when printable, else `hex:…`.
    pub key: Option<String>,
    /// Every header in order, values as text when printable, else `hex:…`.
    pub headers: Vec<(String, Option<String>)>,
    /// Why the runtime headers could not be read, when they could not.
    pub header_problem: Option<String>,
    /// Value length in bytes.
    pub value_len: Option<usize>,
    /// The value decoded as a `VerificationEvent`, when it is a frame the registry knows.
    pub decoded: Option<serde_json::Value>,
    /// Why the value was not decoded.
    pub decode_problem: Option<String>,
    /// The first [`HEXDUMP_LIMIT`] bytes of an undecoded value.
    pub hexdump: Option<String>,
}

impl Inspection {
    /// Renders for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "record     {}", self.at);
        let _ = writeln!(
            out,
            "parked at  {}",
            self.parked_at.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(
            out,
            "key        {}",
            self.key.as_deref().unwrap_or("(null)")
        );
        let _ = writeln!(out, "headers:");
        for (k, v) in &self.headers {
            let _ = writeln!(
                out,
                "  {}: {}",
                printable(k.as_bytes()),
                v.as_deref().unwrap_or("(null)")
            );
        }
        if let Some(p) = &self.header_problem {
            let _ = writeln!(out, "dead-letter headers unreadable: {p}");
        }
        match self.value_len {
            None => {
                let _ = writeln!(out, "value      (null)");
            }
            Some(n) => {
                let _ = writeln!(out, "value      {n} bytes");
            }
        }
        if let Some(d) = &self.decoded {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(d).unwrap_or_else(|e| e.to_string())
            );
        }
        if let Some(p) = &self.decode_problem {
            let _ = writeln!(out, "not decoded: {p}");
        }
        if let Some(h) = &self.hexdump {
            out.push_str(h);
        }
        out
    }
}

/// Renders `record`, decoding its value through `registry` when given.
pub async fn inspect(record: &DeadLetter, registry: Option<&SchemaRegistry>) -> Inspection {
    let (decoded, decode_problem) = match (&record.value, registry) {
        (None, _) => (None, None),
        (Some(_), None) => (None, Some("no schema registry given".to_owned())),
        (Some(v), Some(reg)) => match decode(v, reg).await {
            Ok(json) => (Some(json), None),
            Err(e) => (None, Some(e)),
        },
    };
    let hexdump = match (&record.value, &decoded) {
        (Some(v), None) => Some(hexdump(v, HEXDUMP_LIMIT)),
        _ => None,
    };
    Inspection {
        at: record.at.to_string(),
        parked_at: record.timestamp_ms.map(format_ms),
        key: record.key.as_deref().map(show),
        headers: record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_deref().map(show)))
            .collect(),
        header_problem: record.parsed.as_ref().err().map(ToString::to_string),
        value_len: record.value.as_ref().map(Vec::len),
        decoded,
        decode_problem,
        hexdump,
    }
}

async fn decode(value: &[u8], registry: &SchemaRegistry) -> Result<serde_json::Value, String> {
    let (id, body) = vigil_schemas::wire::split_frame(value).map_err(|e| e.to_string())?;
    let writer = registry
        .schema_by_id(id)
        .await
        .map_err(|e| format!("schema id {}: {}", id.0, ErrorChain(&e)))?;
    let codec = Codec::<VerificationEvent>::new().map_err(|e| error_chain(&e))?;
    let event = codec
        .decode_with(&writer, body)
        .map_err(|e| error_chain(&e))?;
    serde_json::to_value(&event).map_err(|e| e.to_string())
}

/// Returns the bytes as text when they are printable UTF-8, else `hex:…`; at most 1 KiB shown.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(HEADER_LIMIT)];
    let more = if bytes.len() > HEADER_LIMIT {
        format!(" … ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    match std::str::from_utf8(cut) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s}{more}"),
        _ => format!("hex:{}{more}", hex::encode(cut)),
    }
}

fn printable(bytes: &[u8]) -> String {
    show(bytes)
}

/// Returns a classic hexdump (offset, 16 bytes, ASCII) of at most `limit` bytes.
pub fn hexdump(bytes: &[u8], limit: usize) -> String {
    let shown = &bytes[..bytes.len().min(limit)];
    let mut out = String::new();
    for (i, line) in shown.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for j in 0..16 {
            match line.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for b in line {
            out.push(if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    if bytes.len() > limit {
        let _ = writeln!(out, "… {} more bytes not shown", bytes.len() - limit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexdump_is_bounded_and_shows_ascii() {
        let d = hexdump(b"hello, world!\x00\x01\x02xyz", 4096);
        assert!(d.starts_with("00000000  68 65 6c 6c"));
        assert!(d.contains("|hello, world!...|"));
        let big = vec![0u8; 10_000];
        let d = hexdump(&big, 64);
        assert_eq!(d.lines().count(), 5);
        assert!(d.contains("9936 more bytes"));
    }

    #[test]
    fn header_values_are_text_or_hex() {
        assert_eq!(show(b"bad_data"), "bad_data");
        assert_eq!(show(&[0xff, 0x00]), "hex:ff00");
        assert_eq!(show(b"a\nb"), "hex:610a62");
    }
}
