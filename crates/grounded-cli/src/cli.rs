//! The command line: every flag, with the environment variable that sets it.

use std::net::SocketAddr;
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

    /// A Qdrant server or cluster (gRPC, e.g. http://localhost:6334) to keep
    /// the points in [default: Qdrant Edge in process, under the data
    /// directory]. Its API key is read from GROUNDED_QDRANT_API_KEY.
    #[arg(
        long,
        global = true,
        env = "GROUNDED_QDRANT_URL",
        hide_env_values = true
    )]
    pub qdrant_url: Option<String>,

    /// The Qdrant server's API key.
    #[arg(
        long,
        global = true,
        env = "GROUNDED_QDRANT_API_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub qdrant_api_key: Option<String>,

    /// Points per upsert request to a Qdrant server.
    #[arg(long, global = true, env = "GROUNDED_UPSERT_BATCH", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub upsert_batch: u64,

    /// Upsert requests to a Qdrant server in flight at once.
    #[arg(long, global = true, env = "GROUNDED_UPSERT_PARALLELISM", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub upsert_parallelism: u64,

    /// What embeds chunks and queries. A collection keeps the embedder it
    /// was made with: one made by another is refused.
    #[arg(
        long,
        global = true,
        env = "GROUNDED_EMBEDDER",
        value_enum,
        default_value_t = EmbedderKind::Local
    )]
    pub embedder: EmbedderKind,
}

/// What embeds, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2, run in process (384 dimensions).
    Local,
    /// The embeddings endpoint of an OpenAI-compatible API (OPENAI_BASE_URL,
    /// OPENAI_API_KEY, OPENAI_EMBEDDING_MODEL, OPENAI_EMBEDDING_DIMENSIONS).
    Openai,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load files into a collection: walk, decode, chunk, embed, index.
    Ingest(IngestArgs),
    /// Find the chunks that best match a query.
    Search(SearchArgs),
    /// Answer a question from the collection, citing the sources.
    Ask(AskArgs),
    /// Serve the HTTP API: search, answers and documents for apps.
    Serve(ServeArgs),
    /// Ingest the Rust book that ships with rustup, then search and ask it.
    Demo(DemoArgs),
    /// Measure retrieval quality on a BEIR-format benchmark (nDCG@10,
    /// Recall@10 and @100, MRR@10, MAP@100, latency) for each search mode.
    Eval(EvalArgs),
    /// Bring the metadata store's schema up to date (every command also does
    /// this when it opens the store) and print its version.
    Migrate,
    /// Move cached embeddings between stores, as a file.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// List or delete collections.
    #[command(subcommand)]
    Collections(CollectionsCommand),
    /// Create, list, revoke or rotate the API keys of the HTTP service.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// What each key spent, by day, route and model, with an estimated cost.
    Usage(UsageArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, once: only its hash is kept.
    Create(KeyCreateArgs),
    /// Every key with its rights, limits and state; never a secret.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it never works again.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
    /// Replace a key with a new one of the same rights; the old one keeps
    /// working for the grace period.
    Rotate(KeyRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// A label for people (`ci`, `alice laptop`); not unique.
    #[arg(long, value_parser = key_name)]
    pub name: String,

    /// What the key may do: search, answer, ingest, admin (comma-separated;
    /// none implies another).
    #[arg(long, value_parser = scopes)]
    pub scopes: grounded_auth::Scopes,

    /// The collections the key may use, comma-separated [default: all].
    #[arg(long, value_delimiter = ',', value_parser = key_collection)]
    pub collections: Option<Vec<String>>,

    /// How long the key works (`90d`, `24h`, `30m`, `45s`) [default: until
    /// revoked].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub expires: Option<std::time::Duration>,

    /// Where the key may be used from: CIDR blocks or addresses,
    /// comma-separated [default: anywhere].
    #[arg(long = "allow-ip", value_name = "CIDR", value_delimiter = ',', value_parser = ip_block)]
    pub allow_ips: Vec<ipnet::IpNet>,

    /// Requests per minute [default: the server's --requests-per-minute].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub requests_per_minute: Option<u32>,

    /// Tokens (prompt, completion and embedding) per UTC day [default: no
    /// quota].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub tokens_per_day: Option<u64>,

    /// Print the key and its record as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// The key's id, as `keys list` shows it.
    pub id: String,

    /// How long the old key keeps working (`24h`, `7d`, `0s` for not at
    /// all).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub grace: std::time::Duration,

    /// Print the new key and its record as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this key's usage (its id; or `jwt:<subject>`, `anonymous`).
    #[arg(long, value_name = "ID")]
    pub key: Option<String>,

    /// Only days on or after this one (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = utc_day)]
    pub since: Option<String>,

    /// A JSON price table, USD per million tokens by model
    /// (`{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}`); its
    /// models replace the built-in prices.
    #[arg(long, value_name = "FILE", env = "GROUNDED_PRICES")]
    pub prices: Option<PathBuf>,

    /// Print the ledger, the totals and the costs as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn key_name(value: &str) -> Result<String, String> {
    match value.trim() {
        "" => Err("a key's name must not be empty".into()),
        name => Ok(name.to_owned()),
    }
}

fn scopes(value: &str) -> Result<grounded_auth::Scopes, String> {
    let scopes: grounded_auth::Scopes = value
        .parse()
        .map_err(|e: grounded_auth::ScopeError| e.to_string())?;
    if scopes.is_empty() {
        return Err("a key needs at least one scope: search, answer, ingest or admin".into());
    }
    Ok(scopes)
}

fn key_collection(value: &str) -> Result<String, String> {
    let name = value.trim();
    grounded_core::validate_collection_name(name)?;
    Ok(name.to_owned())
}

fn duration(value: &str) -> Result<std::time::Duration, String> {
    grounded_auth::parse_duration(value).map_err(|e| e.to_string())
}

fn ip_block(value: &str) -> Result<ipnet::IpNet, String> {
    grounded_auth::parse_ip_block(value).map_err(|e| e.to_string())
}

/// A calendar day as the usage ledger keeps it: `YYYY-MM-DD`.
fn utc_day(value: &str) -> Result<String, String> {
    grounded_auth::check_day(value).map_err(|error| error.to_string())?;
    Ok(value.to_owned())
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
    /// The most tokens of one chunk, at most the model's limit: 254 for the
    /// local embedder, 8191 for OpenAI's.
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

    /// Tag every document of this run, for `search --tag`; repeatable.
    /// Ingesting with other tags rewrites the documents' points.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// How hits are found and which pass.
#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// dense (embeddings), sparse (BM25 terms) or hybrid (both, fused by rank).
    #[arg(long, env = "GROUNDED_SEARCH_MODE", value_enum, default_value_t = Mode::Hybrid)]
    pub mode: Mode,

    /// Drop hits scoring below this: cosine similarity in dense mode, BM25
    /// in sparse mode, the fused rank score in hybrid mode.
    #[arg(long, value_name = "SCORE", value_parser = finite_score, allow_negative_numbers = true)]
    pub min_score: Option<f32>,

    /// Only files at or under this directory, or this file (whole path
    /// components; an existing path is resolved as ingest resolves it).
    #[arg(long = "path", value_name = "PATH")]
    pub path_prefix: Option<String>,

    /// Only documents of this kind (markdown, html, text, code); repeatable,
    /// any of them passes.
    #[arg(long = "kind", value_name = "KIND", value_parser = parse_kind)]
    pub kinds: Vec<grounded_core::DocumentKind>,

    /// Only documents ingested with this tag; repeatable, all must hold.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Only hits whose payload field KEY equals VALUE (e.g. title=Ownership,
    /// ordinal=0, location.anchor=intro); repeatable, all must hold. A field
    /// no hit has gives no hits.
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = grounded_index::FieldMatch::parse)]
    pub fields: Vec<grounded_index::FieldMatch>,

    /// The reciprocal rank fusion constant of hybrid mode.
    #[arg(long, default_value_t = grounded_index::DEFAULT_RRF_K, value_parser = rrf_k_in_range)]
    pub rrf_k: usize,
}

/// The search modes, as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Dense,
    Sparse,
    Hybrid,
}

impl From<Mode> for grounded_index::SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Dense => Self::Dense,
            Mode::Sparse => Self::Sparse,
            Mode::Hybrid => Self::Hybrid,
        }
    }
}

impl RetrievalArgs {
    /// The search of `query` that these flags describe.
    pub fn request(
        &self,
        collection: &str,
        query: &str,
        limit: usize,
    ) -> grounded_query::SearchRequest {
        let filter = grounded_index::PointFilter {
            path_prefix: self.path_prefix.as_deref().map(resolve_path),
            kinds: self.kinds.clone(),
            tags: self.tags.clone(),
            fields: self.fields.clone(),
        };
        grounded_query::SearchRequest {
            mode: self.mode.into(),
            filter,
            min_score: self.min_score,
            rrf_k: self.rrf_k,
            ..grounded_query::SearchRequest::new(collection, query, limit)
        }
    }
}

fn finite_score(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(score) if score.is_finite() => Ok(score),
        _ => Err(format!("{value:?} is not a finite number")),
    }
}

/// A path as ingest records source paths: absolute, without symbolic links,
/// when it exists here; as given otherwise (a path of another machine).
fn resolve_path(path: &str) -> String {
    match std::fs::canonicalize(path) {
        Ok(resolved) => resolved.display().to_string(),
        Err(_) => path.to_owned(),
    }
}

fn parse_kind(value: &str) -> Result<grounded_core::DocumentKind, String> {
    grounded_core::DocumentKind::parse(value).ok_or_else(|| {
        format!("{value:?} is not a document kind: use markdown, html, text or code")
    })
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

    #[command(flatten)]
    pub retrieval: RetrievalArgs,

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

    #[command(flatten)]
    pub retrieval: RetrievalArgs,

    /// Tokens the composed prompt may use.
    #[arg(long, default_value_t = 3000)]
    pub prompt_tokens: usize,

    #[command(flatten)]
    pub answer: AnswerArgs,

    /// Print the composed chat messages as JSON.
    #[arg(long)]
    pub show_prompt: bool,

    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What writes answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Llm {
    /// An OpenAI-compatible chat API (OPENAI_BASE_URL, OPENAI_API_KEY,
    /// OPENAI_CHAT_MODEL).
    Openai,
    /// SmolLM2-135M-Instruct, run in process.
    Local,
    /// Sentences of the sources closest to the question; no model.
    Extractive,
}

/// How answers are written.
#[derive(Debug, Clone, Args)]
pub struct AnswerArgs {
    /// What writes the answer [default: openai when OPENAI_BASE_URL or
    /// OPENAI_API_KEY is set, otherwise local].
    #[arg(long, env = "GROUNDED_LLM", value_enum)]
    pub llm: Option<Llm>,

    /// A directory whose system.jinja, source.jinja or user.jinja replace
    /// the built-in prompt templates.
    #[arg(long, env = "GROUNDED_PROMPT_DIR", value_name = "DIR")]
    pub prompt_dir: Option<PathBuf>,

    /// The most tokens the model may write.
    #[arg(long, env = "GROUNDED_MAX_TOKENS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_tokens: u32,

    /// Sampling temperature, 0 to 2; 0 answers alike every time.
    #[arg(long, env = "GROUNDED_TEMPERATURE", default_value_t = 0.0, value_parser = temperature_in_range)]
    pub temperature: f32,

    /// The similarity (0 to 1, with the embedding model) from which a
    /// sentence of a chat model's answer that cites nothing is attributed to
    /// the source sentence it restates (0.8 is a reasonable value); `off`
    /// keeps only the model's own citations.
    #[arg(long, env = "GROUNDED_ATTRIBUTION", default_value = "off", value_parser = attribution_value)]
    pub attribution: Attribution,

    /// The local model's GGUF file [default: fetched into the cache directory].
    #[arg(long, env = "GROUNDED_LOCAL_MODEL", value_name = "FILE")]
    pub local_model: Option<PathBuf>,
}

/// `--attribution`: a minimum similarity, or off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attribution(pub Option<f32>);

fn attribution_value(value: &str) -> Result<Attribution, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Attribution(None));
    }
    match value.parse::<f32>() {
        Ok(similarity) if (0.0..=1.0).contains(&similarity) => Ok(Attribution(Some(similarity))),
        _ => Err(format!(
            "{value:?} is neither a similarity from 0 to 1 nor `off`"
        )),
    }
}

fn temperature_in_range(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(t) if (0.0..=2.0).contains(&t) => Ok(t),
        _ => Err(format!("{value:?} is not a temperature from 0 to 2")),
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "GROUNDED_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The collection of requests that name none.
    #[command(flatten)]
    pub collection: CollectionArg,

    /// How uploaded documents are chunked.
    #[command(flatten)]
    pub chunking: ChunkingArgs,

    #[command(flatten)]
    pub answer: AnswerArgs,

    /// Tokens an answer's prompt may use, unless a request says otherwise.
    #[arg(long, default_value_t = 3000)]
    pub prompt_tokens: usize,

    /// Seconds a request may take before its response starts.
    #[arg(long, env = "GROUNDED_REQUEST_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,

    /// The largest request body accepted, in bytes (uploads included).
    #[arg(long, env = "GROUNDED_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    #[command(flatten)]
    pub access: AccessArgs,
}

/// Who may use the server. With no API key in the store and no token
/// issuer, the server is open, and so listens on loopback only.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Proxies whose `X-Forwarded-For` is believed, as CIDR blocks
    /// (`10.0.0.0/8,127.0.0.1/32`); from any other peer the header is
    /// ignored.
    #[arg(long, env = "GROUNDED_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Requests per minute of a key that sets no rate of its own.
    #[arg(long, env = "GROUNDED_REQUESTS_PER_MINUTE", default_value_t = 600)]
    pub requests_per_minute: u32,

    /// Failed authentications per minute allowed from one client address;
    /// beyond it the address gets 429 until the minute has passed.
    #[arg(long, env = "GROUNDED_AUTH_FAILURES_PER_MINUTE", default_value_t = 20)]
    pub auth_failures_per_minute: u32,

    /// The `iss` of accepted bearer tokens (JWT); with `--jwt-audience` and
    /// either `--jwt-jwks` or `GROUNDED_JWT_HS256_SECRET(_FILE)`.
    #[arg(long, env = "GROUNDED_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The audience accepted tokens must name.
    #[arg(long, env = "GROUNDED_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The issuer's keys: a JWKS file, or its `https://…` URL.
    #[arg(long, env = "GROUNDED_JWT_JWKS")]
    pub jwt_jwks: Option<String>,

    /// A file holding the HS256 shared secret of the issuer. The secret
    /// itself may instead be in `GROUNDED_JWT_HS256_SECRET`; it is never
    /// taken on the command line, where process lists would show it.
    #[arg(long, env = "GROUNDED_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,

    /// Stripped from the token's scope names (`grounded:search`); scopes
    /// without it are ignored.
    #[arg(long, env = "GROUNDED_JWT_SCOPE_PREFIX")]
    pub jwt_scope_prefix: Option<String>,

    /// The token claim that lists the collections a token may use.
    #[arg(long, env = "GROUNDED_JWT_COLLECTIONS_CLAIM")]
    pub jwt_collections_claim: Option<String>,

    /// Keep each answer's question and text, redacted (emails, phone and
    /// card numbers, anything like a key), in the store's prompt log.
    #[arg(long, env = "GROUNDED_LOG_PROMPTS")]
    pub log_prompts: bool,

    /// How long the prompt log keeps an entry (`30d`, `12h`).
    #[arg(long, env = "GROUNDED_PROMPT_LOG_RETENTION", default_value = "30d")]
    pub prompt_log_retention: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The book to ingest [default: the Rust book of the active toolchain].
    #[arg(long)]
    pub book: Option<PathBuf>,

    #[command(flatten)]
    pub answer: AnswerArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A BEIR-format benchmark directory: corpus.jsonl, queries.jsonl and
    /// qrels/SPLIT.tsv.
    #[arg(
        long = "dataset",
        value_name = "DIR",
        required_unless_present = "dataset_dir",
        conflicts_with = "dataset_dir"
    )]
    pub dataset: Option<PathBuf>,

    /// The benchmark directory, as --dataset gives it.
    #[arg(value_name = "DIR")]
    pub dataset_dir: Option<PathBuf>,

    /// The relevance judgments to score against (qrels/SPLIT.tsv).
    #[arg(long, default_value = "test")]
    pub split: String,

    /// The search modes to measure; repeatable [default: dense, sparse and hybrid].
    #[arg(long = "mode", value_enum)]
    pub modes: Vec<Mode>,

    /// Score only the first N judged queries.
    #[arg(long, value_name = "N")]
    pub limit_queries: Option<usize>,

    /// The reciprocal rank fusion constant of hybrid mode.
    #[arg(long, default_value_t = grounded_index::DEFAULT_RRF_K, value_parser = rrf_k_in_range)]
    pub rrf_k: usize,

    /// Answer the first N judged queries from their hybrid hits, as `ask`
    /// does, and report how many cite a judged relevant document and how
    /// many are ungrounded; 0 skips answering.
    #[arg(
        long,
        env = "GROUNDED_EVAL_ANSWERS",
        value_name = "N",
        default_value_t = 0
    )]
    pub answers: usize,

    #[command(flatten)]
    pub answer: AnswerArgs,

    /// Where each run's Markdown and JSON reports are written [default:
    /// eval/runs/ in the data directory].
    #[arg(long, env = "GROUNDED_EVAL_OUTPUT", value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Print the report as one JSON object instead of Markdown.
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    /// The benchmark directory, given with --dataset or as the argument
    /// (clap requires one of them).
    pub fn benchmark(&self) -> Option<&std::path::Path> {
        self.dataset.as_deref().or(self.dataset_dir.as_deref())
    }
}

/// The fusion constant must be positive; beyond 1,000 ranks barely matter.
fn rrf_k_in_range(value: &str) -> Result<usize, String> {
    let k: usize = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if !(1..=1000).contains(&k) {
        return Err(format!("{k} is out of range: use 1 to 1000"));
    }
    Ok(k)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_must_be_on_the_calendar() {
        for day in ["2025-01-31", "2024-02-29", "2000-02-29", "1999-12-01"] {
            assert_eq!(utc_day(day).as_deref(), Ok(day));
        }
        for day in [
            "2025-02-29",
            "1900-02-29",
            "2025-04-31",
            "2025-00-10",
            "2025-13-01",
        ] {
            assert!(
                utc_day(day)
                    .unwrap_err()
                    .contains("not a day of the calendar"),
                "{day}"
            );
        }
        for day in [
            "2025-1-31",
            "20250131",
            "2025-01-31T00",
            "yesterday",
            "+025-01-01",
            "",
        ] {
            assert!(
                utc_day(day).unwrap_err().contains("expected YYYY-MM-DD"),
                "{day}"
            );
        }
    }
}
