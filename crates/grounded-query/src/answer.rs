//! Answers from hits: compose the grounded prompt, have the chat model (or
//! the extractive answerer) write the answer, and keep only the citations
//! that name a source it was given.
//!
//! Whatever produced the text, it passes through the same
//! [`CitationFilter`]: a marker naming no source is removed, the answer's
//! citations list each cited source with its lines and quoted snippet, and
//! an answer that cites nothing is marked `grounded: false`. A streamed
//! answer goes through the filter piece by piece, so its text and citations
//! equal those of the same answer produced whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use grounded_core::{Answer, Citation, Hit};
use grounded_embed::Embedder;
use grounded_provider::{ChatEvent, ChatModel, ChatRequest, Usage};
use serde::Serialize;

use crate::QueryError;
use crate::attribution::{Attributor, SentenceAttribution};
use crate::citations::{CitationFilter, filter_citations};
use crate::extractive::{ExtractiveOptions, answer_extractively};
use crate::prompt::{GroundedPrompt, PromptBudget, PromptTemplates, compose_prompt};

/// What writes the answer's text.
#[derive(Clone)]
pub enum AnswerModel {
    /// Sentences picked from the sources; needs no chat model.
    Extractive,
    /// A chat model, remote or local.
    Chat(Arc<dyn ChatModel>),
}

impl AnswerModel {
    /// The id answers report in `produced_by`.
    pub fn id(&self) -> &str {
        match self {
            Self::Extractive => crate::extractive::EXTRACTIVE,
            Self::Chat(model) => model.model_id(),
        }
    }
}

/// How an answer is produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerOptions {
    pub budget: PromptBudget,
    /// The most tokens the model may write.
    pub max_tokens: u32,
    pub temperature: f32,
    /// The similarity from which an uncited sentence of a chat model's
    /// answer is attributed to the source it restates; `None`, the default,
    /// keeps only the model's own citations (see [`crate::attribution`]).
    pub attribution: Option<f32>,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self {
            budget: PromptBudget::default(),
            max_tokens: 512,
            temperature: 0.0,
            attribution: None,
        }
    }
}

/// An answer with what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerOutcome {
    pub answer: Answer,
    /// Tokens the chat model reported (or that were counted for it); none
    /// for an extractive answer.
    pub usage: Option<Usage>,
    /// How many markers of the model's text named no source and were removed.
    pub removed_markers: usize,
    /// How many markers were added by attribution, to sentences that cited
    /// nothing but restate a source.
    pub attributed_markers: usize,
    /// Why the model stopped: `stop`, or `length` when it reached
    /// `max_tokens` and the answer is cut off; none for an extractive answer.
    pub finish_reason: Option<String>,
}

/// One event of a streamed answer: text deltas, then the whole outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    Delta(String),
    Done(Box<AnswerOutcome>),
}

pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<AnswerEvent, QueryError>> + Send>>;

/// Writes answers from hits.
pub struct Answerer {
    model: AnswerModel,
    embedder: Arc<dyn Embedder>,
    templates: Arc<PromptTemplates>,
}

impl Answerer {
    /// `embedder` counts prompt tokens for the extractive answerer and
    /// ranks its sentences.
    pub fn new(
        model: AnswerModel,
        embedder: Arc<dyn Embedder>,
        templates: Arc<PromptTemplates>,
    ) -> Self {
        Self {
            model,
            embedder,
            templates,
        }
    }

    pub fn model(&self) -> &AnswerModel {
        &self.model
    }

    /// The prompt for `question` from `hits`, sized with the model's tokenizer.
    ///
    /// # Errors
    /// When a template fails to render.
    pub fn prompt(
        &self,
        question: &str,
        hits: &[Hit],
        budget: PromptBudget,
    ) -> Result<GroundedPrompt, QueryError> {
        let count_tokens = |text: &str| self.count_tokens(text);
        compose_prompt(question, hits, budget, &self.templates, &count_tokens)
    }

    fn count_tokens(&self, text: &str) -> usize {
        match &self.model {
            AnswerModel::Chat(model) => model.count_tokens(text),
            AnswerModel::Extractive => self.embedder.token_counter().count(text),
        }
    }

    /// Answers `question` from `prompt` whole.
    ///
    /// # Errors
    /// When the chat model fails (after its retries) or the embedder does.
    pub async fn answer(
        &self,
        question: &str,
        prompt: &GroundedPrompt,
        options: AnswerOptions,
    ) -> Result<AnswerOutcome, QueryError> {
        let model = match &self.model {
            AnswerModel::Extractive => return self.extractive(question, prompt).await,
            AnswerModel::Chat(model) => model,
        };

        let completion = model.complete(&chat_request(prompt, options)).await?;
        let mut filter = CitationFilter::new(prompt.citations.len());
        let mut text = filter.push(&completion.text);
        text.push_str(&filter.finish());

        let mut attributed = 0;
        if let Some(attributor) = self.attributor(prompt, options).await? {
            let mut sentences = SentenceAttribution::new(prompt.citations.len());
            let mut whole = sentences.push(&text, &attributor).await?;
            whole.push_str(&sentences.finish(&attributor).await?);
            text = whole;
            attributed = sentences.added();
        }
        let mut outcome = outcome(
            text,
            model.model_id(),
            (filter.removed(), attributed),
            &prompt.citations,
            Some(completion.usage),
        );
        outcome.finish_reason = completion.finish_reason;
        Ok(outcome)
    }

    /// The attributor for `prompt`'s sources, unless attribution is off.
    async fn attributor(
        &self,
        prompt: &GroundedPrompt,
        options: AnswerOptions,
    ) -> Result<Option<Attributor>, QueryError> {
        let Some(min_similarity) = options.attribution else {
            return Ok(None);
        };
        let attributor =
            Attributor::new(self.embedder.clone(), &prompt.source_texts, min_similarity).await?;
        Ok(Some(attributor))
    }

    /// Answers `question` from `prompt` as a stream of text deltas ending in
    /// the whole outcome.
    ///
    /// # Errors
    /// When the stream cannot start; later failures are error items.
    pub async fn answer_stream(
        &self,
        question: &str,
        prompt: &GroundedPrompt,
        options: AnswerOptions,
    ) -> Result<AnswerStream, QueryError> {
        let model = match &self.model {
            AnswerModel::Extractive => {
                let outcome = self.extractive(question, prompt).await?;
                return Ok(whole_as_stream(outcome));
            }
            AnswerModel::Chat(model) => model.clone(),
        };

        let attributor = self.attributor(prompt, options).await?;
        let chat = model.stream(&chat_request(prompt, options)).await?;
        let citations = prompt.citations.clone();
        Ok(filtered_stream(chat, model, citations, attributor))
    }

    async fn extractive(
        &self,
        question: &str,
        prompt: &GroundedPrompt,
    ) -> Result<AnswerOutcome, QueryError> {
        let answer = answer_extractively(
            question,
            prompt,
            self.embedder.as_ref(),
            ExtractiveOptions::default(),
        )
        .await?;
        Ok(AnswerOutcome {
            answer: with_snippets(answer, &prompt.citations),
            usage: None,
            removed_markers: 0,
            attributed_markers: 0,
            finish_reason: None,
        })
    }
}

fn chat_request(prompt: &GroundedPrompt, options: AnswerOptions) -> ChatRequest {
    ChatRequest {
        messages: prompt.messages.clone(),
        max_tokens: options.max_tokens,
        temperature: options.temperature,
        cite_sources: Some(
            prompt
                .citations
                .iter()
                .map(|source| source.snippet.clone())
                .collect(),
        ),
    }
}

/// The extractive answer's citations with the snippets the prompt quoted.
fn with_snippets(mut answer: Answer, sources: &[Citation]) -> Answer {
    for citation in &mut answer.citations {
        if let Some(source) = sources.get(citation.number.wrapping_sub(1)) {
            citation.snippet = source.snippet.clone();
        }
    }
    answer
}

/// The answer for the final `text`: the sources it cites, in order of first
/// citation, and whether it cites any.
fn outcome(
    text: String,
    produced_by: &str,
    (removed_markers, attributed_markers): (usize, usize),
    sources: &[Citation],
    usage: Option<Usage>,
) -> AnswerOutcome {
    let text = text.trim().to_string();
    let (_, cited, _) = filter_citations(&text, sources.len());
    let citations: Vec<Citation> = cited
        .iter()
        .filter_map(|number| sources.get(number - 1).cloned())
        .collect();
    let answer = Answer {
        text,
        produced_by: produced_by.to_string(),
        grounded: !citations.is_empty(),
        citations,
    };
    AnswerOutcome {
        answer,
        usage,
        removed_markers,
        attributed_markers,
        finish_reason: None,
    }
}

fn whole_as_stream(outcome: AnswerOutcome) -> AnswerStream {
    let events = vec![
        Ok(AnswerEvent::Delta(outcome.answer.text.clone())),
        Ok(AnswerEvent::Done(Box::new(outcome))),
    ];
    Box::pin(futures::stream::iter(events))
}

/// The model's stream through the citation filter. Leading and trailing
/// whitespace is held back, as the whole answer's text is trimmed, so that
/// the deltas concatenate to exactly the final text.
fn filtered_stream(
    chat: grounded_provider::ChatStream,
    model: Arc<dyn ChatModel>,
    sources: Vec<Citation>,
    attributor: Option<Attributor>,
) -> AnswerStream {
    let state = FilteredStream {
        chat,
        filter: CitationFilter::new(sources.len()),
        sentences: SentenceAttribution::new(sources.len()),
        attributor,
        emitted: String::new(),
        queued: VecDeque::new(),
        finished: false,
        model,
        sources,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        let event = state.next_event().await?;
        Some((event, state))
    }))
}

/// The state of [`filtered_stream`].
struct FilteredStream {
    chat: grounded_provider::ChatStream,
    filter: CitationFilter,
    sentences: SentenceAttribution,
    attributor: Option<Attributor>,
    /// The text sent so far.
    emitted: String,
    /// Events decided but not yet sent.
    queued: VecDeque<Result<AnswerEvent, QueryError>>,
    finished: bool,
    model: Arc<dyn ChatModel>,
    sources: Vec<Citation>,
}

impl FilteredStream {
    async fn next_event(&mut self) -> Option<Result<AnswerEvent, QueryError>> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            self.pull().await;
        }
    }

    /// Takes the model's next event and queues what follows from it.
    async fn pull(&mut self) {
        match self.chat.next().await {
            Some(Ok(ChatEvent::Delta(piece))) => {
                let settled = self.filter.push(&piece);
                match self.attribute(&settled, false).await {
                    Ok(settled) => self.queue_delta(&settled),
                    Err(error) => self.fail(error),
                }
            }
            Some(Ok(ChatEvent::Done {
                usage,
                finish_reason,
            })) => self.finish(usage, finish_reason).await,
            Some(Err(error)) => self.fail(error.into()),
            None => self.fail(
                grounded_provider::ProviderError::Protocol {
                    provider: self.model.model_id().to_string(),
                    message: "the stream ended before the answer was complete".into(),
                }
                .into(),
            ),
        }
    }

    /// `settled` text with its settled sentences attributed; at the end,
    /// every sentence.
    async fn attribute(&mut self, settled: &str, end: bool) -> Result<String, QueryError> {
        let Some(attributor) = &self.attributor else {
            return Ok(settled.to_string());
        };
        let mut out = self.sentences.push(settled, attributor).await?;
        if end {
            out.push_str(&self.sentences.finish(attributor).await?);
        }
        Ok(out)
    }

    fn queue_delta(&mut self, settled: &str) {
        if let Some(delta) = next_delta(&mut self.emitted, settled) {
            self.queued.push_back(Ok(AnswerEvent::Delta(delta)));
        }
    }

    async fn finish(&mut self, usage: Usage, finish_reason: Option<String>) {
        let rest = self.filter.finish();
        let rest = match self.attribute(&rest, true).await {
            Ok(rest) => rest,
            Err(error) => return self.fail(error),
        };
        self.queue_delta(rest.trim_end());
        let mut outcome = outcome(
            self.emitted.clone(),
            self.model.model_id(),
            (self.filter.removed(), self.sentences.added()),
            &self.sources,
            Some(usage),
        );
        outcome.finish_reason = finish_reason;
        self.queued
            .push_back(Ok(AnswerEvent::Done(Box::new(outcome))));
        self.finished = true;
    }

    fn fail(&mut self, error: QueryError) {
        self.queued.push_back(Err(error));
        self.finished = true;
    }
}

/// Appends `settled` to what was emitted and returns the part to send now:
/// nothing while the answer is still only whitespace.
fn next_delta(emitted: &mut String, settled: &str) -> Option<String> {
    if settled.is_empty() {
        return None;
    }
    let start = emitted.is_empty();
    let piece = if start { settled.trim_start() } else { settled };
    if piece.is_empty() {
        return None;
    }
    emitted.push_str(piece);
    Some(piece.to_string())
}
