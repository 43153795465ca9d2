//! `grounded demo`: the whole pipeline on a real book in one command.
//!
//! It ingests the HTML Rust book that rustup installs with the `rust-docs`
//! component, then runs two searches and one question. The book directory
//! also holds old editions whose pages only say that they moved; those are
//! excluded so that they do not crowd out the real chapters. The whole-book
//! `print.html` is skipped by the extractor because it asks not to be
//! indexed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use grounded_query::PromptBudget;

use crate::cli::{ChunkingArgs, CollectionArg, DemoArgs, GlobalArgs, IngestArgs};
use crate::commands::{ask, ingest};
use crate::context::Context;
use crate::output;

const COLLECTION: &str = "rust-book";

/// Parts of the installed book that are not its current text.
const EXCLUDES: &[&str] = &[
    "2018-edition",
    "first-edition",
    "second-edition",
    "theme",
    "fonts",
    "css",
    "img",
    "*.js",
];

const SEARCHES: &[&str] = &["what is ownership", "how do I share data between threads"];

const QUESTION: &str = "How do I share data between threads?";

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    let book = match args.book {
        Some(book) => book,
        None => installed_book()?,
    };
    println!("grounded demo: ingesting {}", book.display());
    let context = Context::open(global).await?;

    let ingest_args = demo_ingest_args(&book);
    let options = ingest::options(&ingest_args, &context.embedder)?;
    let report = ingest::ingest(&context, &ingest_args.paths, &options).await?;
    output::print_ingest_report(&report);

    for query in SEARCHES {
        println!();
        let request = grounded_query::SearchRequest {
            collection: COLLECTION.into(),
            query: (*query).into(),
            limit: 5,
        };
        let retriever =
            grounded_query::Retriever::new(&context.embedder, &context.index, &context.store);
        output::print_hits(query, &retriever.search(&request).await?);
    }

    println!();
    let (_, answer) = ask::ask(&context, COLLECTION, QUESTION, 5, PromptBudget::default()).await?;
    output::print_answer(QUESTION, &answer);
    context.close().await;
    Ok(())
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
        excludes: EXCLUDES.iter().map(|s| (*s).to_string()).collect(),
        json: false,
    }
}

/// The Rust book of the active toolchain, or an error that says how to get it.
fn installed_book() -> anyhow::Result<PathBuf> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("failed to run `rustc --print sysroot` to find the Rust book")?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let book = Path::new(&sysroot).join("share/doc/rust/html/book");

    if !book.join("index.html").is_file() {
        anyhow::bail!(
            "the Rust book is not installed at {}; install it with \
             `rustup component add rust-docs`, or pass another book with --book DIR",
            book.display()
        );
    }
    Ok(book)
}
