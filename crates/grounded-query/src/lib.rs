//! Answering from the collection: retrieval of hits, composition of a grounded
//! chat prompt, and answers whose every sentence cites its source.
//!
//! [`retrieve`] finds the hits for a query, [`prompt`] turns hits into
//! numbered, quoted sources and OpenAI-style chat messages fitted to a token
//! budget, [`answer`] has a chat model (or [`extractive`], with no chat model,
//! the source sentences closest to the question) answer from them, and
//! [`citations`] keeps only the markers that name a given source. [`eval`] measures retrieval quality
//! (nDCG, recall) against judged queries.

pub mod answer;
pub mod attribution;
pub mod citations;
pub mod eval;
pub mod extractive;
pub mod prompt;
pub mod retrieve;

mod error;

pub use answer::{AnswerEvent, AnswerModel, AnswerOptions, AnswerOutcome, AnswerStream, Answerer};
pub use citations::{CitationFilter, filter_citations};
pub use error::QueryError;
pub use extractive::{ExtractiveOptions, answer_extractively};
pub use grounded_core::ChatMessage;
pub use prompt::{GroundedPrompt, PromptBudget, PromptTemplates, compose_prompt};
pub use retrieve::{Retriever, SearchRequest};
