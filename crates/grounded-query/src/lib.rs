//! Answering from the collection: retrieval of hits, composition of a grounded
//! chat prompt, and answers whose every sentence cites its source.
//!
//! [`retrieve`] finds the hits for a query, [`prompt`] turns hits into
//! numbered sources and OpenAI-style chat messages fitted to a token budget,
//! and [`extractive`] answers with no chat model by picking the source
//! sentences closest to the question. [`eval`] measures retrieval quality
//! (nDCG, recall) against judged queries.

pub mod eval;
pub mod extractive;
pub mod prompt;
pub mod retrieve;

mod error;

pub use error::QueryError;
pub use extractive::{ExtractiveOptions, answer_extractively};
pub use prompt::{ChatMessage, GroundedPrompt, PromptBudget, compose_prompt};
pub use retrieve::{Retriever, SearchRequest};
