//! The `grounded` binary: parses the command line, opens the store, the index
//! and the embedder, and runs one command.

mod cli;
mod commands;
mod context;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// Lifecycle and summary lines of grounded; warnings of everything else. Qdrant
/// Edge logs start-up notices as warnings, so only its errors are shown.
const DEFAULT_LOG_FILTER: &str =
    "warn,qdrant_edge=error,grounded_cli=info,grounded_ingest=info,grounded_embed=info";

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();

    let result = match cli.command {
        Command::Ingest(args) => commands::ingest::run(&cli.global, args).await,
        Command::Search(args) => commands::search::run(&cli.global, args).await,
        Command::Ask(args) => commands::ask::run(&cli.global, args).await,
        Command::Demo(args) => commands::demo::run(&cli.global, args).await,
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("GROUNDED_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
