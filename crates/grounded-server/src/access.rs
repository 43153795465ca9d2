//! Who may call the server and what they spend: authentication, the scope
//! each route needs, the collections a caller sees, rate limits, daily token
//! quotas, the usage ledger, the audit log and the prompt log.
//!
//! [`authorize`] runs on every request after routing. With no API key in
//! the store and no token issuer configured, authentication is off and every
//! caller is [`Principal::anonymous`] (the command line lets such a server
//! listen on loopback only). Once a key exists, within
//! [`KEY_CHECK_INTERVAL`], every route but health and the OpenAPI document
//! needs a credential, and it stays so.
//!
//! Keys are looked up in the store on every request, so a revocation holds
//! on every server at once. Rate limits are per process: N replicas let a key
//! make N times its rate. Quotas are read from the shared ledger, so they
//! hold across replicas, up to the requests in flight when the quota is
//! reached, which finish.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use grounded_auth::{AuthError, Authenticator, JwtVerifier, Principal, Scope, client_address};
use grounded_store::MetadataStore;
use grounded_store::access::{AuditEvent, PromptLogEntry, UsageRecord};
use ipnet::IpNet;

use crate::{ApiError, AppState};

/// How often a server without keys looks for one in the store.
pub const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How access is controlled; the defaults suit a server behind no proxy.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Requests per minute of a key that sets none.
    pub requests_per_minute: u32,
    /// Failed authentications per minute from one client address.
    pub auth_failures_per_minute: u32,
    /// Keep redacted questions and answers for this long; `None` keeps none.
    pub prompt_log_retention: Option<Duration>,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            requests_per_minute: 600,
            auth_failures_per_minute: 20,
            prompt_log_retention: None,
        }
    }
}

/// The access state of a running server.
pub struct Access {
    authenticator: Authenticator,
    store: Arc<dyn MetadataStore>,
    settings: AccessSettings,
    token_issuer: bool,
    required: AtomicBool,
    checked_at: Mutex<Option<Instant>>,
    rates: Mutex<HashMap<String, KeyRate>>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// A key's limiter, and the rate it was built for.
struct KeyRate {
    per_minute: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl Access {
    /// Access over `store`'s keys, and tokens of `jwt` when given.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        settings: AccessSettings,
        jwt: Option<JwtVerifier>,
    ) -> Self {
        let token_issuer = jwt.is_some();
        let access_store: Arc<dyn grounded_store::access::AccessStore> = store.clone();
        let mut authenticator = Authenticator::new(access_store);
        if let Some(jwt) = jwt {
            authenticator = authenticator.with_jwt(jwt);
        }
        let failures = RateLimiter::keyed(Quota::per_minute(non_zero(
            settings.auth_failures_per_minute,
        )));
        Self {
            authenticator,
            store,
            settings,
            token_issuer,
            required: AtomicBool::new(token_issuer),
            checked_at: Mutex::new(None),
            rates: Mutex::new(HashMap::new()),
            failures,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub fn settings(&self) -> &AccessSettings {
        &self.settings
    }

    /// Whether callers must authenticate: a token issuer is configured, or
    /// a key exists (looked up at most every [`KEY_CHECK_INTERVAL`] until
    /// one does). A store that cannot answer makes authentication required.
    pub async fn required(&self) -> bool {
        if self.required.load(Ordering::Acquire) {
            return true;
        }
        if !self.due_for_key_check() {
            return false;
        }
        let keys = self.store.has_active_keys(now()).await.unwrap_or(true);
        if keys {
            self.required.store(true, Ordering::Release);
        }
        keys
    }

    fn due_for_key_check(&self) -> bool {
        let mut checked_at = self
            .checked_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let due = checked_at.is_none_or(|at| at.elapsed() >= KEY_CHECK_INTERVAL);
        if due {
            *checked_at = Some(Instant::now());
        }
        due
    }

    /// Whether authentication is required because of a token issuer, which
    /// never changes while the server runs.
    pub fn has_token_issuer(&self) -> bool {
        self.token_issuer
    }

    /// How long `client` must wait after too many failed authentications.
    fn blocked_for(&self, client: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *blocked.get(&client)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a failed authentication of `client`; the wait when that was
    /// one too many.
    fn count_failure(&self, client: IpAddr) -> Option<Duration> {
        let not_until = self.failures.check_key(&client).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());

        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        blocked.insert(client, now + wait);
        Some(wait)
    }

    /// Takes one request of `principal`'s rate; the wait when none is left.
    fn take_request(&self, principal: &Principal) -> Option<Duration> {
        let per_minute = principal
            .requests_per_minute
            .unwrap_or(self.settings.requests_per_minute);
        let limiter = self.limiter(&principal.id, per_minute);
        let not_until = limiter.check().err()?;
        Some(not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn limiter(&self, id: &str, per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let current = rates.get(id).filter(|rate| rate.per_minute == per_minute);
        if let Some(rate) = current {
            return rate.limiter.clone();
        }
        let limiter = Arc::new(RateLimiter::direct(Quota::per_minute(non_zero(per_minute))));
        rates.insert(
            id.to_owned(),
            KeyRate {
                per_minute,
                limiter: limiter.clone(),
            },
        );
        limiter
    }

    /// Refuses `principal` once it spent its tokens of the day.
    async fn check_quota(&self, principal: &Principal) -> Result<(), (u64, u64)> {
        let Some(quota) = principal.tokens_per_day else {
            return Ok(());
        };
        let spent = self
            .store
            .tokens_on_day(&principal.id, &today())
            .await
            .unwrap_or(0);
        if spent >= quota {
            return Err((spent, quota));
        }
        Ok(())
    }

    /// Appends to the audit log; a failure is logged, not raised.
    pub async fn audit(&self, kind: &str, principal: Option<&str>, client: IpAddr, detail: String) {
        let event = AuditEvent {
            at: now(),
            kind: kind.to_owned(),
            principal: principal.map(str::to_owned),
            client: Some(client.to_string()),
            detail,
        };
        if let Err(error) = self.store.record_audit(&event).await {
            tracing::warn!(kind, %error, "failed to write the audit log");
        }
    }
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

/// The scope a route needs; `None` for the public routes (health and the
/// OpenAPI document). An unmatched route needs a credential but no scope,
/// so it answers 404 only to a caller who has one.
pub fn required_scope(method: &Method, route: &str) -> RouteAccess {
    match (method.as_str(), route) {
        (_, "/healthz" | "/readyz" | "/openapi.json") => RouteAccess::Public,
        ("POST", "/v1/search") => RouteAccess::Scope(Scope::Search),
        ("POST", "/v1/answer") => RouteAccess::Scope(Scope::Answer),
        (_, "/v1/documents" | "/v1/documents/{id}") => RouteAccess::Scope(Scope::Ingest),
        (_, "/metrics" | "/v1/usage" | "/v1/audit") => RouteAccess::Scope(Scope::Admin),
        (_, route) if route.starts_with("/v1/keys") => RouteAccess::Scope(Scope::Admin),
        _ => RouteAccess::Credential,
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    Public,
    Credential,
    Scope(Scope),
}

/// The caller's address, after trusted proxies.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

/// Authenticates the request, applies its route's scope, the caller's rate
/// and quota, and hands the [`Principal`] to the handler as an extension.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let needs = route.as_deref().map_or(RouteAccess::Credential, |route| {
        required_scope(request.method(), route)
    });
    let access = state.access();
    let client = client(&request, &access.settings.trusted_proxies);
    request.extensions_mut().insert(ClientAddress(client));

    if needs == RouteAccess::Public || !access.required().await {
        request.extensions_mut().insert(Principal::anonymous());
        return next.run(request).await;
    }

    let principal = match admit(access, request.headers(), client, needs).await {
        Ok(principal) => principal,
        Err(refusal) => return refusal,
    };
    let key = principal.id.clone();
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    metrics::counter!(
        "grounded_key_requests_total",
        "key" => key,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// The principal of an admitted request, or the response refusing it.
async fn admit(
    access: &Access,
    headers: &HeaderMap,
    client: IpAddr,
    needs: RouteAccess,
) -> Result<Principal, Response> {
    if let Some(wait) = access.blocked_for(client) {
        return Err(throttled(wait));
    }
    let principal = authenticate(access, headers, client).await?;

    if let RouteAccess::Scope(scope) = needs
        && !principal.allows(scope)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this credential lacks the {scope} scope"),
        )
        .into_response());
    }
    // Keys, usage and metrics name every caller and collection: an admin
    // limited to some collections could read of the others, or make itself
    // a key for them.
    if needs == RouteAccess::Scope(Scope::Admin) && principal.collections.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the admin scope needs a credential for every collection",
        )
        .into_response());
    }
    if let Some(wait) = access.take_request(&principal) {
        access
            .audit("rate.exceeded", Some(&principal.id), client, String::new())
            .await;
        let per_minute = principal
            .requests_per_minute
            .unwrap_or(access.settings.requests_per_minute);
        let message = format!("this credential's rate of {per_minute} requests a minute is spent");
        return Err(too_many("rate_limited", &message, wait));
    }
    if let Err((spent, quota)) = access.check_quota(&principal).await {
        let detail = format!("{spent} of {quota} tokens spent today");
        access
            .audit("quota.exceeded", Some(&principal.id), client, detail)
            .await;
        let message = format!("this credential's daily quota of {quota} tokens is spent");
        return Err(too_many("quota_exceeded", &message, until_midnight()));
    }
    Ok(principal)
}

/// Checks the credential; a refusal is audited and counted against the
/// client's address.
async fn authenticate(
    access: &Access,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Principal, Response> {
    if credential(headers).is_none() && headers.contains_key(header::AUTHORIZATION) {
        return Err(unsupported_scheme());
    }
    let credential = credential(headers);
    let error = match access
        .authenticator
        .authenticate(credential, client, now())
        .await
    {
        Ok(principal) => return Ok(principal),
        Err(error) => error,
    };

    tracing::info!(client = %client, code = error.code(), reason = %error, "authentication failed");
    metrics::counter!("grounded_auth_failures_total", "code" => error.code()).increment(1);
    access
        .audit("auth.failed", error.key_id(), client, error.to_string())
        .await;
    if let Some(wait) = access.count_failure(client) {
        access
            .audit("auth.throttled", error.key_id(), client, String::new())
            .await;
        return Err(throttled(wait));
    }
    Err(refusal(&error))
}

/// The credential of `Authorization: Bearer …`, or of `X-API-Key`.
fn credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        });
    bearer.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok())
    })
}

fn client(request: &Request, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok());
    client_address(peer, forwarded, trusted_proxies)
}

fn refusal(error: &AuthError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = ApiError::new(status, error.code(), error.public_message()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// An `Authorization` header of another scheme than `Bearer`.
fn unsupported_scheme() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credential",
        "unsupported authorization scheme: send Authorization: Bearer <API key or token>, \
         or X-API-Key: <API key>",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn throttled(wait: Duration) -> Response {
    too_many(
        "too_many_failures",
        "too many failed authentications from this address",
        wait,
    )
}

fn too_many(code: &'static str, message: &str, wait: Duration) -> Response {
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message.to_owned()).into_response();
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// What one request spent on one model.
#[derive(Debug, Clone, Default)]
pub struct Spend {
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub embedding_tokens: u64,
}

/// Adds a request's spending to the ledger, one row per model, the request
/// counted on the first. A failure is logged: the work is done and the
/// answer is the caller's.
pub async fn record_spend(state: &AppState, principal: &Principal, route: &str, spends: &[Spend]) {
    let day = today();
    let rows = spends.iter().enumerate().map(|(i, spend)| UsageRecord {
        principal: principal.id.clone(),
        route: route.to_owned(),
        model: spend.model.clone(),
        day: day.clone(),
        requests: u64::from(i == 0),
        prompt_tokens: spend.prompt_tokens,
        completion_tokens: spend.completion_tokens,
        embedding_tokens: spend.embedding_tokens,
    });
    for row in rows {
        count_tokens(&row);
        if let Err(error) = state.engine().store.record_usage(&row).await {
            tracing::warn!(principal = %row.principal, %error, "failed to record usage");
        }
    }
}

fn count_tokens(row: &UsageRecord) {
    for (kind, tokens) in [
        ("prompt", row.prompt_tokens),
        ("completion", row.completion_tokens),
        ("embedding", row.embedding_tokens),
    ] {
        if tokens > 0 {
            metrics::counter!(
                "grounded_key_tokens_total",
                "key" => row.principal.clone(),
                "kind" => kind
            )
            .increment(tokens);
        }
    }
}

/// Keeps a redacted question and answer in the prompt log, when the
/// server keeps one.
pub async fn log_prompt(state: &AppState, principal: &Principal, question: &str, answer: &str) {
    if state.access().settings.prompt_log_retention.is_none() {
        return;
    }
    let entry = PromptLogEntry {
        at: now(),
        principal: principal.id.clone(),
        route: "/v1/answer".to_owned(),
        prompt: grounded_auth::redact(question).into_owned(),
        answer: grounded_auth::redact(answer).into_owned(),
    };
    if let Err(error) = state.engine().store.record_prompt(&entry).await {
        tracing::warn!(%error, "failed to write the prompt log");
    }
}

/// Deletes prompt log entries older than the retention, now and every
/// hour, for as long as the server runs.
pub fn spawn_prompt_log_purge(store: Arc<dyn MetadataStore>, retention: Duration) {
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let before = now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 2);
            match store.purge_prompts(before).await {
                Ok(purged) => tracing::debug!(purged, "prompt log purged"),
                Err(error) => tracing::warn!(%error, "failed to purge the prompt log"),
            }
        }
    });
}

pub use grounded_auth::unix_now as now;

/// Today, UTC, as `YYYY-MM-DD`: the day the ledger and quotas count in.
pub fn today() -> String {
    grounded_auth::utc_day(now())
}

fn until_midnight() -> Duration {
    let day = grounded_auth::calendar::DAY_SECONDS;
    let seconds = day - now().rem_euclid(day);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_but_health_and_the_document_needs_a_scope() {
        let post = Method::POST;
        assert_eq!(
            required_scope(&Method::GET, "/healthz"),
            RouteAccess::Public
        );
        assert_eq!(
            required_scope(&Method::GET, "/openapi.json"),
            RouteAccess::Public
        );
        assert_eq!(
            required_scope(&post, "/v1/search"),
            RouteAccess::Scope(Scope::Search)
        );
        assert_eq!(
            required_scope(&Method::DELETE, "/v1/documents/{id}"),
            RouteAccess::Scope(Scope::Ingest)
        );
        assert_eq!(
            required_scope(&post, "/v1/keys/{id}/rotate"),
            RouteAccess::Scope(Scope::Admin)
        );
        assert_eq!(
            required_scope(&Method::GET, "/metrics"),
            RouteAccess::Scope(Scope::Admin)
        );
        assert_eq!(required_scope(&post, "/v1/other"), RouteAccess::Credential);
    }
}
