//! `grounded serve`: the HTTP API until Ctrl-C or SIGTERM, then a graceful
//! stop that lets requests in flight finish.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use grounded_auth::{JwtConfig, JwtVerifier, KeySource, parse_duration, parse_ip_block};
use grounded_embed::{Embedder, QueryEmbedder};
use grounded_ingest::{IngestOptions, WalkOptions};
use grounded_query::{AnswerOptions, PromptBudget};
use grounded_server::access::{AccessSettings, spawn_prompt_log_purge};
use grounded_server::{AppState, Engine, ServerConfig};
use tracing::info;

use crate::cli::{AccessArgs, GlobalArgs, ServeArgs};
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
    let jwt = token_issuer(&args.access).await?;
    let authenticated = jwt.is_some()
        || store
            .has_active_keys(grounded_server::access::now())
            .await?;
    check_open_address(args.addr, authenticated)?;
    if let Some(retention) = config.access.prompt_log_retention {
        spawn_prompt_log_purge(store.clone(), retention);
    }
    let router = grounded_server::router(AppState::with_token_issuer(engine, config, jwt));

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    eprintln!("grounded is serving on http://{addr} (answers by {answered_by}); Ctrl-C stops it");
    if authenticated {
        let what = if args.access.jwt_issuer.is_some() {
            "an API key or a bearer token"
        } else {
            "an API key"
        };
        eprintln!(
            "authentication is on: {what} is needed on every route but health and /openapi.json"
        );
    } else {
        eprintln!(
            "authentication is off: no API key exists and no token issuer is configured, so \
             grounded listens on loopback only; `grounded keys create` turns it on"
        );
    }
    info!(%addr, answered_by, authenticated, "server started");

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
        access: access_settings(&args.access)?,
    })
}

fn access_settings(args: &AccessArgs) -> anyhow::Result<AccessSettings> {
    let trusted_proxies = args
        .trusted_proxies
        .iter()
        .map(|block| parse_ip_block(block))
        .collect::<Result<Vec<_>, _>>()
        .context("--trusted-proxies")?;
    let prompt_log_retention = if args.log_prompts {
        let retention =
            parse_duration(&args.prompt_log_retention).context("--prompt-log-retention")?;
        Some(retention)
    } else {
        None
    };
    Ok(AccessSettings {
        trusted_proxies,
        requests_per_minute: args.requests_per_minute.max(1),
        auth_failures_per_minute: args.auth_failures_per_minute.max(1),
        prompt_log_retention,
    })
}

/// An open server (no keys, no token issuer) listens on loopback only.
fn check_open_address(addr: std::net::SocketAddr, authenticated: bool) -> anyhow::Result<()> {
    if authenticated || addr.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {addr} without authentication: create an API key with \
         `grounded keys create --name NAME --scopes search,answer`, or configure a token \
         issuer (--jwt-issuer, --jwt-audience and --jwt-jwks or GROUNDED_JWT_HS256_SECRET), \
         or listen on 127.0.0.1"
    )
}

/// The bearer-token verifier the flags configure, if any.
async fn token_issuer(args: &AccessArgs) -> anyhow::Result<Option<JwtVerifier>> {
    let keys = token_keys(args)?;
    let (issuer, audience, keys) = match (&args.jwt_issuer, &args.jwt_audience, keys) {
        (None, None, None) => return Ok(None),
        (Some(issuer), Some(audience), Some(keys)) => (issuer, audience, keys),
        _ => anyhow::bail!(
            "bearer tokens need all of --jwt-issuer, --jwt-audience and the issuer's keys \
             (--jwt-jwks, or GROUNDED_JWT_HS256_SECRET or --jwt-hs256-secret-file)"
        ),
    };
    let config = JwtConfig {
        scope_prefix: args.jwt_scope_prefix.clone(),
        collections_claim: args.jwt_collections_claim.clone(),
        ..JwtConfig::new(issuer.clone(), audience.clone(), keys)
    };
    let verifier = JwtVerifier::try_new(config)
        .await
        .context("cannot load the token issuer's keys")?;
    Ok(Some(verifier))
}

/// The issuer's keys: a JWKS file or URL, or an HS256 secret from the
/// environment or a file (never from the command line).
fn token_keys(args: &AccessArgs) -> anyhow::Result<Option<KeySource>> {
    if let Some(jwks) = &args.jwt_jwks {
        let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            KeySource::JwksUrl(jwks.clone())
        } else {
            KeySource::JwksFile(jwks.into())
        };
        return Ok(Some(source));
    }
    if let Some(path) = &args.jwt_hs256_secret_file {
        let secret = std::fs::read(path)
            .with_context(|| format!("cannot read the HS256 secret file {}", path.display()))?;
        let secret = secret.trim_ascii().to_vec();
        return Ok(Some(KeySource::SharedSecret(secret)));
    }
    Ok(std::env::var_os("GROUNDED_JWT_HS256_SECRET")
        .map(|secret| KeySource::SharedSecret(secret.into_encoded_bytes())))
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
