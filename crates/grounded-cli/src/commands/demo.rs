//! `grounded demo`: the whole pipeline on a real book in one command.
//!
//! It ingests the HTML Rust book that rustup installs with the `rust-docs`
//! component (see `grounded_cli::book` for what of it is left out), then runs
//! two searches and one question.

use std::path::Path;

use grounded_cli::book;
use grounded_query::AnswerOptions;

use crate::cli::{ChunkingArgs, CollectionArg, DemoArgs, GlobalArgs, IngestArgs, Llm};
use crate::commands::{ask, ingest};
use crate::context::Context;
use crate::{llm, output};

const COLLECTION: &str = "rust-book";

const SEARCHES: &[&str] = &["what is ownership", "how do I share data between threads"];

const QUESTION: &str = "How do I share data between threads?";

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    let book = match args.book {
        Some(book) => book,
        None => book::installed_book()?,
    };
    println!("grounded demo: ingesting {}", book.display());
    println!(
        "(the first run embeds about 1,800 chunks: minutes on a laptop; later runs reuse the cache)"
    );
    let context = Context::open(global).await?;

    let ingest_args = demo_ingest_args(&book);
    let options = ingest::options(&ingest_args, context.embedder.as_ref())?;
    let report = match ingest::ingest(&context, &ingest_args.paths, &options).await {
        Err(error) if is_schema_mismatch(&error) => {
            // The demo owns its collection: one of an older layout is rebuilt,
            // from the embedding cache.
            println!("rebuilding collection {COLLECTION:?}, made by an older grounded: {error}");
            context.store.delete_collection(COLLECTION).await?;
            context.index.delete_collection(COLLECTION).await?;
            ingest::ingest(&context, &ingest_args.paths, &options).await?
        }
        result => result?,
    };
    output::print_ingest_report(&report);

    for query in SEARCHES {
        println!();
        let request = grounded_query::SearchRequest::new(COLLECTION, *query, 5);
        output::print_hits(query, &context.search(&request).await?);
    }

    println!();
    let request = grounded_query::SearchRequest::new(COLLECTION, QUESTION, 5);
    // The extractive answer first: sentences of the book, always cited. Then
    // the chosen model's, when it is another, checked the same way.
    let mut answer_args = args.answer.clone();
    let chosen = llm::chosen(&answer_args);
    answer_args.llm = Some(Llm::Extractive);
    let extractive = llm::answerer(global, &answer_args, context.embedder.clone())?;
    let (_, outcome) = ask::ask(&context, &extractive, &request, AnswerOptions::default()).await?;
    output::print_answer(QUESTION, &outcome);
    if chosen == Llm::Extractive {
        context.close().await;
        return Ok(());
    }

    println!();
    answer_args.llm = Some(chosen);
    let answerer = llm::answerer(global, &answer_args, context.embedder.clone())?;
    let options = AnswerOptions {
        max_tokens: args.answer.max_tokens,
        temperature: args.answer.temperature,
        attribution: args.answer.attribution.0,
        ..AnswerOptions::default()
    };
    let (_, outcome) = ask::ask(&context, &answerer, &request, options).await?;
    output::print_answer(QUESTION, &outcome);
    context.close().await;
    Ok(())
}

fn is_schema_mismatch(error: &anyhow::Error) -> bool {
    let index_error = error.chain().find_map(|cause| {
        let ingest = cause.downcast_ref::<grounded_ingest::IngestError>();
        let index = ingest.and_then(|ingest| match ingest {
            grounded_ingest::IngestError::Index(index) => Some(index),
            _ => None,
        });
        index.or_else(|| cause.downcast_ref::<grounded_index::IndexError>())
    });
    matches!(
        index_error,
        Some(grounded_index::IndexError::SchemaMismatch { .. })
    )
}

fn demo_ingest_args(book: &Path) -> IngestArgs {
    IngestArgs {
        paths: vec![book.to_path_buf()],
        collection: CollectionArg {
            collection: COLLECTION.into(),
        },
        chunking: ChunkingArgs {
            chunk_tokens: 254,
            chunk_overlap: 32,
        },
        batch_chunks: 128,
        prune: true,
        excludes: book::excludes(),
        tags: Vec::new(),
        json: false,
    }
}
