//! The HTTP service: grounded's search, answers and documents for apps.
//!
//! [`router`] builds the axum application from an open [`Engine`]; [`serve`]
//! runs it until shutdown, finishing the requests in flight. Routes live one
//! file per resource under [`routes`]; their request and response types in
//! [`api`], from which `/openapi.json` is generated; every error leaves as
//! [`ApiError`]'s one JSON shape.

pub mod access;
pub mod api;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod routes;

mod extract;
mod state;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use state::{AppState, Engine, ServerConfig};

/// The parts of the OpenAPI document that no handler states.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "grounded",
        description = "Semantic search over your documents, and answers that cite them."
    ),
    tags(
        (name = "search", description = "Hits for a query"),
        (name = "answer", description = "Answers with citations"),
        (name = "documents", description = "The documents of a collection"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "access", description = "API keys and usage (the admin scope)"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the `Authorization: Bearer` scheme every route but health and
/// this document needs once authentication is on: an API key (`gnd_…`) or
/// an OAuth 2 access token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API key (gnd_…) or an access token (JWT) of the configured issuer",
            ))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The application: every route, with its OpenAPI document served at
/// `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router().split_for_parts();
    let config = state.config().clone();
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);

    api.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            middleware::timeout,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(middleware::observe))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Every route, each described in the OpenAPI document.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::search::search))
        .routes(routes!(routes::answer::answer))
        .routes(routes!(routes::documents::upload, routes::documents::list))
        .routes(routes!(routes::documents::delete))
        .routes(routes!(routes::keys::list, routes::keys::create))
        .routes(routes!(routes::keys::revoke))
        .routes(routes!(routes::keys::rotate))
        .routes(routes!(routes::usage::usage))
        .routes(routes!(routes::audit::audit))
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::meta::metrics))
        .routes(routes!(routes::meta::openapi_json))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, openapi) = api_router().split_for_parts();
    openapi
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// taking connections and waits for the requests in flight to finish.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
