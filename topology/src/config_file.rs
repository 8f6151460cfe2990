//! Deployment config files: every service reads one file (or takes its defaults) the same way,
//! then lets the `VIGIL_*` address variables override what the file says, so one file serves
//! docker-compose, the local stack and a real cluster.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::kafka::KafkaClientConfig;

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid for this configuration (unknown keys included).
    #[error("cannot parse {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

/// The language a config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// TOML, the default for service configs.
    Toml,
    /// YAML, for configs that nest deeply (the alerter's routing tree).
    Yaml,
}

/// Parses `text`; `path` names it in errors.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    path: &str,
    format: ConfigFormat,
) -> Result<T, ConfigFileError> {
    let parsed = match format {
        ConfigFormat::Toml => toml::from_str(text).map_err(|e| e.to_string()),
        ConfigFormat::Yaml => serde_yaml::from_str(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|message| ConfigFileError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// Reads and parses the file at `path`, or returns `default()` when there is none.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    format: ConfigFormat,
    default: impl FnOnce() -> T,
) -> Result<T, ConfigFileError> {
    let Some(p) = path else {
        return Ok(default());
    };
    let shown = p.display().to_string();
    let text = std::fs::read_to_string(p).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown, format)
}

/// Returns the variable's value from `get` when it is set and not blank.
pub fn env_value(get: &impl Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    get(var).filter(|v| !v.trim().is_empty())
}

/// Applies `VIGIL_KAFKA_BOOTSTRAP` and `VIGIL_SCHEMA_REGISTRY_URL` from `get`.
pub fn apply_address_env(
    get: &impl Fn(&str) -> Option<String>,
    kafka: &mut KafkaClientConfig,
    schema_registry_url: &mut String,
) {
    if let Some(v) = env_value(get, "VIGIL_KAFKA_BOOTSTRAP") {
        kafka.bootstrap_servers = v;
    }
    if let Some(v) = env_value(get, "VIGIL_SCHEMA_REGISTRY_URL") {
        *schema_registry_url = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[serde(default)]
        size_bytes: u64,
    }

    #[test]
    fn parses_both_formats_and_names_the_file_on_errors() {
        let t: Probe = parse("size_bytes = 3", "a.toml", ConfigFormat::Toml).expect("toml");
        let y: Probe = parse("size_bytes: 3", "a.yaml", ConfigFormat::Yaml).expect("yaml");
        assert_eq!((t.size_bytes, y.size_bytes), (3, 3));
        let err = parse::<Probe>("sise_bytes = 3", "a.toml", ConfigFormat::Toml)
            .expect_err("unknown key");
        assert!(
            err.to_string().starts_with("cannot parse a.toml: "),
            "{err}"
        );
        assert!(err.to_string().contains("sise_bytes"), "{err}");
    }

    #[test]
    fn missing_path_gives_defaults_and_a_missing_file_is_named() {
        let d: Probe = load(None, ConfigFormat::Toml, Probe::default).expect("defaults");
        assert_eq!(d, Probe::default());
        let err = load::<Probe>(
            Some(Path::new("/nonexistent/v.toml")),
            ConfigFormat::Toml,
            Probe::default,
        )
        .expect_err("missing file");
        assert_eq!(err.to_string(), "cannot read /nonexistent/v.toml");
    }

    #[test]
    fn blank_variables_do_not_override() {
        let mut kafka = KafkaClientConfig::new("file:9092");
        let mut url = "http://file".to_owned();
        apply_address_env(
            &|k: &str| (k == "VIGIL_KAFKA_BOOTSTRAP").then(|| " ".to_owned()),
            &mut kafka,
            &mut url,
        );
        assert_eq!(
            (kafka.bootstrap_servers.as_str(), url.as_str()),
            ("file:9092", "http://file")
        );
        apply_address_env(&|k: &str| Some(format!("env-{k}")), &mut kafka, &mut url);
        assert_eq!(kafka.bootstrap_servers, "env-VIGIL_KAFKA_BOOTSTRAP");
        assert_eq!(url, "env-VIGIL_SCHEMA_REGISTRY_URL");
    }
}
