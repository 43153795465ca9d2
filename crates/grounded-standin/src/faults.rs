//! Misbehaviour on demand, and OpenAI's error answers.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What the stand-in does wrong to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 `rate_limit_exceeded`, with `retry-after` (whole seconds, rounded
    /// up) and, when the delay is not whole seconds, `retry-after-ms`.
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx `server_error` of this status.
    ServerError(u16),
    /// 400 `invalid_request_error`.
    BadRequest,
    /// Waits this long, then answers normally.
    Slow(Duration),
    /// Sends this many `data:` events of a stream (the role chunk counts),
    /// then drops the connection without `[DONE]`. A whole answer is cut
    /// after its first bytes.
    DropStream { after_chunks: usize },
}

/// What a fault does to the request it meets.
pub(crate) enum Effect {
    Answer(Response),
    Delay(Duration),
    Cut(usize),
}

impl Fault {
    pub(crate) fn effect(&self) -> Effect {
        match self {
            Self::RateLimited { retry_after } => Effect::Answer(rate_limited(*retry_after)),
            Self::ServerError(status) => Effect::Answer(server_error(*status)),
            Self::BadRequest => Effect::Answer(invalid_request(
                "The stand-in was told to reject this request.",
                None,
                None,
            )),
            Self::Slow(delay) => Effect::Delay(*delay),
            Self::DropStream { after_chunks } => Effect::Cut(*after_chunks),
        }
    }
}

/// An answer in OpenAI's error format.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    (status, axum::Json(body)).into_response()
}

/// 400 `invalid_request_error`.
pub(crate) fn invalid_request(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        code,
        param,
        message,
    )
}

/// 401 for a missing or wrong API key; the key is shown as OpenAI shows it,
/// all but its ends masked.
pub(crate) fn unauthorized(presented: Option<&str>) -> Response {
    let message = match presented {
        None => "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            .to_string(),
        Some(key) => format!(
            "Incorrect API key provided: {}. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            mask(key)
        ),
    };
    let code = presented.map(|_| "invalid_api_key");
    error_response(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        code,
        None,
        &message,
    )
}

fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// 429 with the headers OpenAI sends.
pub(crate) fn rate_limited(retry_after: Option<Duration>) -> Response {
    let wait = retry_after.unwrap_or(Duration::from_secs(1));
    let message = format!(
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. \
         Please try again in {}ms.",
        wait.as_millis()
    );
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        Some("rate_limit_exceeded"),
        None,
        &message,
    );
    let headers = response.headers_mut();
    rate_limit_headers(headers, wait);
    if let Some(delay) = retry_after {
        insert(
            headers,
            "retry-after",
            delay.as_secs_f64().ceil().to_string(),
        );
        if delay.subsec_nanos() != 0 {
            insert(headers, "retry-after-ms", delay.as_millis().to_string());
        }
    }
    response
}

fn rate_limit_headers(headers: &mut HeaderMap, reset: Duration) {
    let reset = format!("{}ms", reset.as_millis());
    insert(headers, "x-ratelimit-limit-requests", "3".into());
    insert(headers, "x-ratelimit-remaining-requests", "0".into());
    insert(headers, "x-ratelimit-reset-requests", reset.clone());
    insert(headers, "x-ratelimit-limit-tokens", "40000".into());
    insert(headers, "x-ratelimit-remaining-tokens", "39000".into());
    insert(headers, "x-ratelimit-reset-tokens", reset);
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

/// A 5xx `server_error`; a status outside 500-599 is taken as 500.
pub(crate) fn server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(StatusCode::is_server_error)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status.as_u16() {
        503 => "The server is overloaded or not ready yet.",
        _ => "The server had an error while processing your request. Sorry about that!",
    };
    error_response(status, "server_error", None, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_like_openai_does() {
        assert_eq!(mask("sk-abcdefghijkl1234"), "sk-************1234");
        assert_eq!(mask("short"), "*****");
    }
}
