//! `grounded serve`: the HTTP API until Ctrl-C or SIGTERM, then a graceful
//! stop that lets requests in flight finish.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use grounded_embed::{Embedder, QueryEmbedder};
use grounded_ingest::{IngestOptions, WalkOptions};
use grounded_query::{AnswerOptions, PromptBudget};
use grounded_server::{AppState, Engine, ServerConfig};
use tracing::info;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::commands::ingest::{MAX_FILE_BYTES, chunking};
use crate::context::{Context, collection_name};
use crate::llm;

/// Chunks embedded and written together per upload batch.
const UPLOAD_BATCH_CHUNKS: usize = 128;

/// The most concurrent queries embedded in one model call.
const QUERY_BATCH: usize = 32;

/// Distinct recent queries whose vectors are kept in memory (1.5 KB each).
const QUERY_CACHE: usize = 10_000;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let context = Context::open(global).await?;
    let config = server_config(global, &args, &context)?;
    let embedder: Arc<dyn Embedder> = Arc::new(QueryEmbedder::new(
        context.embedder.clone(),
        QUERY_BATCH,
        QUERY_CACHE,
    ));
    let answerer = llm::answerer(global, &args.answer, embedder.clone())?;

    let engine = Engine {
        embedder,
        store: Arc::from(context.store),
        index: Arc::from(context.index),
        answerer,
    };
    let store = engine.store.clone();
    let answered_by = engine.answerer.model().id().to_string();
    let router = grounded_server::router(AppState::new(engine, config));

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    eprintln!("grounded is serving on http://{addr} (answers by {answered_by}); Ctrl-C stops it");
    info!(%addr, answered_by, "server started");

    grounded_server::serve(listener, router, shutdown_signal()).await?;
    store.close().await;
    info!("server stopped");
    Ok(())
}

fn server_config(
    global: &GlobalArgs,
    args: &ServeArgs,
    context: &Context,
) -> anyhow::Result<ServerConfig> {
    let collection = collection_name(&args.collection.collection)?.to_string();
    let ingest = IngestOptions {
        collection: collection.clone(),
        chunking: chunking(&args.chunking, context.embedder.as_ref())?,
        walk: WalkOptions {
            follow_links: false,
            exclude: Vec::new(),
            max_file_bytes: MAX_FILE_BYTES,
        },
        prune: false,
        batch_chunks: UPLOAD_BATCH_CHUNKS,
        tags: Vec::new(),
    };
    let answer = AnswerOptions {
        budget: PromptBudget {
            max_prompt_tokens: args.prompt_tokens,
        },
        max_tokens: args.answer.max_tokens,
        temperature: args.answer.temperature,
        attribution: args.answer.attribution.0,
    };
    Ok(ServerConfig {
        default_collection: collection,
        uploads_dir: global.data_dir.join("uploads"),
        ingest,
        answer,
        request_timeout: Duration::from_secs(args.request_timeout),
        max_body_bytes: args.max_body_bytes,
    })
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    info!("shutting down: finishing the requests in flight");
}
