//! Settings of the OpenAI client, from code or from `OPENAI_…` variables.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::limit::RateLimits;
use crate::retry::RetryPolicy;

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";
const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

/// Where the API is and how it is called.
#[derive(Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The API root, ending in `/v1` for OpenAI itself.
    pub base_url: String,
    /// Sent as a bearer token; never logged, redacted in `Debug`.
    pub api_key: Option<String>,
    pub chat_model: String,
    pub embedding_model: String,
    /// Asks the embedding model for vectors of this size (`dimensions`).
    pub embedding_dimensions: Option<usize>,
    /// The longest one attempt may take; for a stream, the longest wait for
    /// the answer to start and then for each next event.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub limits: RateLimits,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: None,
            chat_model: DEFAULT_CHAT_MODEL.into(),
            embedding_model: DEFAULT_EMBEDDING_MODEL.into(),
            embedding_dimensions: None,
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            limits: RateLimits::default(),
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_key = self.api_key.as_ref().map(|_| "[redacted]");
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &api_key)
            .field("chat_model", &self.chat_model)
            .field("embedding_model", &self.embedding_model)
            .field("embedding_dimensions", &self.embedding_dimensions)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A setting that cannot be used, named by its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

impl OpenAiConfig {
    /// Reads the settings from the process environment; unset variables
    /// keep their defaults.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable whose value is unusable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var`, which returns a variable's value;
    /// [`Self::from_env`] with another source of variables.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable whose value is unusable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let mut config = Self::default();

        if let Some(url) = var("OPENAI_BASE_URL") {
            config.base_url = parse_url("OPENAI_BASE_URL", &url)?;
        }
        config.api_key = var("OPENAI_API_KEY").map(|key| key.trim().to_string());
        if let Some(model) = var("OPENAI_CHAT_MODEL") {
            config.chat_model = model.trim().to_string();
        }
        if let Some(model) = var("OPENAI_EMBEDDING_MODEL") {
            config.embedding_model = model.trim().to_string();
        }
        if let Some(value) = var("OPENAI_EMBEDDING_DIMENSIONS") {
            let dims = parse_positive("OPENAI_EMBEDDING_DIMENSIONS", &value)?;
            config.embedding_dimensions = Some(dims.get() as usize);
        }

        read_timing(&var, &mut config)?;
        read_limits(&var, &mut config.limits)?;
        Ok(config)
    }

    /// Whether the environment names an API (`OPENAI_BASE_URL` or
    /// `OPENAI_API_KEY` is set); grounded then answers with it rather than
    /// with its local model.
    pub fn api_configured_in_env() -> bool {
        ["OPENAI_BASE_URL", "OPENAI_API_KEY"]
            .iter()
            .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
    }

    /// The URL of an endpoint under the API root (`chat/completions`).
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url.trim_end_matches('/'))
    }
}

fn read_timing(
    var: &impl Fn(&str) -> Option<String>,
    config: &mut OpenAiConfig,
) -> Result<(), ConfigError> {
    if let Some(value) = var("OPENAI_TIMEOUT_SECS") {
        config.request_timeout = parse_seconds("OPENAI_TIMEOUT_SECS", &value)?;
    }
    if let Some(value) = var("OPENAI_MAX_RETRIES") {
        let retries = parse_count("OPENAI_MAX_RETRIES", &value)?;
        config.retry.max_attempts = retries.saturating_add(1);
    }
    if let Some(value) = var("OPENAI_RETRY_MAX_ELAPSED_SECS") {
        config.retry.max_elapsed = parse_seconds("OPENAI_RETRY_MAX_ELAPSED_SECS", &value)?;
    }
    Ok(())
}

fn read_limits(
    var: &impl Fn(&str) -> Option<String>,
    limits: &mut RateLimits,
) -> Result<(), ConfigError> {
    if let Some(value) = var("OPENAI_MAX_CONCURRENCY") {
        limits.max_concurrency = parse_positive("OPENAI_MAX_CONCURRENCY", &value)?.get() as usize;
    }
    if let Some(value) = var("OPENAI_REQUESTS_PER_MINUTE") {
        limits.requests_per_minute = Some(parse_positive("OPENAI_REQUESTS_PER_MINUTE", &value)?);
    }
    if let Some(value) = var("OPENAI_TOKENS_PER_MINUTE") {
        limits.tokens_per_minute = Some(parse_positive("OPENAI_TOKENS_PER_MINUTE", &value)?);
    }
    Ok(())
}

fn problem(variable: &'static str, value: &str, problem: &str) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

fn parse_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let parsed = reqwest::Url::parse(value)
        .map_err(|error| problem(variable, value, &format!("not a URL ({error})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(problem(
            variable,
            value,
            "the URL must start with http:// or https://",
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_positive(variable: &'static str, value: &str) -> Result<NonZeroU32, ConfigError> {
    value.trim().parse::<NonZeroU32>().map_err(|_| {
        problem(
            variable,
            value,
            "must be a whole number from 1 to 4294967295",
        )
    })
}

fn parse_count(variable: &'static str, value: &str) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| problem(variable, value, "must be a whole number, 0 or more"))
}

fn parse_seconds(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| problem(variable, value, "must be a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(problem(variable, value, "must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| problem(variable, value, "is too large a number of seconds"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<OpenAiConfig, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OpenAiConfig::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = from(&[]).unwrap();
        assert_eq!(config, OpenAiConfig::default());
        assert_eq!(config.base_url, "https://api.openai.com/v1");
        assert_eq!(config.chat_model, "gpt-4o-mini");
        assert_eq!(config.embedding_model, "text-embedding-3-small");
    }

    #[test]
    fn reads_every_variable() {
        let config = from(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_CHAT_MODEL", "gpt-4.1-nano"),
            ("OPENAI_EMBEDDING_MODEL", "text-embedding-3-large"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "256"),
            ("OPENAI_TIMEOUT_SECS", "2.5"),
            ("OPENAI_MAX_RETRIES", "0"),
            ("OPENAI_RETRY_MAX_ELAPSED_SECS", "9"),
            ("OPENAI_MAX_CONCURRENCY", "3"),
            ("OPENAI_REQUESTS_PER_MINUTE", "60"),
            ("OPENAI_TOKENS_PER_MINUTE", "10000"),
        ])
        .unwrap();
        assert_eq!(config.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(config.endpoint("models"), "http://127.0.0.1:9/v1/models");
        assert_eq!(config.api_key.as_deref(), Some("sk-test"));
        assert_eq!(config.embedding_dimensions, Some(256));
        assert_eq!(config.request_timeout, Duration::from_millis(2500));
        assert_eq!(config.retry.max_attempts, 1);
        assert_eq!(config.retry.max_elapsed, Duration::from_secs(9));
        assert_eq!(config.limits.max_concurrency, 3);
        assert_eq!(config.limits.requests_per_minute, NonZeroU32::new(60));
        assert_eq!(config.limits.tokens_per_minute, NonZeroU32::new(10000));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let cases = [
            ("OPENAI_TIMEOUT_SECS", "soon"),
            ("OPENAI_TIMEOUT_SECS", "0"),
            ("OPENAI_MAX_RETRIES", "-1"),
            ("OPENAI_REQUESTS_PER_MINUTE", "0"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "1.5"),
            ("OPENAI_BASE_URL", "localhost:8080"),
        ];
        for (variable, value) in cases {
            let error = from(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = OpenAiConfig {
            api_key: Some("sk-very-secret".into()),
            ..OpenAiConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }
}
