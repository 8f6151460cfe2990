//! Showing an error with its causes once: `Display` of a Vigil error says only what failed and
//! leaves the cause to `source()`, so a log line, DLQ header or test that wants the detail walks
//! the chain with [`ErrorChain`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, separated by `": "` (what anyhow's `{:#}`
/// prints).
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Returns the error followed by each of its sources, separated by `": "`.
pub fn error_chain(e: &dyn Error) -> String {
    ErrorChain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn walks_every_source_once() {
        let e = Outer(Inner(std::io::Error::other("disk")));
        assert_eq!(error_chain(&e), "outer: inner: disk");
        assert_eq!(format!("{}", ErrorChain(&e)), "outer: inner: disk");
    }
}
