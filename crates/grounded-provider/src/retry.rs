//! Retries of provider calls: exponential backoff with full jitter, bounded
//! by a number of attempts and by the time spent, honouring the delay a
//! server asks for.
//!
//! What is retried is decided here, once for every provider call: 429, 408
//! and the 5xx statuses a gateway or an overloaded server sends, connection
//! failures and timeouts. Every other 4xx is the caller's mistake and fails
//! at once. This module does not decide what one attempt is; a streamed
//! completion, for example, retries only until its first byte (see
//! [`crate::openai`]).
//!
//! The loop is our own rather than backon's: backon's jitter adds a random
//! part on top of the exponential delay instead of drawing the whole delay
//! from `[0, delay]`, and the final error must carry the attempt count and
//! the server's last `Retry-After`, which is simpler to keep in one short
//! loop than to thread through backon's callbacks.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;

use crate::{ErrorClass, ProviderError};

/// How often and how long a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 1 means no retry.
    pub max_attempts: u32,
    /// The upper bound of the first backoff delay.
    pub initial_delay: Duration,
    /// The largest upper bound of any backoff delay.
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first one; a
    /// server's `Retry-After` that does not fit in what is left ends the
    /// retries at once. The attempt running when it passes is not cut short,
    /// so a call can last up to `max_elapsed` plus one request timeout.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once and never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The upper bound of the backoff after `failed` failed attempts:
    /// `min(max_delay, initial_delay * 2^(failed - 1))`.
    fn backoff_bound(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(30));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, backoff_bound(failed)]` (full jitter).
    fn jittered_backoff(&self, failed: u32) -> Duration {
        let bound = self.backoff_bound(failed).as_millis();
        let bound = u64::try_from(bound).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=bound))
    }
}

/// Why one attempt failed, as the retry loop needs to know it.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// The provider answered with an error status.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
        /// The delay the server asked for (`retry-after-ms`, `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    Timeout(Duration),
    /// The provider could not be reached, or the connection broke before the
    /// answer was read.
    Connect(String),
    /// A failure that retrying cannot fix, final as it is.
    Final(ProviderError),
}

impl AttemptError {
    /// Whether another attempt may succeed.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, code, .. } => {
                let out_of_quota = code.as_deref() == Some("insufficient_quota");
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504) && !out_of_quota
            }
            Self::Timeout(_) | Self::Connect(_) => true,
            Self::Final(_) => false,
        }
    }

    /// The reason label of a retry, for logs and metrics.
    fn reason(&self) -> String {
        match self {
            Self::Status { status, .. } => status.to_string(),
            Self::Timeout(_) => "timeout".into(),
            Self::Connect(_) => "connect".into(),
            Self::Final(_) => "final".into(),
        }
    }

    fn server_delay(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error the caller sees after `attempts` attempts.
    fn into_error(self, provider: &str, attempts: u32) -> ProviderError {
        let provider = provider.to_string();
        match self {
            Self::Status {
                status: 429,
                code,
                message,
                retry_after,
            } if code.as_deref() != Some("insufficient_quota") => ProviderError::RateLimited {
                provider,
                attempts,
                retry_after,
                message,
            },
            Self::Status {
                status,
                code,
                message,
                ..
            } => ProviderError::Status {
                provider,
                status,
                code,
                message,
                attempts,
            },
            Self::Timeout(timeout) => ProviderError::Timeout {
                provider,
                timeout,
                attempts,
            },
            Self::Connect(message) => ProviderError::Connect {
                provider,
                message,
                attempts,
            },
            Self::Final(error) => error,
        }
    }
}

/// Runs `attempt` until it succeeds, fails with an error that is not worth
/// retrying, or `policy` is spent. `attempt` is given the attempt number,
/// starting at 1.
///
/// # Errors
/// The last attempt's error, with the number of attempts made: a 429 that
/// never cleared is [`ProviderError::RateLimited`], other statuses
/// [`ProviderError::Status`], timeouts [`ProviderError::Timeout`].
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    mut attempt: F,
) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match attempt(attempts).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };

        let Some(delay) = next_delay(policy, attempts, &error, started.elapsed()) else {
            let error = error.into_error(provider, attempts);
            record_failure(provider, &error);
            return Err(error);
        };

        record_retry(provider, &error, attempts, delay);
        tokio::time::sleep(delay).await;
    }
}

/// The wait before the next attempt, or `None` when there is to be none.
fn next_delay(
    policy: &RetryPolicy,
    failed: u32,
    error: &AttemptError,
    elapsed: Duration,
) -> Option<Duration> {
    if !error.is_retryable() || failed >= policy.max_attempts {
        return None;
    }
    let remaining = policy.max_elapsed.checked_sub(elapsed)?;

    match error.server_delay() {
        Some(asked) if asked > remaining => None,
        Some(asked) => Some(asked),
        None => Some(policy.jittered_backoff(failed).min(remaining)),
    }
}

fn record_retry(provider: &str, error: &AttemptError, attempt: u32, delay: Duration) {
    let reason = error.reason();
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(provider, reason = %reason, attempt, delay_ms, "retrying provider call");
    metrics::counter!(
        "grounded_provider_retries_total",
        "provider" => provider.to_string(),
        "reason" => reason,
    )
    .increment(1);
}

/// Counts a call that failed for good.
pub(crate) fn record_failure(provider: &str, error: &ProviderError) {
    metrics::counter!(
        "grounded_provider_errors_total",
        "provider" => provider.to_string(),
        "class" => class_label(error.class()),
    )
    .increment(1);
}

/// The metrics label of an error class.
pub(crate) fn class_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::RateLimited => "rate_limited",
        ErrorClass::BadGateway => "bad_gateway",
        ErrorClass::Timeout => "timeout",
        ErrorClass::InvalidRequest => "invalid_request",
        ErrorClass::Internal => "internal",
    }
}

/// The delay a response asks for: `retry-after-ms` (milliseconds, as OpenAI
/// sends it) first, then `Retry-After` (seconds or an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(millis) = header("retry-after-ms").and_then(parse_millis) {
        return Some(millis);
    }
    header("retry-after").and_then(|value| parse_retry_after(value, SystemTime::now()))
}

fn parse_millis(value: &str) -> Option<Duration> {
    let millis: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(millis.max(0.0) / 1000.0).ok()
}

/// Parses a `Retry-After` value, seconds or an HTTP date, as a delay from
/// `now`; a date in the past is no delay. Garbage is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds.max(0.0)).ok();
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<Duration>) -> AttemptError {
        AttemptError::Status {
            status,
            code: None,
            message: "m".into(),
            retry_after,
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-3", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let later = "Sun, 06 Nov 1994 08:50:07 GMT";
        assert_eq!(parse_retry_after(later, now), Some(Duration::from_secs(30)));

        let earlier = "Sun, 06 Nov 1994 08:49:00 GMT";
        assert_eq!(parse_retry_after(earlier, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for garbage in ["", "soon", "2s", "Sunday", "NaN-ish"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));

        headers.remove("retry-after-ms");
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn backoff_is_full_jitter_within_the_exponential_bound() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff_bound(1), Duration::from_millis(100));
        assert_eq!(policy.backoff_bound(3), Duration::from_millis(400));
        assert_eq!(policy.backoff_bound(10), Duration::from_millis(1000));
        assert_eq!(policy.backoff_bound(u32::MAX), Duration::from_millis(1000));

        let draws: Vec<Duration> = (0..200).map(|_| policy.jittered_backoff(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(200)));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let policy = RetryPolicy::default();
        let elapsed = Duration::ZERO;
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(next_delay(&policy, 1, &status(code, None), elapsed).is_some());
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(next_delay(&policy, 1, &status(code, None), elapsed).is_none());
        }
        let out_of_quota = AttemptError::Status {
            status: 429,
            code: Some("insufficient_quota".into()),
            message: "m".into(),
            retry_after: None,
        };
        assert!(next_delay(&policy, 1, &out_of_quota, elapsed).is_none());
    }

    #[test]
    fn server_delay_is_honoured_within_the_time_bound() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let asked = status(429, Some(Duration::from_secs(3)));
        let early = Duration::from_secs(1);
        assert_eq!(
            next_delay(&policy, 1, &asked, early),
            Some(Duration::from_secs(3))
        );
        assert_eq!(next_delay(&policy, 1, &asked, Duration::from_secs(8)), None);
        assert_eq!(next_delay(&policy, 5, &asked, early), None);
    }
}
