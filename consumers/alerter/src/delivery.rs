//! Delivery to one receiver: payload by kind, a token bucket per receiver, retries with
//! exponential backoff and full jitter, and a classification of failures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use vigil_schemas::Alert;
use vigil_topology::InternalEvent;

use crate::config::{ConfigError, DeliveryConfig, ReceiverConfig, ReceiverKind, read_secret};
use crate::internal_events::{
    AlerterMetrics, NotificationDelivered, NotificationFailed, NotificationFailure,
    NotificationRetrying,
};
use crate::payload::{self, Reason};

/// PagerDuty's public Events v2 endpoint, used when a pagerduty receiver sets no URL.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Why a notification could not be delivered after its retry budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("receiver {receiver}: {reason} (after {attempts} attempts)")]
pub struct DeliveryError {
    /// The receiver's name.
    pub receiver: String,
    /// The last failure.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// A token bucket: `burst` tokens, refilled at `per_minute / 60` per second.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// Returns a full bucket.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            capacity,
            per_second: f64::from(per_minute.max(1)) / 60.0,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes a token now, or returns how long until one is available (the token is reserved
    /// then, so concurrent callers queue up fairly).
    pub fn take(&self, now: Instant) -> Duration {
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.per_second).min(self.capacity);
        s.1 = now;
        s.0 -= 1.0;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.per_second)
        }
    }

    /// Gives back a token reserved by [`TokenBucket::take`] but not used.
    pub fn give_back(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = (s.0 + 1.0).min(self.capacity);
        }
    }
}

/// A configured receiver, ready to deliver.
#[derive(Debug)]
pub struct Receiver {
    /// Name from the config.
    pub name: String,
    /// Payload shape.
    pub kind: ReceiverKind,
    url: String,
    secret: Option<Vec<u8>>,
    token: Option<String>,
    routing_key: Option<String>,
    client: reqwest::Client,
    bucket: TokenBucket,
}

/// Whether an HTTP failure is worth retrying.
#[derive(Debug)]
enum Failure {
    Retryable(String),
    Permanent(String),
}

impl Receiver {
    /// Builds a receiver, reading its secrets.
    pub fn from_config(c: &ReceiverConfig, index: usize) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("receivers[{index}].{k}");
        let url = match (&c.url, &c.url_file) {
            (Some(u), _) => u.clone(),
            (None, Some(f)) => read_secret(&key("url_file"), Some(f), None)?.unwrap_or_default(),
            (None, None) => PAGERDUTY_EVENTS_URL.to_owned(),
        };
        let secret = read_secret(
            &key("secret_file"),
            c.secret_file.as_deref(),
            c.secret_env.as_deref(),
        )?
        .map(String::into_bytes);
        let token = read_secret(&key("token_file"), c.token_file.as_deref(), None)?;
        let routing_key = read_secret(
            &key("routing_key_file"),
            c.routing_key_file.as_deref(),
            c.routing_key_env.as_deref(),
        )?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(c.timeout_ms))
            .connect_timeout(Duration::from_millis(c.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| ConfigError::Secret {
                service: "alerter",
                key: key("name"),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            name: c.name.clone(),
            kind: c.kind,
            url,
            secret,
            token,
            routing_key,
            client,
            bucket: TokenBucket::new(c.rate_limit_per_minute, c.rate_limit_burst),
        })
    }

    fn body(&self, alert: &Alert, reason: Reason) -> Vec<u8> {
        let v = match self.kind {
            ReceiverKind::Webhook => payload::webhook_body(alert, &self.name, reason),
            ReceiverKind::Slack => payload::slack_body(alert, reason),
            ReceiverKind::Pagerduty => {
                payload::pagerduty_body(alert, self.routing_key.as_deref().unwrap_or(""), reason)
            }
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    async fn attempt(&self, body: &[u8]) -> Result<(), Failure> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if self.kind == ReceiverKind::Webhook {
            let ts = time::OffsetDateTime::now_utc().unix_timestamp();
            req = req.header(payload::TIMESTAMP_HEADER, ts.to_string());
            if let Some(secret) = &self.secret {
                req = req.header(payload::SIGNATURE_HEADER, payload::sign(secret, ts, body));
            }
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Retryable(describe(e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = format!("HTTP {}", status.as_u16());
        // 408 and 429 say "later"; other 4xx say the request itself is wrong, retrying is futile.
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(Failure::Retryable(text))
        } else {
            Err(Failure::Permanent(text))
        }
    }

    /// Delivers one notification: waits for a rate-limit token (bounded), then tries up to
    /// `max_attempts` times with exponential backoff and full jitter.
    pub async fn deliver(
        &self,
        alert: &Alert,
        reason: Reason,
        policy: &DeliveryConfig,
        metrics: &AlerterMetrics,
    ) -> Result<(), DeliveryError> {
        let started = Instant::now();
        let fail = |failure: NotificationFailure, reason: String, attempts: u32| {
            NotificationFailed {
                metrics,
                receiver: &self.name,
                kind: self.kind.as_str(),
                failure,
                error: &reason,
                attempts,
            }
            .emit();
            DeliveryError {
                receiver: self.name.clone(),
                reason,
                attempts,
            }
        };
        let wait = self.bucket.take(Instant::now());
        if wait > Duration::from_millis(policy.rate_limit_max_wait_ms) {
            self.bucket.give_back();
            return Err(fail(
                NotificationFailure::RateLimited,
                format!("rate limited (next slot in {} ms)", wait.as_millis()),
                0,
            ));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let body = self.body(alert, reason);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body).await {
                Ok(()) => {
                    NotificationDelivered {
                        metrics,
                        receiver: &self.name,
                        kind: self.kind.as_str(),
                        elapsed: started.elapsed(),
                    }
                    .emit();
                    return Ok(());
                }
                Err(Failure::Permanent(why)) => {
                    return Err(fail(NotificationFailure::Refused, why, attempt));
                }
                Err(Failure::Retryable(why)) => {
                    if attempt >= policy.max_attempts {
                        return Err(fail(NotificationFailure::RetriesExhausted, why, attempt));
                    }
                    let wait = backoff(policy, attempt, &mut rand::thread_rng());
                    NotificationRetrying {
                        metrics,
                        receiver: &self.name,
                        error: &why,
                        attempt,
                        wait,
                    }
                    .emit();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Returns the wait after failure number `failures`: uniform in `[0, min(max, initial·2^(n-1))]`.
pub fn backoff(policy: &DeliveryConfig, failures: u32, rng: &mut impl Rng) -> Duration {
    let doublings = failures.saturating_sub(1).min(40);
    let ceiling = policy
        .initial_backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_backoff_ms);
    Duration::from_millis(rng.gen_range(0..=ceiling))
}

fn describe(e: reqwest::Error) -> String {
    // The URL may hold a secret (Slack): never put it in a message.
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{what}: {}", e.without_url())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let p = DeliveryConfig {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            rate_limit_max_wait_ms: 0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen_below = false;
        for failures in 1..10u32 {
            let ceiling = (100u64 << (failures - 1)).min(1_000);
            for _ in 0..50 {
                let w = backoff(&p, failures, &mut rng).as_millis() as u64;
                assert!(w <= ceiling, "{w} > {ceiling}");
                seen_below |= w < ceiling / 2;
            }
        }
        assert!(seen_below, "full jitter draws below half the ceiling");
    }

    #[test]
    fn token_bucket_allows_the_burst_then_paces() {
        let b = TokenBucket::new(60, 2);
        let t0 = Instant::now();
        assert_eq!(b.take(t0), Duration::ZERO);
        assert_eq!(b.take(t0), Duration::ZERO);
        let w = b.take(t0);
        assert!((w.as_secs_f64() - 1.0).abs() < 0.01, "{w:?}");
        b.give_back();
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.take(later), Duration::ZERO);
    }
}
