//! `grounded ask`: retrieve, compose the grounded prompt, answer with citations.

use grounded_query::{
    AnswerOptions, AnswerOutcome, Answerer, GroundedPrompt, PromptBudget, SearchRequest,
};

use grounded_server::api::AnswerResponse;

use crate::cli::{AskArgs, GlobalArgs};
use crate::context::{Context, collection_name};
use crate::{llm, output};

pub async fn run(global: &GlobalArgs, args: AskArgs) -> anyhow::Result<()> {
    let context = Context::open(global).await?;
    let collection = collection_name(&args.collection.collection)?;
    let request = args
        .retrieval
        .request(collection, &args.question, args.top_k);
    let answerer = llm::answerer(global, &args.answer, context.embedder.clone())?;
    let options = AnswerOptions {
        budget: PromptBudget {
            max_prompt_tokens: args.prompt_tokens,
        },
        max_tokens: args.answer.max_tokens,
        temperature: args.answer.temperature,
        attribution: args.answer.attribution.0,
    };

    let (prompt, outcome) = ask(&context, &answerer, &request, options).await?;
    // The same JSON as the HTTP API's answer.
    let response = AnswerResponse::new(&outcome, prompt.citations.len());
    match (args.json, args.show_prompt) {
        (true, true) => {
            let both = serde_json::json!({ "prompt": prompt.messages, "answer": response });
            println!("{}", serde_json::to_string_pretty(&both)?);
        }
        (true, false) => println!("{}", serde_json::to_string_pretty(&response)?),
        (false, show_prompt) => {
            if show_prompt {
                println!("{}", serde_json::to_string_pretty(&prompt.messages)?);
            }
            output::print_answer(&args.question, &outcome);
        }
    }
    context.close().await;
    Ok(())
}

/// Retrieves sources for the request's query, composes the prompt and answers it.
pub async fn ask(
    context: &Context,
    answerer: &Answerer,
    request: &SearchRequest,
    options: AnswerOptions,
) -> anyhow::Result<(GroundedPrompt, AnswerOutcome)> {
    let question = request.query.as_str();
    let hits = context.search(request).await?;
    let prompt = answerer.prompt(question, &hits, options.budget)?;
    let outcome = answerer.answer(question, &prompt, options).await?;
    Ok((prompt, outcome))
}
