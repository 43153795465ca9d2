//! `grounded ask`: retrieve, compose the grounded prompt, answer with citations.

use grounded_core::Answer;
use grounded_embed::Embedder;
use grounded_query::{
    ExtractiveOptions, GroundedPrompt, PromptBudget, SearchRequest, answer_extractively,
    compose_prompt,
};

use crate::cli::{AskArgs, GlobalArgs};
use crate::context::{Context, collection_name};
use crate::output;

pub async fn run(global: &GlobalArgs, args: AskArgs) -> anyhow::Result<()> {
    let context = Context::open(global).await?;
    let collection = collection_name(&args.collection.collection)?;
    let request = args
        .retrieval
        .request(collection, &args.question, args.top_k);
    let budget = PromptBudget {
        max_prompt_tokens: args.prompt_tokens,
    };

    let (prompt, answer) = ask(&context, &request, budget).await?;
    match (args.json, args.show_prompt) {
        (true, true) => {
            let both = serde_json::json!({ "prompt": prompt.messages, "answer": answer });
            println!("{}", serde_json::to_string_pretty(&both)?);
        }
        (true, false) => println!("{}", serde_json::to_string_pretty(&answer)?),
        (false, show_prompt) => {
            if show_prompt {
                println!("{}", serde_json::to_string_pretty(&prompt.messages)?);
            }
            output::print_answer(&args.question, &answer);
        }
    }
    context.close().await;
    Ok(())
}

/// Retrieves sources for the request's query, composes the prompt and answers it.
pub async fn ask(
    context: &Context,
    request: &SearchRequest,
    budget: PromptBudget,
) -> anyhow::Result<(GroundedPrompt, Answer)> {
    let question = request.query.as_str();
    let hits = context.search(request).await?;

    let tokenizer = context.embedder.tokenizer();
    let count_tokens = |text: &str| {
        tokenizer
            .encode(text, false)
            .map(|encoding| encoding.len())
            .unwrap_or(text.len())
    };
    let prompt = compose_prompt(question, &hits, budget, &count_tokens);

    let answer = answer_extractively(
        question,
        &prompt,
        &context.embedder,
        ExtractiveOptions::default(),
    )
    .await?;
    Ok((prompt, answer))
}
