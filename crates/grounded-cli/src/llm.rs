//! Choosing what writes answers (`--llm`) and loading it, with the prompt
//! templates.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use grounded_core::default_cache_dir;
use grounded_embed::Embedder;
use grounded_provider::ChatModel;
use grounded_provider::local::{LocalChat, LocalModelOptions};
use grounded_provider::openai::{OpenAiChat, OpenAiConfig};
use grounded_query::{AnswerModel, Answerer, PromptTemplates};
use tracing::info;

use crate::cli::{AnswerArgs, GlobalArgs, Llm};

/// The answerer the flags describe: the model, the templates, and the
/// embedder for the extractive answerer.
pub fn answerer(
    global: &GlobalArgs,
    args: &AnswerArgs,
    embedder: Arc<dyn Embedder>,
) -> anyhow::Result<Answerer> {
    let templates = match &args.prompt_dir {
        Some(dir) => PromptTemplates::from_dir(dir)?,
        None => PromptTemplates::builtin(),
    };
    let model = answer_model(global, args)?;
    Ok(Answerer::new(model, embedder, Arc::new(templates)))
}

/// `--llm`, or the API when one is configured, or else the local model.
pub fn chosen(args: &AnswerArgs) -> Llm {
    args.llm
        .unwrap_or(if OpenAiConfig::api_configured_in_env() {
            Llm::Openai
        } else {
            Llm::Local
        })
}

fn answer_model(global: &GlobalArgs, args: &AnswerArgs) -> anyhow::Result<AnswerModel> {
    match chosen(args) {
        Llm::Extractive => Ok(AnswerModel::Extractive),
        Llm::Openai => {
            let config = OpenAiConfig::from_env()?;
            let chat = OpenAiChat::new(config)?;
            info!(
                model = chat.model_id(),
                "answers by an OpenAI-compatible API"
            );
            Ok(AnswerModel::Chat(Arc::new(chat)))
        }
        Llm::Local => {
            let cache_dir = global.cache_dir.clone().unwrap_or_else(default_cache_dir);
            let mut options = LocalModelOptions::new(cache_dir);
            options.model_file = args.local_model.clone();

            let started = Instant::now();
            let chat = LocalChat::load(&options).context(
                "cannot load the local answer model (use --llm extractive to answer without one)",
            )?;
            info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "local answer model loaded"
            );
            Ok(AnswerModel::Chat(Arc::new(chat)))
        }
    }
}
