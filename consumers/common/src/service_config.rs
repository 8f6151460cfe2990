//! The one error type of every service's configuration load and validation: a file that cannot
//! be read or parsed, a value out of range, or a secret that cannot be read, named by its key.

use vigil_topology::config_file::ConfigFileError;

/// A service configuration that cannot be used, naming the offending key as `<service>.<key>`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceConfigError {
    /// A value is out of range.
    #[error("{}{service}.{key}: {reason}", file_prefix(.path.as_deref()))]
    Invalid {
        /// The file, for services whose messages name it (the alerter's `<defaults>` too).
        path: Option<String>,
        /// The service's config table, e.g. `verifier` or `audit_sink`.
        service: &'static str,
        /// The offending key, e.g. `receivers[1].url`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret named by the configuration could not be read.
    #[error("{service}.{key}: cannot read secret: {reason}")]
    Secret {
        /// The service's config table.
        service: &'static str,
        /// The key naming the secret.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The file could not be read or parsed (unknown keys included).
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

impl ServiceConfigError {
    /// Returns an [`ServiceConfigError::Invalid`] without a file name.
    pub fn invalid(
        service: &'static str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ServiceConfigError::Invalid {
            path: None,
            service,
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Returns the offending key, if the error names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ServiceConfigError::Invalid { key, .. } | ServiceConfigError::Secret { key, .. } => {
                Some(key)
            }
            ServiceConfigError::File(_) => None,
        }
    }
}

fn file_prefix(path: Option<&str>) -> String {
    path.map(|p| format!("{p}: ")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_service_key_and_file() {
        let e = ServiceConfigError::invalid("verifier", "raw_topic", "must not be empty");
        assert_eq!(e.to_string(), "verifier.raw_topic: must not be empty");
        assert_eq!(e.key(), Some("raw_topic"));
        let e = ServiceConfigError::Invalid {
            path: Some("a.yaml".into()),
            service: "alerter",
            key: "receivers[0].url".into(),
            reason: "url or url_file is required".into(),
        };
        assert_eq!(
            e.to_string(),
            "a.yaml: alerter.receivers[0].url: url or url_file is required"
        );
        let e = ServiceConfigError::Secret {
            service: "alerter",
            key: "api.bearer_token_file".into(),
            reason: "the API needs a bearer token".into(),
        };
        assert_eq!(
            e.to_string(),
            "alerter.api.bearer_token_file: cannot read secret: the API needs a bearer token"
        );
    }
}
