//! The `grounded` binary: parses the command line, opens the store, the index
//! and the embedder, and runs one command.

mod cli;
mod commands;
mod context;
mod llm;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// Warnings and errors only: commands print their own results and summary
/// (`GROUNDED_LOG=info` adds grounded's structured lifecycle and summary
/// lines). Qdrant Edge logs start-up notices as warnings, so only its errors
/// are shown unless the filter names it.
const DEFAULT_LOG_FILTER: &str = "warn";
const QDRANT_LOG_FILTER: &str = "qdrant_edge=error";

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();

    let result = match cli.command {
        Command::Ingest(args) => commands::ingest::run(&cli.global, args).await,
        Command::Search(args) => commands::search::run(&cli.global, args).await,
        Command::Ask(args) => commands::ask::run(&cli.global, args).await,
        Command::Serve(args) => commands::serve::run(&cli.global, args).await,
        Command::Demo(args) => commands::demo::run(&cli.global, args).await,
        Command::Eval(args) => commands::eval::run(&cli.global, args).await,
        Command::Migrate => commands::migrate::run(&cli.global).await,
        Command::Cache(command) => commands::cache::run(&cli.global, command).await,
        Command::Collections(command) => commands::collections::run(&cli.global, command).await,
        Command::Keys(command) => commands::keys::run(&cli.global, command).await,
        Command::Usage(args) => commands::usage::run(&cli.global, args).await,
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (library errors often quote their source).
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_tracing() {
    let mut directives = std::env::var("GROUNDED_LOG").unwrap_or(DEFAULT_LOG_FILTER.into());
    if !directives.contains("qdrant_edge") {
        directives = format!("{directives},{QDRANT_LOG_FILTER}");
    }
    let filter =
        EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
