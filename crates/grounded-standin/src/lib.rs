//! A stand-in for the OpenAI API, for tests: a real HTTP server on
//! `127.0.0.1` that speaks the OpenAI wire format (chat completions, whole
//! and streamed; embeddings; the model list; error objects) and misbehaves
//! when a test tells it to.
//!
//! It is not a model: the chat reply is computed from the prompt (see
//! [`Reply`]), embeddings are hashed from the text, and token counts are
//! whitespace-separated words. It exists because a hosted API cannot be
//! reached from tests; everything that can run for real in tests does.
//!
//! ```no_run
//! # async fn demo() {
//! use grounded_standin::{Fault, StandIn, StandInConfig};
//!
//! let standin = StandIn::start(StandInConfig::default()).await;
//! standin.push_fault(Fault::ServerError(503));
//! let base_url = standin.base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... call the API at base_url ...
//! assert_eq!(standin.requests().len(), 2);
//! # }
//! ```

mod faults;
mod reply;
mod server;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::task::JoinHandle;

pub use faults::Fault;
pub use reply::{Reply, word_count};
use server::{Script, Shared};

/// How the stand-in answers.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// The chat model listed by `GET /v1/models`. Answers echo the model a
    /// request names, whatever it is.
    pub chat_model: String,
    /// The embedding model listed by `GET /v1/models`.
    pub embedding_model: String,
    /// When set, requests must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// The length of embeddings when a request names no `dimensions`.
    pub embedding_dimension: usize,
    /// What the chat model answers.
    pub reply: Reply,
    /// Whether answers carry `usage`; off, to test counting on the client.
    pub report_usage: bool,
    /// How many words each streamed content delta holds.
    pub words_per_delta: usize,
}

impl Default for StandInConfig {
    fn default() -> Self {
        Self {
            chat_model: "gpt-4o-mini".into(),
            embedding_model: "text-embedding-3-small".into(),
            api_key: None,
            embedding_dimension: 64,
            reply: Reply::CiteSources,
            report_usage: true,
            words_per_delta: 3,
        }
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, `/v1/chat/completions` say.
    pub path: String,
    /// Every header, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body when it was JSON.
    pub body: Option<serde_json::Value>,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A running stand-in; it stops when dropped.
#[derive(Debug)]
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Starts a stand-in on a free port of `127.0.0.1`.
    ///
    /// # Panics
    /// When no port can be bound; use [`StandIn::try_start`] to handle that.
    pub async fn start(config: StandInConfig) -> Self {
        match Self::try_start(config).await {
            Ok(standin) => standin,
            Err(error) => panic!("cannot start the OpenAI stand-in: {error}"),
        }
    }

    /// Starts a stand-in on a free port of `127.0.0.1`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn try_start(config: StandInConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));

        let router = server::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the OpenAI stand-in stopped: {error}");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The API root to give a client: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a fault for a coming request; each request takes the oldest.
    pub fn push_fault(&self, fault: Fault) {
        self.script().faults.push_back(fault);
    }

    /// Queues several faults, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.script().faults.extend(faults);
    }

    /// While on, every request is answered 429 (without `Retry-After`),
    /// before any queued fault.
    pub fn set_storm(&self, on: bool) {
        self.script().storm = on;
    }

    /// Changes what the chat model answers.
    pub fn set_reply(&self, reply: Reply) {
        self.script().reply = reply;
    }

    /// Turns `usage` in answers on or off.
    pub fn set_report_usage(&self, report: bool) {
        self.script().report_usage = report;
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.script().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.script().requests.clear();
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.shared.script)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Locks `mutex`, ignoring a panic of an earlier holder: the script stays
/// usable for the rest of a test that is failing anyway.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
