//! The OpenAI client against the stand-in: retries, limits, streaming,
//! usage and the API key, each over a real HTTP connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use grounded_core::ChatMessage;
use grounded_provider::limit::RateLimits;
use grounded_provider::openai::{OpenAiChat, OpenAiClient, OpenAiConfig};
use grounded_provider::retry::RetryPolicy;
use grounded_provider::{ChatEvent, ChatModel, ChatRequest, ErrorClass, ProviderError};
use grounded_standin::{Fault, RecordedRequest, StandIn, StandInConfig};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

const PROMPT: &str = "Sources:\n\n[1] docs/crabs.md (lines 1-4) — Crabs\nCrabs walk sideways \
    on the sea floor. They molt to grow.\n\n[2] docs/rust.md (lines 2-9)\nRust's mascot is a \
    crab named Ferris. It is orange.\n\nQuestion: how do crabs walk?";

/// Settings for `standin` with quick retries and a short timeout.
fn config(standin: &StandIn) -> OpenAiConfig {
    OpenAiConfig {
        base_url: standin.base_url(),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
        },
        ..OpenAiConfig::default()
    }
}

fn chat(config: OpenAiConfig) -> OpenAiChat {
    OpenAiChat::new(config).expect("client builds")
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new("system", "Answer from the sources only."),
            ChatMessage::new("user", PROMPT),
        ],
        max_tokens: 64,
        temperature: 0.0,
        cite_sources: None,
    }
}

/// `future`, failing the test instead of hanging.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the call neither finished nor failed within 20 s")
}

fn chat_requests(standin: &StandIn) -> Vec<RecordedRequest> {
    let requests = standin.requests();
    assert!(requests.iter().all(|r| r.path == "/v1/chat/completions"));
    requests
}

fn gap(requests: &[RecordedRequest], from: usize, to: usize) -> Duration {
    requests[to].received_at - requests[from].received_at
}

/// All events of a stream, errors included, in order.
async fn drain(chat: &OpenAiChat) -> Vec<Result<ChatEvent, ProviderError>> {
    let stream = bounded(chat.stream(&request()))
        .await
        .expect("stream starts");
    bounded(stream.collect::<Vec<_>>()).await
}

#[tokio::test]
async fn the_cited_answer_comes_back_with_usage() {
    let standin = StandIn::start(StandInConfig::default()).await;
    let completion = bounded(chat(config(&standin)).complete(&request()))
        .await
        .unwrap();

    assert_eq!(
        completion.text,
        "Crabs walk sideways on the sea floor. [1] Rust's mascot is a crab named Ferris. [2]"
    );
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert!(!completion.usage.counted_locally);
    assert_eq!(completion.usage.completion_tokens, 16);

    let sent = &chat_requests(&standin)[0];
    let body = sent.body.as_ref().unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["messages"][1]["content"], PROMPT);
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_delay() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_fault(Fault::RateLimited {
        retry_after: Some(Duration::from_secs(2)),
    });

    let completion = bounded(chat(config(&standin)).complete(&request())).await;
    assert!(completion.is_ok(), "{completion:?}");

    let requests = chat_requests(&standin);
    assert_eq!(requests.len(), 2);
    let waited = gap(&requests, 0, 1);
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "retried after {waited:?}");
}

#[tokio::test]
async fn a_429_storm_ends_in_rate_limited_at_the_bound() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.set_storm(true);

    let error = bounded(chat(config(&standin)).complete(&request()))
        .await
        .unwrap_err();

    assert!(
        matches!(error, ProviderError::RateLimited { attempts: 4, .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::RateLimited);
    assert_eq!(chat_requests(&standin).len(), 4);

    standin.set_storm(false);
    let after = bounded(chat(config(&standin)).complete(&request())).await;
    assert!(after.is_ok(), "{after:?}");
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_fault(Fault::BadRequest);

    let error = bounded(chat(config(&standin)).complete(&request()))
        .await
        .unwrap_err();

    match &error {
        ProviderError::Status {
            status,
            code,
            message,
            attempts,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(code.as_deref(), Some("invalid_request_error"));
            assert!(message.contains("told to reject"), "{message}");
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected a 400 status, got {other:?}"),
    }
    assert_eq!(chat_requests(&standin).len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_faults([Fault::ServerError(500), Fault::ServerError(503)]);

    let completion = bounded(chat(config(&standin)).complete(&request())).await;
    assert!(completion.is_ok(), "{completion:?}");
    assert_eq!(chat_requests(&standin).len(), 3);
}

#[tokio::test]
async fn server_errors_past_the_bound_end_in_their_status() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_faults(std::iter::repeat_n(Fault::ServerError(502), 4));

    let error = bounded(chat(config(&standin)).complete(&request()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Status {
                status: 502,
                attempts: 4,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::BadGateway);
}

#[tokio::test]
async fn a_slow_answer_times_out_after_the_bound() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_faults([
        Fault::Slow(Duration::from_secs(3)),
        Fault::Slow(Duration::from_secs(3)),
    ]);
    let mut config = config(&standin);
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_attempts = 2;

    let started = Instant::now();
    let error = bounded(chat(config).complete(&request()))
        .await
        .unwrap_err();

    assert!(
        matches!(error, ProviderError::Timeout { attempts: 2, .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(chat_requests(&standin).len(), 2);
}

#[tokio::test]
async fn the_stream_spells_the_same_answer_and_ends_with_usage() {
    let standin = StandIn::start(StandInConfig::default()).await;
    let chat = chat(config(&standin));
    let whole = bounded(chat.complete(&request())).await.unwrap();

    let events = drain(&chat).await;
    let (last, deltas) = events.split_last().expect("events");
    let text: String = deltas
        .iter()
        .map(|event| match event {
            Ok(ChatEvent::Delta(delta)) => delta.clone(),
            other => panic!("expected a delta, got {other:?}"),
        })
        .collect();

    assert!(deltas.len() > 2, "{} deltas", deltas.len());
    assert_eq!(text, whole.text);
    match last {
        Ok(ChatEvent::Done {
            usage,
            finish_reason,
        }) => {
            assert_eq!(*usage, whole.usage);
            assert!(!usage.counted_locally);
            assert_eq!(finish_reason.as_deref(), Some("stop"));
        }
        other => panic!("expected Done, got {other:?}"),
    }

    let streamed = &chat_requests(&standin)[1];
    let body = streamed.body.as_ref().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(streamed.header("accept"), Some("text/event-stream"));
}

#[tokio::test]
async fn a_stream_is_retried_before_its_first_byte() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_fault(Fault::RateLimited {
        retry_after: Some(Duration::from_millis(200)),
    });

    let events = drain(&chat(config(&standin))).await;
    assert!(
        matches!(events.last(), Some(Ok(ChatEvent::Done { .. }))),
        "{events:?}"
    );

    let requests = chat_requests(&standin);
    assert_eq!(requests.len(), 2);
    assert!(gap(&requests, 0, 1) >= Duration::from_millis(190));
}

#[tokio::test]
async fn a_dropped_stream_ends_in_a_protocol_error() {
    let standin = StandIn::start(StandInConfig::default()).await;
    standin.push_fault(Fault::DropStream { after_chunks: 2 });

    let events = drain(&chat(config(&standin))).await;

    let (last, before) = events.split_last().expect("events");
    assert!(
        matches!(last, Err(ProviderError::Protocol { .. })),
        "the stream ended with {last:?}"
    );
    assert!(!before.is_empty(), "no delta came before the cut");
    assert!(
        before.iter().all(|e| matches!(e, Ok(ChatEvent::Delta(_)))),
        "{before:?}"
    );
    assert_eq!(
        chat_requests(&standin).len(),
        1,
        "a started stream was retried"
    );
}

#[tokio::test]
async fn without_reported_usage_tokens_are_counted_locally() {
    let standin = StandIn::start(StandInConfig {
        report_usage: false,
        ..StandInConfig::default()
    })
    .await;
    let chat = chat(config(&standin));

    let completion = bounded(chat.complete(&request())).await.unwrap();
    let usage = completion.usage;
    assert!(usage.counted_locally);
    assert!(
        usage.prompt_tokens > 0 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    assert_eq!(
        usage.completion_tokens as usize,
        chat.count_tokens(&completion.text)
    );

    let events = drain(&chat).await;
    match events.last() {
        Some(Ok(ChatEvent::Done {
            usage: streamed, ..
        })) => assert_eq!(*streamed, usage),
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test]
async fn the_request_limit_spaces_requests() {
    let standin = StandIn::start(StandInConfig::default()).await;
    let mut config = config(&standin);
    config.limits = RateLimits {
        requests_per_minute: NonZeroU32::new(120),
        ..RateLimits::default()
    };
    let chat = chat(config);

    for _ in 0..3 {
        bounded(chat.complete(&request())).await.unwrap();
    }

    // 120 per minute is 2 per second, a burst of 2: the third waits 0.5 s.
    let requests = chat_requests(&standin);
    let spread = gap(&requests, 0, 2);
    assert!(
        spread >= Duration::from_millis(450),
        "3 requests in {spread:?}"
    );
    assert!(spread < Duration::from_secs(5), "3 requests in {spread:?}");
}

#[tokio::test]
async fn a_request_over_the_token_limit_is_refused_before_sending() {
    let standin = StandIn::start(StandInConfig::default()).await;
    let mut config = config(&standin);
    config.limits.tokens_per_minute = NonZeroU32::new(50);

    let error = bounded(chat(config).complete(&request()))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Invalid { .. }), "{error:?}");
    assert!(standin.requests().is_empty());
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_and_never_shown() {
    let key = "sk-standin-right-key-0001";
    let standin = StandIn::start(StandInConfig {
        api_key: Some(key.into()),
        ..StandInConfig::default()
    })
    .await;

    let mut right = config(&standin);
    right.api_key = Some(key.into());
    assert!(bounded(chat(right).complete(&request())).await.is_ok());
    let expected = format!("Bearer {key}");
    assert_eq!(
        standin.requests()[0].header("authorization"),
        Some(expected.as_str())
    );

    let wrong_key = "sk-standin-wrong-key-9999";
    let mut wrong = config(&standin);
    wrong.api_key = Some(wrong_key.into());
    assert!(!format!("{wrong:?}").contains(wrong_key));
    let error = bounded(chat(wrong).complete(&request())).await.unwrap_err();

    assert!(
        matches!(&error, ProviderError::Status { status: 401, code: Some(code), attempts: 1, .. }
            if code == "invalid_api_key"),
        "{error:?}"
    );
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(wrong_key), "{shown}");
        assert!(!shown.contains(key), "{shown}");
    }
    assert_eq!(standin.requests().len(), 2, "a 401 was retried");
}

#[tokio::test]
async fn embeddings_come_back_in_order_with_the_asked_dimensions() {
    let standin = StandIn::start(StandInConfig::default()).await;
    let mut config = config(&standin);
    config.embedding_dimensions = Some(16);
    let client = OpenAiClient::new(config).unwrap();

    let inputs = vec![
        "crabs walk sideways".to_string(),
        "ferris the crab".to_string(),
    ];
    let response = bounded(client.embeddings(&inputs)).await.unwrap();

    assert_eq!(response.embeddings.len(), 2);
    assert!(response.embeddings.iter().all(|v| v.len() == 16));
    assert_ne!(response.embeddings[0], response.embeddings[1]);
    assert_eq!(response.prompt_tokens, Some(6));

    let sent = &standin.requests()[0];
    assert_eq!(sent.path, "/v1/embeddings");
    let body = sent.body.as_ref().unwrap();
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["dimensions"], 16);
}

#[test]
fn retries_and_final_failures_are_counted() {
    let recorder = CountingRecorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // A current-thread runtime keeps the stand-in, the client and its
    // connections on this thread, where the local recorder is installed.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let standin = StandIn::start(StandInConfig::default()).await;
            standin.push_faults([Fault::ServerError(503), Fault::BadRequest]);
            let result = bounded(chat(config(&standin)).complete(&request())).await;
            assert!(result.is_err());
        })
    });

    let retries = "grounded_provider_retries_total provider=openai,reason=503";
    let failures = "grounded_provider_errors_total class=bad_gateway,provider=openai";
    assert_eq!(
        recorder.counts(),
        vec![(failures.into(), 1), (retries.into(), 1)]
    );
}

/// Counters by name and sorted labels.
#[derive(Default)]
struct CountingRecorder {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl CountingRecorder {
    fn counts(&self) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap();
        counts.iter().map(|(key, n)| (key.clone(), *n)).collect()
    }
}

struct CountingHandle {
    key: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl metrics::CounterFn for CountingHandle {
    fn increment(&self, value: u64) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value;
    }

    fn absolute(&self, value: u64) {
        let mut counts = self.counts.lock().unwrap();
        let count = counts.entry(self.key.clone()).or_default();
        *count = (*count).max(value);
    }
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        Counter::from_arc(Arc::new(CountingHandle {
            key: format!("{} {}", key.name(), labels.join(",")),
            counts: Arc::clone(&self.counts),
        }))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
