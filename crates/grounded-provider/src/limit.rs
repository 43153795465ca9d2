//! Client-side limits on provider calls: how many run at once, and how many
//! requests and tokens are sent per minute.
//!
//! grounded waits here before sending rather than letting the provider
//! answer 429: a request takes a concurrency permit, one request cell and
//! as many token cells as it is estimated to spend. The limits are per
//! [`Limiter`], so two clients built from the same settings share nothing;
//! a deployment with several processes has to divide its quota among them.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ProviderError;

/// The limits of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Requests sent per minute, unlimited when `None`. Requests are spread
    /// over the minute: at most a second's share is sent in a burst, as
    /// providers enforce per-minute limits over shorter windows too.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Tokens (prompt plus the most the answer may use) sent per minute,
    /// unlimited when `None`. The whole minute's tokens may go in one burst,
    /// so that one large request can pass.
    pub tokens_per_minute: Option<NonZeroU32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            max_concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }
}

/// Enforces [`RateLimits`] on the requests of one client.
#[derive(Debug)]
pub struct Limiter {
    provider: String,
    concurrency: Arc<Semaphore>,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
    tokens_per_minute: Option<NonZeroU32>,
}

/// Held while a request is in flight; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl Limiter {
    /// A limiter for `limits`, naming `provider` in its errors.
    pub fn new(provider: &str, limits: RateLimits) -> Self {
        Self {
            provider: provider.to_string(),
            concurrency: Arc::new(Semaphore::new(
                limits.max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
            requests: limits.requests_per_minute.map(request_limiter),
            tokens: limits
                .tokens_per_minute
                .map(|tpm| RateLimiter::direct(Quota::per_minute(tpm))),
            tokens_per_minute: limits.tokens_per_minute,
        }
    }

    /// Checks that a request of `tokens` can ever pass the token limit.
    ///
    /// # Errors
    /// [`ProviderError::Invalid`] when `tokens` exceeds the tokens per minute.
    pub fn check_fits(&self, tokens: u32) -> Result<(), ProviderError> {
        match self.tokens_per_minute {
            Some(tpm) if tokens > tpm.get() => Err(ProviderError::Invalid {
                provider: self.provider.clone(),
                message: format!(
                    "the request needs about {tokens} tokens, more than the limit of {tpm} \
                     tokens per minute"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Waits until a request estimated at `tokens` may be sent, and returns
    /// the permit to hold while it is in flight.
    ///
    /// # Errors
    /// [`ProviderError::Invalid`] when `tokens` exceeds the tokens per minute
    /// (it would wait forever).
    pub async fn acquire(&self, tokens: u32) -> Result<Permit, ProviderError> {
        self.check_fits(tokens)?;

        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let (Some(limiter), Some(n)) = (&self.tokens, NonZeroU32::new(tokens)) {
            limiter
                .until_n_ready(n)
                .await
                .map_err(|_| self.too_large(tokens))?;
        }

        // The semaphore is never closed, so this cannot fail in practice.
        let slot = Arc::clone(&self.concurrency)
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Invalid {
                provider: self.provider.clone(),
                message: "the concurrency limit was shut down".into(),
            })?;
        Ok(Permit { _slot: slot })
    }

    fn too_large(&self, tokens: u32) -> ProviderError {
        ProviderError::Invalid {
            provider: self.provider.clone(),
            message: format!("the request of about {tokens} tokens cannot be admitted"),
        }
    }
}

/// A limiter of `rpm` requests per minute, evenly spaced, with a burst of
/// one second's share.
fn request_limiter(rpm: NonZeroU32) -> DefaultDirectRateLimiter {
    let burst = rpm.get().div_ceil(60);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(60) / rpm.get();
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_minute(rpm))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> RateLimits {
        RateLimits {
            max_concurrency: 2,
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            tokens_per_minute: tpm.and_then(NonZeroU32::new),
        }
    }

    #[tokio::test]
    async fn a_request_larger_than_the_minute_is_refused_not_awaited() {
        let limiter = Limiter::new("test", limits(None, Some(1000)));
        assert!(limiter.acquire(1000).await.is_ok());

        let refused = tokio::time::timeout(Duration::from_secs(1), limiter.acquire(1001)).await;
        let error = refused.expect("refused at once").unwrap_err();
        assert!(matches!(error, ProviderError::Invalid { .. }), "{error}");
    }

    #[tokio::test]
    async fn requests_are_spaced_to_the_rate() {
        let limiter = Limiter::new("test", limits(Some(600), None));
        let started = Instant::now();
        for _ in 0..13 {
            drop(limiter.acquire(1).await.unwrap());
        }
        // 600 per minute is 10 per second with a burst of 10: the 11th to
        // 13th wait 100 ms each.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let limiter = Limiter::new("test", limits(None, None));
        let _first = limiter.acquire(1).await.unwrap();
        let _second = limiter.acquire(1).await.unwrap();

        let third = tokio::time::timeout(Duration::from_millis(100), limiter.acquire(1)).await;
        assert!(third.is_err(), "a third request got in");
    }
}
