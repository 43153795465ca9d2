//! The command line: every flag, with the environment variable that sets it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "grounded",
    version,
    about = "Semantic search and cited answers over your documents"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where the metadata database and the vector index live.
    #[arg(
        long,
        global = true,
        env = "GROUNDED_DATA_DIR",
        default_value = ".grounded"
    )]
    pub data_dir: PathBuf,

    /// A directory holding the embedding model's files (config.json,
    /// tokenizer.json, model.safetensors); found or fetched when not given.
    #[arg(long, global = true, env = "GROUNDED_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    /// Where fetched model files are kept [default: the user cache directory].
    #[arg(long, global = true, env = "GROUNDED_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The metadata store: postgres://USER:PASSWORD@HOST:PORT/DATABASE for a
    /// shared Postgres, sqlite://PATH for a SQLite file [default: grounded.db
    /// in the data directory].
    #[arg(
        long,
        global = true,
        env = "GROUNDED_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load files into a collection: walk, decode, chunk, embed, index.
    Ingest(IngestArgs),
    /// Find the chunks that best match a query.
    Search(SearchArgs),
    /// Answer a question from the collection, citing the sources.
    Ask(AskArgs),
    /// Ingest the Rust book that ships with rustup, then search and ask it.
    Demo(DemoArgs),
    /// Bring the metadata store's schema up to date (every command also does
    /// this when it opens the store) and print its version.
    Migrate,
    /// Move cached embeddings between stores, as a file.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// List or delete collections.
    #[command(subcommand)]
    Collections(CollectionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// Every collection of the store or the index, with what each holds.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a collection: its documents, chunks and points (cached
    /// embeddings stay).
    Delete {
        /// The collection to delete.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Write every cached embedding of the store to FILE (JSON Lines).
    Export {
        /// The file to write; `-` for standard output.
        file: PathBuf,
    },
    /// Add the embeddings of FILE, written by `cache export`, to the store;
    /// embeddings it already holds are kept.
    Import {
        /// The file to read; `-` for standard input.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CollectionArg {
    /// The collection to use.
    #[arg(long, short = 'c', env = "GROUNDED_COLLECTION", default_value = grounded_core::DEFAULT_COLLECTION)]
    pub collection: String,
}

#[derive(Debug, Args)]
pub struct ChunkingArgs {
    /// The most tokens of one chunk (at most the model's limit, 254).
    #[arg(long, env = "GROUNDED_CHUNK_TOKENS", default_value_t = 254)]
    pub chunk_tokens: usize,

    /// Tokens shared by consecutive chunks.
    #[arg(long, env = "GROUNDED_CHUNK_OVERLAP", default_value_t = 32)]
    pub chunk_overlap: usize,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files or directories to ingest.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    #[command(flatten)]
    pub collection: CollectionArg,

    #[command(flatten)]
    pub chunking: ChunkingArgs,

    /// Chunks embedded and written together; smaller batches make progress
    /// visible sooner, larger ones embed a little faster.
    #[arg(long, env = "GROUNDED_BATCH_CHUNKS", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub batch_chunks: u64,

    /// Remove documents under PATHS whose files are gone.
    #[arg(long)]
    pub prune: bool,

    /// Skip paths matching this glob (relative to each PATH); repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to search for.
    pub query: String,

    /// How many hits.
    #[arg(short = 'k', long = "top-k", default_value_t = 5, value_parser = top_k_in_range)]
    pub top_k: usize,

    #[command(flatten)]
    pub collection: CollectionArg,

    /// Print the hits as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question.
    pub question: String,

    /// How many sources to retrieve.
    #[arg(short = 'k', long = "top-k", default_value_t = 5, value_parser = top_k_in_range)]
    pub top_k: usize,

    #[command(flatten)]
    pub collection: CollectionArg,

    /// Tokens the composed prompt may use.
    #[arg(long, default_value_t = 3000)]
    pub prompt_tokens: usize,

    /// Print the composed chat messages as JSON.
    #[arg(long)]
    pub show_prompt: bool,

    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The book to ingest [default: the Rust book of the active toolchain].
    #[arg(long)]
    pub book: Option<PathBuf>,
}

/// `-k` must ask for at least one hit, and not for more than a page of them.
fn top_k_in_range(value: &str) -> Result<usize, String> {
    let top_k: usize = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if !(1..=100).contains(&top_k) {
        return Err(format!("{top_k} is out of range: use 1 to 100"));
    }
    Ok(top_k)
}
