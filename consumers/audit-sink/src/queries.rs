//! The SOC query pack: saved `.sql` files beside the migrations, each answering one question.

/// One saved query.
#[derive(Debug, Clone, Copy)]
pub struct SocQuery {
    /// File name without extension.
    pub name: &'static str,
    /// The SQL, with its leading comment saying what question it answers.
    pub sql: &'static str,
}

macro_rules! pack {
    ($($name:literal),* $(,)?) => {
        &[$(SocQuery { name: $name, sql: include_str!(concat!("../queries/", $name, ".sql")) }),*]
    };
}

/// Every saved query.
pub const PACK: &[SocQuery] = pack![
    "failed_verifications_by_key_24h",
    "failed_verifications_by_client_ip_24h",
    "trace_timeline",
    "keys_used_after_revocation",
    "keys_past_rotation_policy",
    "key_operations",
    "event_volume_by_platform_hour",
    "top_rejected_producers",
];

impl SocQuery {
    /// Returns the query by name.
    pub fn named(name: &str) -> Option<&'static SocQuery> {
        PACK.iter().find(|q| q.name == name)
    }

    /// Returns the first comment paragraph: the question the query answers.
    pub fn question(&self) -> String {
        self.sql
            .lines()
            .take_while(|l| l.starts_with("--"))
            .map(|l| l.trim_start_matches('-').trim())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Returns the statement without comment lines (ready for `Client::query_raw`).
    pub fn statement(&self) -> String {
        crate::migrations::strip_comments(self.sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_says_what_it_answers() {
        for q in PACK {
            assert!(q.question().starts_with("Question:"), "{}", q.name);
            assert!(
                q.statement().trim_start().starts_with("SELECT")
                    || q.statement().trim_start().starts_with("WITH"),
                "{}",
                q.name
            );
        }
        assert!(SocQuery::named("trace_timeline").is_some());
    }
}
