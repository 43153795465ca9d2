//! `POST /v1/answer`: an answer from the collection whose claims cite their
//! sources, whole or streamed as server-sent events.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use grounded_auth::Principal;
use grounded_query::{AnswerEvent, AnswerOptions, AnswerOutcome, GroundedPrompt, PromptBudget};

use crate::access::{Spend, log_prompt, record_spend};
use crate::api::{AnswerBody, AnswerResponse, DeltaEvent, MAX_ANSWER_TOKENS, Retrieval};
use crate::error::ErrorBody;
use crate::extract::ApiJson;
use crate::routes::search::{query_spend, retrieve};
use crate::{ApiError, AppState, metrics};

/// Answers a question from a collection.
///
/// With `"stream": true` the response is `text/event-stream`: `delta`
/// events (`{"text": …}`) whose texts concatenate to the answer, then one
/// `done` event holding the same object a plain response has; a failure
/// after the stream started is an `error` event with the error body.
#[utoipa::path(
    post,
    path = "/v1/answer",
    tag = "answer",
    request_body = AnswerBody,
    responses(
        (status = 200, description = "The answer with its citations, or with `stream` a text/event-stream of `delta` events and one `done` event", body = AnswerResponse),
        (status = 400, description = "Malformed JSON or an unknown field", body = ErrorBody),
        (status = 401, description = "No credential, or a bad one", body = ErrorBody),
        (status = 403, description = "The credential lacks the answer scope", body = ErrorBody),
        (status = 404, description = "No such collection, or one the credential may not see", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A value out of range", body = ErrorBody),
        (status = 429, description = "The credential's rate or daily quota is spent, or the chat provider kept rate-limiting", body = ErrorBody),
        (status = 502, description = "The chat provider failed", body = ErrorBody),
        (status = 504, description = "The chat provider or the request took too long", body = ErrorBody),
    )
)]
pub async fn answer(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Result<Response, ApiError> {
    let collection = state.collection(&principal, body.collection.as_deref())?;
    let options = answer_options(&state, &body)?;
    let retrieval = Retrieval {
        query: &body.question,
        top_k: body.top_k,
        mode: body.mode,
        filters: &body.filters,
        min_score: body.min_score,
        rrf_k: body.rrf_k,
    };
    let request = retrieval.request(&collection)?;

    let hits = retrieve(&state, &request).await?;
    let answerer = &state.engine().answerer;
    let prompt = answerer.prompt(&body.question, &hits, options.budget)?;

    let spent = Spent {
        state: state.clone(),
        principal,
        question: body.question.clone(),
        query: query_spend(&state, body.mode, &body.question),
    };
    if body.stream {
        let events = answerer
            .answer_stream(&body.question, &prompt, options)
            .await?;
        let sources = prompt.citations.len();
        return Ok(Sse::new(sse_events(events, sources, spent))
            .keep_alive(KeepAlive::default())
            .into_response());
    }

    let outcome = answerer.answer(&body.question, &prompt, options).await?;
    spent.record(&outcome).await;
    Ok(Json(response(&outcome, &prompt)).into_response())
}

/// What an answer is charged to, recorded once it is done.
struct Spent {
    state: AppState,
    principal: Principal,
    question: String,
    query: Option<Spend>,
}

impl Spent {
    /// The chat model's tokens, then the query's embedding, to the ledger;
    /// the question and answer to the prompt log when it is kept.
    async fn record(&self, outcome: &AnswerOutcome) {
        record_usage(outcome);
        let chat = Spend {
            model: outcome.answer.produced_by.clone(),
            prompt_tokens: outcome.usage.map_or(0, |u| u64::from(u.prompt_tokens)),
            completion_tokens: outcome.usage.map_or(0, |u| u64::from(u.completion_tokens)),
            ..Spend::default()
        };
        let spends: Vec<Spend> = std::iter::once(chat).chain(self.query.clone()).collect();
        record_spend(&self.state, &self.principal, "/v1/answer", &spends).await;
        log_prompt(
            &self.state,
            &self.principal,
            &self.question,
            &outcome.answer.text,
        )
        .await;
    }
}

/// The request's answer settings over the server's, checked.
fn answer_options(state: &AppState, body: &AnswerBody) -> Result<AnswerOptions, ApiError> {
    let defaults = state.config().answer;
    let max_tokens = body.max_tokens.unwrap_or(defaults.max_tokens);
    if !(1..=MAX_ANSWER_TOKENS).contains(&max_tokens) {
        return Err(ApiError::unprocessable(format!(
            "max_tokens must be from 1 to {MAX_ANSWER_TOKENS}, not {max_tokens}"
        )));
    }
    let temperature = body.temperature.unwrap_or(defaults.temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::unprocessable(format!(
            "temperature must be from 0 to 2, not {temperature}"
        )));
    }
    let prompt_tokens = body
        .prompt_tokens
        .unwrap_or(defaults.budget.max_prompt_tokens);
    if !(200..=100_000).contains(&prompt_tokens) {
        return Err(ApiError::unprocessable(format!(
            "prompt_tokens must be from 200 to 100000, not {prompt_tokens}"
        )));
    }
    Ok(AnswerOptions {
        budget: PromptBudget {
            max_prompt_tokens: prompt_tokens,
        },
        max_tokens,
        temperature,
        attribution: defaults.attribution,
    })
}

fn response(outcome: &AnswerOutcome, prompt: &GroundedPrompt) -> AnswerResponse {
    AnswerResponse::new(outcome, prompt.citations.len())
}

fn record_usage(outcome: &AnswerOutcome) {
    if let Some(usage) = outcome.usage {
        metrics::record_tokens(
            &outcome.answer.produced_by,
            usage.prompt_tokens,
            usage.completion_tokens,
        );
    }
}

/// The answer's events as server-sent events; the stream ends after `done`
/// or after the first `error`.
fn sse_events(
    events: grounded_query::AnswerStream,
    sources: usize,
    spent: Spent,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let spent = std::sync::Arc::new(spent);
    events.then(move |event| {
        let spent = spent.clone();
        async move { sse_event(event, sources, &spent).await }
    })
}

async fn sse_event(
    event: Result<AnswerEvent, grounded_query::QueryError>,
    sources: usize,
    spent: &Spent,
) -> Result<Event, Infallible> {
    let event = match event {
        Ok(AnswerEvent::Delta(text)) => Event::default()
            .event("delta")
            .json_data(DeltaEvent { text }),
        Ok(AnswerEvent::Done(outcome)) => {
            spent.record(&outcome).await;
            Event::default()
                .event("done")
                .json_data(AnswerResponse::new(&outcome, sources))
        }
        Err(error) => {
            let error = ApiError::from(error);
            tracing::warn!(code = error.code, message = %error.message, "answer stream failed");
            Event::default().event("error").json_data(error.body())
        }
    };
    Ok(event.unwrap_or_else(|_| Event::default().event("error").data("{}")))
}
