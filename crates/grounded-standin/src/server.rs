//! The routes of the stand-in and the script that decides their answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::Value;

use crate::faults::{Effect, Fault, error_response, invalid_request, unauthorized};
use crate::reply::{Reply, embed, split_deltas, word_count};
use crate::wire::{self, Completion, Tokens};
use crate::{RecordedRequest, StandInConfig, lock};

/// How long a cut stream waits before dropping its connection, so that the
/// events before the cut reach the client first.
const CUT_PAUSE: Duration = Duration::from_millis(50);

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: StandInConfig,
    pub script: Mutex<Script>,
}

/// What a test changes while the stand-in runs.
#[derive(Debug)]
pub(crate) struct Script {
    pub faults: VecDeque<Fault>,
    pub storm: bool,
    pub reply: Reply,
    pub report_usage: bool,
    pub requests: Vec<RecordedRequest>,
    pub answered: u64,
}

impl Shared {
    pub(crate) fn new(config: StandInConfig) -> Self {
        let script = Script {
            faults: VecDeque::new(),
            storm: false,
            reply: config.reply.clone(),
            report_usage: config.report_usage,
            requests: Vec::new(),
            answered: 0,
        };
        Self {
            config,
            script: Mutex::new(script),
        }
    }
}

type AppState = State<Arc<Shared>>;

/// An error answer, boxed because a response is large.
type Rejection = Box<Response>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .fallback(unknown_route)
        .with_state(shared)
}

/// A request as every handler first sees it: recorded, authorised, and put
/// through the fault script.
struct Admitted {
    body: Value,
    /// Cut the answer after this many events.
    cut: Option<usize>,
}

/// Records the request, then answers it with an error when the key is
/// wrong, a fault says so or the body is not JSON.
async fn admit(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Admitted, Rejection> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    record(shared, method, uri, headers, json.clone());
    authorize(&shared.config, headers)?;

    let mut cut = None;
    match next_fault(shared).map(|fault| fault.effect()) {
        Some(Effect::Answer(response)) => return Err(Box::new(response)),
        Some(Effect::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Effect::Cut(after)) => cut = Some(after),
        None => {}
    }

    let body = match (json, method == Method::GET) {
        (Some(json), _) => json,
        (None, true) => Value::Null,
        (None, false) => return Err(Box::new(unparsable_body())),
    };
    Ok(Admitted { body, cut })
}

fn record(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: Option<Value>) {
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    lock(&shared.script).requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
        received_at: Instant::now(),
    });
}

fn authorize(config: &StandInConfig, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(expected) = &config.api_key else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(key) if key == expected => Ok(()),
        other => Err(Box::new(unauthorized(other))),
    }
}

fn next_fault(shared: &Shared) -> Option<Fault> {
    let mut script = lock(&shared.script);
    if script.storm {
        return Some(Fault::RateLimited { retry_after: None });
    }
    script.faults.pop_front()
}

fn unparsable_body() -> Response {
    invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
         using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was \
         sent was not valid JSON.)",
        None,
        None,
    )
}

async fn chat_completions(
    State(shared): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let admitted = admit(&shared, &method, &uri, &headers, &body).await;
    admitted
        .and_then(|admitted| answer_chat(&shared, admitted))
        .unwrap_or_else(|rejection| *rejection)
}

fn answer_chat(shared: &Shared, admitted: Admitted) -> Result<Response, Rejection> {
    let request = ChatBody::read(&admitted.body)?;

    let (reply, report_usage, id) = {
        let mut script = lock(&shared.script);
        script.answered += 1;
        (script.reply.clone(), script.report_usage, script.answered)
    };
    let text = reply.answer(&request.last_user_message);
    let tokens = Tokens {
        prompt: request.prompt_words,
        completion: word_count(&text),
    };
    let completion = Completion::new(format!("chatcmpl-standin{id:010}"), request.model);

    if request.stream {
        let usage = (report_usage && request.include_usage).then_some(tokens);
        let deltas = split_deltas(&text, shared.config.words_per_delta);
        let events = completion.stream_events(&deltas, usage);
        return Ok(event_stream(events, admitted.cut));
    }
    let object = completion.whole(&text, report_usage.then_some(tokens));
    Ok(whole_answer(object, admitted.cut))
}

/// A JSON answer, cut when the fault script says so.
fn whole_answer(object: Value, cut: Option<usize>) -> Response {
    match cut {
        Some(_) => cut_json(&object),
        None => Json(object).into_response(),
    }
}

/// The parts of a chat completion request the stand-in reads.
struct ChatBody {
    model: String,
    last_user_message: String,
    prompt_words: usize,
    stream: bool,
    include_usage: bool,
}

impl ChatBody {
    fn read(body: &Value) -> Result<Self, Rejection> {
        let model = required_model(body)?;
        let Some(messages) = body.get("messages").and_then(Value::as_array) else {
            return Err(Box::new(invalid_request(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            )));
        };

        let mut last_user_message = String::new();
        let mut prompt_words = 0;
        for message in messages {
            let content = message_text(message);
            prompt_words += word_count(&content);
            if message.get("role").and_then(Value::as_str) == Some("user") {
                last_user_message = content;
            }
        }

        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            model,
            last_user_message,
            prompt_words,
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage,
        })
    }
}

fn required_model(body: &Value) -> Result<String, Rejection> {
    match body.get("model").and_then(Value::as_str) {
        Some(model) if !model.is_empty() => Ok(model.to_string()),
        _ => Err(Box::new(invalid_request(
            "you must provide a model parameter",
            None,
            None,
        ))),
    }
}

/// A message's text: its `content` string, or the text parts of a list.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A `text/event-stream` answer of `events`; with `cut`, only the first
/// `cut` events and then a dropped connection.
fn event_stream(events: Vec<String>, cut: Option<usize>) -> Response {
    let keep = cut.unwrap_or(events.len()).min(events.len());
    let sent =
        futures::stream::iter(events.into_iter().take(keep)).map(|event| Ok(Bytes::from(event)));
    let body = match cut {
        Some(_) => Body::from_stream(sent.chain(dropped_connection())),
        None => Body::from_stream(sent),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A whole answer cut after its first bytes.
fn cut_json(object: &Value) -> Response {
    let text = object.to_string();
    let start = Bytes::from(text[..text.len() / 2].to_string());
    let sent = futures::stream::iter([Ok(start)]);
    let body = Body::from_stream(sent.chain(dropped_connection()));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A body part that fails after a pause, which makes the server drop the
/// connection without ending the body.
fn dropped_connection() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::once(async {
        tokio::time::sleep(CUT_PAUSE).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the stand-in was told to drop the connection",
        ))
    })
}

async fn embeddings(
    State(shared): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let admitted = admit(&shared, &method, &uri, &headers, &body).await;
    admitted
        .and_then(|admitted| answer_embeddings(&shared, admitted))
        .unwrap_or_else(|rejection| *rejection)
}

fn answer_embeddings(shared: &Shared, admitted: Admitted) -> Result<Response, Rejection> {
    let model = required_model(&admitted.body)?;
    let inputs = embedding_inputs(&admitted.body)?;

    let dimension = admitted
        .body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|dims| usize::try_from(dims).ok())
        .filter(|dims| *dims > 0)
        .unwrap_or(shared.config.embedding_dimension);
    let tokens = inputs.iter().map(|input| word_count(input)).sum();
    let vectors = inputs.iter().map(|input| embed(input, dimension)).collect();
    let object = wire::embeddings(&model, vectors, tokens);
    Ok(whole_answer(object, admitted.cut))
}

/// `input` as a list of strings: one string, or an array of them.
fn embedding_inputs(body: &Value) -> Result<Vec<String>, Rejection> {
    let invalid = || {
        Box::new(invalid_request(
            "'input' must be a string or a non-empty array of strings.",
            Some("input"),
            None,
        ))
    };
    match body.get("input") {
        Some(Value::String(text)) => Ok(vec![text.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_string).ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

async fn models(
    State(shared): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(rejection) = admit(&shared, &method, &uri, &headers, &body).await {
        return *rejection;
    }
    let config = &shared.config;
    Json(wire::models(&[&config.chat_model, &config.embedding_model])).into_response()
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let message = format!("Invalid URL ({method} {})", uri.path());
    error_response(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        None,
        &message,
    )
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;

    fn app(config: StandInConfig) -> (Router, Arc<Shared>) {
        let shared = Arc::new(Shared::new(config));
        (router(Arc::clone(&shared)), shared)
    }

    async fn send(router: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body)
    }

    fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .unwrap()
    }

    fn chat_body(stream: bool) -> String {
        json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "[1] a.md (lines 1-2)\nOne two three four five.\nQuestion: ?"}],
            "stream": stream,
            "stream_options": {"include_usage": true},
        })
        .to_string()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[tokio::test]
    async fn bad_bodies_get_openai_error_objects() {
        let (router, _) = app(StandInConfig::default());
        let (status, _, body) =
            send(router.clone(), post("/v1/chat/completions", "{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error = &json(&body)["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("parse the JSON body")
        );
        assert!(error.get("param").is_some() && error.get("code").is_some());

        let missing = json!({"model": "m"}).to_string();
        let (status, _, body) = send(router.clone(), post("/v1/chat/completions", missing)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json(&body)["error"]["param"], "messages");

        let (status, _, body) = send(router, post("/v1/nowhere", "{}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            json(&body)["error"]["message"],
            "Invalid URL (POST /v1/nowhere)"
        );
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_and_masked() {
        let config = StandInConfig {
            api_key: Some("sk-right-key-000000".into()),
            ..StandInConfig::default()
        };
        let (router, _) = app(config);
        let mut request = post("/v1/chat/completions", chat_body(false));
        let wrong = "Bearer sk-wrong-key-123456";
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, wrong.parse().unwrap());

        let (status, _, body) = send(router, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let error = &json(&body)["error"];
        assert_eq!(error["code"], "invalid_api_key");
        assert!(
            !error["message"]
                .as_str()
                .unwrap()
                .contains("sk-wrong-key-123456")
        );
    }

    #[tokio::test]
    async fn a_whole_completion_has_openais_shape() {
        let (router, shared) = app(StandInConfig::default());
        let (status, _, body) = send(router, post("/v1/chat/completions", chat_body(false))).await;

        assert_eq!(status, StatusCode::OK);
        let object = json(&body);
        assert_eq!(object["object"], "chat.completion");
        assert_eq!(object["model"], "gpt-4o-mini");
        let choice = &object["choices"][0];
        assert_eq!(choice["message"]["content"], "One two three four five. [1]");
        assert_eq!(choice["message"]["refusal"], Value::Null);
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(object["usage"]["prompt_tokens"], 11);
        assert_eq!(object["usage"]["completion_tokens"], 6);
        assert_eq!(object["usage"]["total_tokens"], 17);
        assert_eq!(lock(&shared.script).requests.len(), 1);
    }

    #[tokio::test]
    async fn a_stream_has_openais_chunks_then_usage_then_done() {
        let (router, _) = app(StandInConfig::default());
        let (status, headers, body) =
            send(router, post("/v1/chat/completions", chat_body(true))).await;

        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = String::from_utf8(body.to_vec()).unwrap();
        let events: Vec<&str> = text.split_terminator("\n\n").collect();
        assert!(events.iter().all(|event| event.starts_with("data: ")));
        assert_eq!(events.last(), Some(&"data: [DONE]"));

        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|event| json(event.strip_prefix("data: ").unwrap().as_bytes()))
            .collect();
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = &chunks[chunks.len() - 1];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 6);

        let content: String = chunks[1..chunks.len() - 2]
            .iter()
            .map(|chunk| {
                assert_eq!(chunk["object"], "chat.completion.chunk");
                assert_eq!(chunk["usage"], Value::Null);
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(content, "One two three four five. [1]");
    }

    #[tokio::test]
    async fn embeddings_honour_dimensions_and_list_inputs() {
        let (router, _) = app(StandInConfig::default());
        let body = json!({"model": "e", "input": ["a b", "c"], "dimensions": 8}).to_string();
        let (status, _, body) = send(router.clone(), post("/v1/embeddings", body)).await;

        assert_eq!(status, StatusCode::OK);
        let object = json(&body);
        assert_eq!(object["object"], "list");
        assert_eq!(object["data"][1]["index"], 1);
        assert_eq!(object["data"][0]["embedding"].as_array().unwrap().len(), 8);
        assert_eq!(object["usage"]["prompt_tokens"], 3);

        let single = json!({"model": "e", "input": "a b"}).to_string();
        let (_, _, body) = send(router, post("/v1/embeddings", single)).await;
        assert_eq!(
            json(&body)["data"][0]["embedding"]
                .as_array()
                .unwrap()
                .len(),
            64
        );
    }

    #[tokio::test]
    async fn faults_are_taken_one_per_request() {
        let (router, shared) = app(StandInConfig::default());
        lock(&shared.script).faults.extend([
            Fault::RateLimited {
                retry_after: Some(Duration::from_millis(1500)),
            },
            Fault::ServerError(502),
        ]);

        let (status, headers, body) = send(
            router.clone(),
            post("/v1/chat/completions", chat_body(false)),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(headers["retry-after-ms"], "1500");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
        assert_eq!(json(&body)["error"]["code"], "rate_limit_exceeded");

        let (status, _, body) = send(
            router.clone(),
            post("/v1/chat/completions", chat_body(false)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(json(&body)["error"]["type"], "server_error");

        let (status, _, _) = send(router, post("/v1/chat/completions", chat_body(false))).await;
        assert_eq!(status, StatusCode::OK);
    }
}
