//! Error classes shared by every Vigil service (DESIGN.md, "Errors").

use std::fmt;

/// How a consumer must treat a failure; every error type of this crate maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Undecodable or foreign bytes: dead-letter the record and move on.
    BadData,
    /// Well-formed but not trustworthy (bad signature, revoked key, replay): a security event.
    Rejected,
    /// A dependency is unavailable: retry with backoff.
    Transient,
    /// A bug: crash loudly without storing the offset.
    Internal,
}

impl ErrorClass {
    /// Returns the stable lowercase name used in metrics labels and the `vigil-error-class` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::BadData => "bad_data",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Transient => "transient",
            ErrorClass::Internal => "internal",
        }
    }

    /// Parses the name written by [`ErrorClass::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "bad_data" => Some(ErrorClass::BadData),
            "rejected" => Some(ErrorClass::Rejected),
            "transient" => Some(ErrorClass::Transient),
            "internal" => Some(ErrorClass::Internal),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in [
            ErrorClass::BadData,
            ErrorClass::Rejected,
            ErrorClass::Transient,
            ErrorClass::Internal,
        ] {
            assert_eq!(ErrorClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(ErrorClass::BadData.to_string(), "bad_data");
        assert_eq!(ErrorClass::parse("nope"), None);
    }
}
