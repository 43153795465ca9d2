//! Access control through a real listening server over the real embedding
//! model, SQLite and Qdrant Edge: every route against every scope and every
//! state a credential can be in, tenant isolation between collections,
//! bearer tokens, rate limits, quotas, throttled failures, revocation seen
//! by a second server, and the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use grounded_auth::{JwtConfig, JwtVerifier, KeySource, KeySpec, Scope, Scopes, parse_ip_block};
use grounded_embed::Embedder;
use grounded_index::EdgeIndex;
use grounded_ingest::{ChunkConfig, IngestOptions, WalkOptions};
use grounded_query::{AnswerModel, AnswerOptions, Answerer, PromptTemplates};
use grounded_server::access::{AccessSettings, now};
use grounded_server::{AppState, Engine, ServerConfig};
use grounded_store::{MetadataStore, SqliteStore};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::embedder;

const ALPHA_DOC: &str = "# Ownership\n\nEach value in Rust has an owner. There can only be one \
owner at a time. When the owner goes out of scope, the value will be dropped.\n";

const BETA_DOC: &str = "# Zebracorn ledger\n\nThe zebracorn budget for the secret merger is \
four million. Only the beta team may read about the zebracorn.\n";

const BETA_PATH: &str = "merger/zebracorn-plan.md";

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "grounded-tests";
const HS256_SECRET: &[u8] = b"a shared secret of thirty-two bytes or more, for tests only";

/// A running server over a store it shares with the test.
struct Server {
    base: String,
    client: reqwest::Client,
    store: Arc<dyn MetadataStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

/// Settings that never get in the way of a matrix of requests.
fn generous() -> AccessSettings {
    AccessSettings {
        trusted_proxies: vec![parse_ip_block("127.0.0.1/32").expect("block")],
        requests_per_minute: 100_000,
        auth_failures_per_minute: 100_000,
        prompt_log_retention: None,
    }
}

async fn jwt_verifier() -> JwtVerifier {
    let keys = KeySource::SharedSecret(HS256_SECRET.to_vec());
    JwtVerifier::try_new(JwtConfig::new(ISSUER, AUDIENCE, keys))
        .await
        .expect("verifier")
}

/// Starts a server on the SQLite database and the index in `dir`.
async fn start(
    dir: &TempDir,
    embedder: Arc<dyn Embedder>,
    access: AccessSettings,
    jwt: Option<JwtVerifier>,
) -> Server {
    start_on(dir, dir, embedder, access, jwt).await
}

/// Starts a server on the SQLite database in `dir` and the index in
/// `index_dir`: two servers over one store, as replicas would be.
async fn start_on(
    dir: &TempDir,
    index_dir: &TempDir,
    embedder: Arc<dyn Embedder>,
    access: AccessSettings,
    jwt: Option<JwtVerifier>,
) -> Server {
    let store: Arc<dyn MetadataStore> = Arc::new(
        SqliteStore::open(&dir.path().join("grounded.db"))
            .await
            .expect("sqlite store"),
    );
    let index = EdgeIndex::open(&index_dir.path().join("index")).expect("edge index");
    let answerer = Answerer::new(
        AnswerModel::Extractive,
        embedder.clone(),
        Arc::new(PromptTemplates::builtin()),
    );
    let engine = Engine {
        embedder,
        store: store.clone(),
        index: Arc::new(index),
        answerer,
    };
    let config = ServerConfig {
        default_collection: "alpha".into(),
        uploads_dir: dir.path().join("uploads"),
        ingest: IngestOptions {
            collection: "alpha".into(),
            chunking: ChunkConfig {
                max_tokens: 64,
                overlap_tokens: 8,
            },
            walk: WalkOptions::default(),
            prune: false,
            batch_chunks: 64,
            tags: Vec::new(),
        },
        answer: AnswerOptions::default(),
        request_timeout: Duration::from_secs(30),
        max_body_bytes: 1024 * 1024,
        access,
    };
    let router = grounded_server::router(AppState::with_token_issuer(engine, config, jwt));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grounded_server::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        client: reqwest::Client::new(),
        store,
        shutdown: Some(stop),
    }
}

/// One request: method, path, body.
#[derive(Debug, Clone)]
struct Call {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

/// What a request sends as its credential, and from where.
#[derive(Debug, Clone, Default)]
struct Presented {
    authorization: Option<String>,
    forwarded_for: Option<String>,
}

impl Server {
    async fn send(
        &self,
        call: &Call,
        presented: &Presented,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .client
            .request(call.method.clone(), format!("{}{}", self.base, call.path));
        if let Some(authorization) = &presented.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(forwarded) = &presented.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json, headers)
    }

    async fn call(&self, call: &Call, key: &str) -> (u16, Value) {
        let presented = bearer(key);
        let (status, json, _) = self.send(call, &presented).await;
        (status, json)
    }

    /// Creates a key straight in the store; the key string.
    async fn key(&self, spec: &KeySpec) -> (String, String) {
        let issued = spec.issue(now()).expect("issue");
        self.store.insert_key(&issued.record).await.expect("insert");
        (
            issued.record.id.clone(),
            issued.key.expose_secret().to_owned(),
        )
    }
}

fn bearer(key: &str) -> Presented {
    Presented {
        authorization: Some(format!("Bearer {key}")),
        forwarded_for: None,
    }
}

fn scopes(names: &str) -> Scopes {
    names.parse().expect("scopes")
}

fn call(name: &'static str, method: reqwest::Method, path: &str, body: Option<Value>) -> Call {
    Call {
        name,
        method,
        path: path.to_owned(),
        body,
    }
}

/// Every route, each with a request that succeeds for a caller holding its
/// scope (the key routes on a key id that does not exist, which is a 404
/// from the handler, not from access control), and that scope.
fn routes() -> Vec<(Call, Option<Scope>, u16)> {
    use reqwest::Method;
    let unknown_document = "/v1/documents/00000000-0000-4000-8000-000000000000?collection=alpha";
    vec![
        (
            call(
                "search",
                Method::POST,
                "/v1/search",
                Some(json!({"query": "owner", "collection": "alpha"})),
            ),
            Some(Scope::Search),
            200,
        ),
        (
            call(
                "answer",
                Method::POST,
                "/v1/answer",
                Some(json!({"question": "What has an owner?", "collection": "alpha"})),
            ),
            Some(Scope::Answer),
            200,
        ),
        (
            call(
                "upload",
                Method::POST,
                "/v1/documents",
                Some(
                    json!({"path": "notes/matrix.md", "text": "# Matrix\n\nUploaded by the access matrix.", "collection": "alpha"}),
                ),
            ),
            Some(Scope::Ingest),
            201,
        ),
        (
            call(
                "list documents",
                Method::GET,
                "/v1/documents?collection=alpha",
                None,
            ),
            Some(Scope::Ingest),
            200,
        ),
        (
            call("delete document", Method::DELETE, unknown_document, None),
            Some(Scope::Ingest),
            404,
        ),
        (
            call("list keys", Method::GET, "/v1/keys", None),
            Some(Scope::Admin),
            200,
        ),
        (
            call(
                "create key",
                Method::POST,
                "/v1/keys",
                Some(json!({"name": "made by the matrix", "scopes": ["search"]})),
            ),
            Some(Scope::Admin),
            201,
        ),
        (
            call("revoke key", Method::POST, "/v1/keys/nokey/revoke", None),
            Some(Scope::Admin),
            404,
        ),
        (
            call("rotate key", Method::POST, "/v1/keys/nokey/rotate", None),
            Some(Scope::Admin),
            404,
        ),
        (
            call("usage", Method::GET, "/v1/usage", None),
            Some(Scope::Admin),
            200,
        ),
        (
            call("metrics", Method::GET, "/metrics", None),
            Some(Scope::Admin),
            200,
        ),
        (call("healthz", Method::GET, "/healthz", None), None, 200),
        (call("readyz", Method::GET, "/readyz", None), None, 200),
        (
            call("openapi", Method::GET, "/openapi.json", None),
            None,
            200,
        ),
    ]
}

/// The states a credential can be in, each with the credential of a key of
/// `scope` in that state, and whether it should pass authentication
/// (`None`) or the status it is refused with.
async fn credentials(server: &Server, scope: Scope) -> Vec<(&'static str, Presented, Option<u16>)> {
    let spec = KeySpec::new(format!("{scope} key"), Scopes::from_iter([scope]));
    let (_, valid) = server.key(&spec).await;

    let expired = {
        let spec = KeySpec {
            expires_in: Some(Duration::from_secs(60)),
            ..spec.clone()
        };
        let issued = spec.issue(now() - 3600).expect("issue");
        server
            .store
            .insert_key(&issued.record)
            .await
            .expect("insert");
        issued.key.expose_secret().to_owned()
    };

    let (revoked_id, revoked) = server.key(&spec).await;
    server
        .store
        .revoke_key(&revoked_id, now())
        .await
        .expect("revoke");

    let rotated = |grace: i64| {
        let spec = spec.clone();
        async move {
            let (id, key) = server.key(&spec).await;
            let successor = spec.issue(now()).expect("issue").record;
            server
                .store
                .rotate_key(&id, &successor, now() + grace)
                .await
                .expect("rotate");
            key
        }
    };
    let within_grace = rotated(3600).await;
    let after_grace = rotated(-1).await;

    let (_, elsewhere) = server
        .key(&KeySpec {
            allow_ips: vec![parse_ip_block("10.0.0.0/8").expect("block")],
            ..spec.clone()
        })
        .await;
    let wrong_ip = Presented {
        forwarded_for: Some("203.0.113.7".into()),
        ..bearer(&elsewhere)
    };
    let right_ip = Presented {
        forwarded_for: Some("10.1.2.3".into()),
        ..bearer(&elsewhere)
    };

    vec![
        ("valid", bearer(&valid), None),
        ("missing", Presented::default(), Some(401)),
        ("malformed", bearer("gnd_not_a_real_key"), Some(401)),
        ("not a key", bearer("hunter2"), Some(401)),
        (
            "wrong secret",
            bearer(&format!("{}x", &valid[..valid.len() - 1])),
            Some(401),
        ),
        ("expired", bearer(&expired), Some(401)),
        ("revoked", bearer(&revoked), Some(401)),
        ("rotated, within grace", bearer(&within_grace), None),
        ("rotated, after grace", bearer(&after_grace), Some(401)),
        ("wrong address", wrong_ip, Some(403)),
        ("allowed address via trusted proxy", right_ip, None),
    ]
}

/// Uploads the two collections' documents with an unrestricted key.
async fn seed(server: &Server) -> String {
    let (_, ingest) = server.key(&KeySpec::new("seed", scopes("ingest"))).await;
    for (collection, path, text) in [
        ("alpha", "book/ownership.md", ALPHA_DOC),
        ("beta", BETA_PATH, BETA_DOC),
    ] {
        let upload = call(
            "seed",
            reqwest::Method::POST,
            "/v1/documents",
            Some(json!({"path": path, "text": text, "collection": collection})),
        );
        let (status, body) = server.call(&upload, &ingest).await;
        assert_eq!(status, 201, "{body}");
    }
    ingest
}

#[tokio::test]
async fn every_route_answers_every_credential_state_of_every_scope_as_expected() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir, embedder, generous(), None).await;
    seed(&server).await;

    let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = 0;
    for scope in [Scope::Search, Scope::Answer, Scope::Ingest, Scope::Admin] {
        for (state, presented, refused_with) in credentials(&server, scope).await {
            for (route, needs, success) in routes() {
                let expected = match (needs, refused_with) {
                    (None, _) => success,
                    (Some(_), Some(status)) => status,
                    (Some(needs), None) if needs == scope => success,
                    (Some(_), None) => 403,
                };
                let (mut status, body, headers) = server.send(&route, &presented).await;
                if route.name == "upload" && status == 200 && expected == 201 {
                    status = 201; // the same upload again: unchanged
                }
                assert_eq!(
                    status, expected,
                    "{} with a {scope} key, {state}: {body}",
                    route.name
                );
                if status == 401 {
                    assert_eq!(
                        headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
                        Some("Bearer")
                    );
                }
                if needs.is_some() && expected != success {
                    assert!(body["error"]["code"].is_string(), "{body}");
                }
                table
                    .entry(format!("{scope:>6} key, {state}"))
                    .or_default()
                    .push(format!("{}={status}", route.name));
                checked += 1;
            }
        }
    }
    for (row, cells) in &table {
        eprintln!("{row}: {}", cells.join(" "));
    }
    eprintln!("{checked} requests checked");
    assert_eq!(checked, 4 * 11 * routes().len());
}

#[tokio::test]
async fn bearer_tokens_grant_their_scopes_and_bad_ones_are_refused() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir, embedder, generous(), Some(jwt_verifier().await)).await;
    seed(&server).await;

    let token = |scope: &str, exp: i64, secret: &[u8], alg: Algorithm| {
        let claims =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": exp, "scope": scope});
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret).expect("key"),
        )
        .expect("token")
    };
    let search = call(
        "search",
        reqwest::Method::POST,
        "/v1/search",
        Some(json!({"query": "owner"})),
    );
    let upload = call(
        "upload",
        reqwest::Method::POST,
        "/v1/documents",
        Some(json!({"path": "t.md", "text": "token upload"})),
    );

    let good = token("search answer", now() + 600, HS256_SECRET, Algorithm::HS256);
    assert_eq!(server.call(&search, &good).await.0, 200);
    let (status, body) = server.call(&upload, &good).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    let expired = token("search", now() - 600, HS256_SECRET, Algorithm::HS256);
    let (status, body) = server.call(&search, &expired).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_expired"))
    );

    let forged = token(
        "search",
        now() + 600,
        b"another secret of thirty-two bytes or more!",
        Algorithm::HS256,
    );
    assert_eq!(server.call(&search, &forged).await.0, 401);

    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now() + 600, "scope": "search admin"});
        format!("{header}.{}.", b64.encode(claims.to_string()))
    };
    assert_eq!(server.call(&search, &unsigned).await.0, 401);

    let usage = call(
        "usage",
        reqwest::Method::GET,
        "/v1/usage?key=jwt:alice",
        None,
    );
    let (_, admin) = server.key(&KeySpec::new("admin", scopes("admin"))).await;
    let (status, body) = server.call(&usage, &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0]["principal"], "jwt:alice", "{body}");
}

#[tokio::test]
async fn a_key_for_one_collection_learns_nothing_of_another() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir, embedder, generous(), None).await;
    seed(&server).await;
    let (_, admin) = server
        .key(&KeySpec::new("admin", scopes("admin,ingest")))
        .await;
    let beta_docs = call(
        "list",
        reqwest::Method::GET,
        "/v1/documents?collection=beta",
        None,
    );
    let (_, listed) = server.call(&beta_docs, &admin).await;
    let beta_id = listed["documents"][0]["id"]
        .as_str()
        .expect("beta document")
        .to_owned();

    let spec = KeySpec {
        collections: Some(vec!["alpha".into()]),
        ..KeySpec::new("alpha only", scopes("search,answer,ingest"))
    };
    let (_, alpha) = server.key(&spec).await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let delete = reqwest::Method::DELETE;

    // Every route that names beta answers as if beta did not exist: the
    // same status, code and message as for a collection that does not.
    let pairs = |collection: &str| {
        vec![
            call(
                "search",
                post.clone(),
                "/v1/search",
                Some(json!({"query": "zebracorn budget", "collection": collection})),
            ),
            call(
                "answer",
                post.clone(),
                "/v1/answer",
                Some(
                    json!({"question": "What is the zebracorn budget?", "collection": collection}),
                ),
            ),
            call(
                "list",
                get.clone(),
                &format!("/v1/documents?collection={collection}"),
                None,
            ),
            call(
                "delete",
                delete.clone(),
                &format!("/v1/documents/{beta_id}?collection={collection}"),
                None,
            ),
            call(
                "upload",
                post.clone(),
                "/v1/documents",
                Some(json!({"path": "x.md", "text": "planted", "collection": collection})),
            ),
        ]
    };
    for (hidden, absent) in pairs("beta").iter().zip(pairs("nosuchcollection")) {
        let (hidden_status, hidden_body) = server.call(hidden, &alpha).await;
        let (absent_status, absent_body) = server.call(&absent, &alpha).await;
        let normalize = |body: &Value, name: &str| body.to_string().replace(name, "C");
        assert_eq!(
            hidden_status, absent_status,
            "{}: {hidden_body} vs {absent_body}",
            hidden.name
        );
        if hidden.name != "upload" {
            assert_eq!(
                normalize(&hidden_body, "beta"),
                normalize(&absent_body, "nosuchcollection"),
                "{}",
                hidden.name
            );
        }
        assert!(
            hidden_status == 404 || hidden_body["documents"] == json!([]),
            "{}: {hidden_body}",
            hidden.name
        );
        let text = hidden_body.to_string();
        assert!(
            !text.contains("zebracorn") && !text.contains(BETA_PATH),
            "{}: {text}",
            hidden.name
        );
    }

    // Its own collection, searched by default, by filter, or by the beta
    // document's id, shows nothing of beta.
    for query in [
        json!({"query": "zebracorn budget secret merger"}),
        json!({"query": "zebracorn", "collection": "alpha", "filters": {"path": BETA_PATH}}),
        json!({"query": "zebracorn", "mode": "sparse"}),
    ] {
        let (status, body) = server
            .call(
                &call("search", post.clone(), "/v1/search", Some(query)),
                &alpha,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.to_string().contains("zebracorn"), "{body}");
    }
    let wrong_home = format!("/v1/documents/{beta_id}?collection=alpha");
    let (status, body) = server
        .call(&call("delete", delete.clone(), &wrong_home, None), &alpha)
        .await;
    assert_eq!(status, 404, "{body}");

    // Nor may it see keys or usage, which name collections and callers.
    for path in ["/v1/keys", "/v1/usage", "/metrics"] {
        let (status, _) = server
            .call(&call("admin", get.clone(), path, None), &alpha)
            .await;
        assert_eq!(status, 403, "{path}");
    }

    // Beta is untouched.
    let (_, listed) = server.call(&beta_docs, &admin).await;
    assert_eq!(
        listed["documents"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

#[tokio::test]
async fn rates_quotas_and_failed_authentications_are_limited_with_retry_after() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = AccessSettings {
        auth_failures_per_minute: 3,
        ..generous()
    };
    let server = start(&dir, embedder, settings, None).await;
    seed(&server).await;
    let search = |query: String| {
        call(
            "search",
            reqwest::Method::POST,
            "/v1/search",
            Some(json!({"query": query})),
        )
    };

    // A rate of three a minute: the fourth waits.
    let (_, slow) = server
        .key(&KeySpec {
            requests_per_minute: Some(3),
            ..KeySpec::new("slow", scopes("search"))
        })
        .await;
    for _ in 0..3 {
        assert_eq!(server.call(&search("owner".into()), &slow).await.0, 200);
    }
    let (status, body, headers) = server.send(&search("owner".into()), &bearer(&slow)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 requests a minute"), "{message}");

    // Another scheme than Bearer is named as such, and counts no failure.
    let basic = Presented {
        authorization: Some(format!("Basic {slow}")),
        forwarded_for: None,
    };
    let (status, body, _) = server.send(&search("owner".into()), &basic).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(status, 401);
    assert!(
        message.contains("unsupported authorization scheme") && !message.contains(&slow),
        "{message}"
    );

    // A quota of 1,000 tokens a day: long queries spend it, then 429.
    let (quota_id, frugal) = server
        .key(&KeySpec {
            tokens_per_day: Some(1000),
            ..KeySpec::new("frugal", scopes("search"))
        })
        .await;
    let long_query = "ownership borrowing lifetimes ".repeat(25);
    let mut served = 0;
    let refused = loop {
        let (status, body, headers) = server
            .send(&search(long_query.clone()), &bearer(&frugal))
            .await;
        if status != 200 {
            break (status, body, headers);
        }
        served += 1;
        assert!(served < 50, "the quota never ran out");
    };
    assert_eq!(
        (refused.0, refused.1["error"]["code"].as_str()),
        (429, Some("quota_exceeded"))
    );
    assert!(refused.2.contains_key("retry-after"));
    let spent = server
        .store
        .tokens_on_day(&quota_id, &grounded_server::access::today())
        .await
        .expect("ledger");
    assert!(spent >= 1000, "{spent}");
    eprintln!("quota of 1000 tokens spent after {served} searches: {spent} tokens");

    // Three failures a minute from one address, then even a good key waits.
    let (_, good) = server.key(&KeySpec::new("good", scopes("search"))).await;
    for _ in 0..3 {
        assert_eq!(server.call(&search("x".into()), "gnd_wrong").await.0, 401);
    }
    let (status, body) = server.call(&search("x".into()), "gnd_wrong").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_failures"))
    );
    assert_eq!(server.call(&search("x".into()), &good).await.0, 429);

    let audit = server.store.audit_events(0, 1000).await.expect("audit");
    let kinds: Vec<&str> = audit.iter().map(|event| event.kind.as_str()).collect();
    for kind in [
        "rate.exceeded",
        "quota.exceeded",
        "auth.failed",
        "auth.throttled",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(
        audit
            .iter()
            .all(|event| event.client.as_deref() == Some("127.0.0.1"))
    );
    for secret in [&slow, &frugal, &good] {
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(
            audit
                .iter()
                .all(|event| !event.detail.contains(secret_part))
        );
    }
}

#[tokio::test]
async fn a_revoked_key_stops_at_once_on_another_server_over_the_same_store() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let first = start(&dir, embedder.clone(), generous(), None).await;
    seed(&first).await;
    let other_index = tempfile::tempdir().expect("temp dir");
    let second = start_on(&dir, &other_index, embedder, generous(), None).await;

    let (_, admin) = first.key(&KeySpec::new("admin", scopes("admin"))).await;
    let (id, user) = first.key(&KeySpec::new("user", scopes("ingest"))).await;
    let list = call(
        "list",
        reqwest::Method::GET,
        "/v1/documents?collection=alpha",
        None,
    );
    let (status, body) = second.call(&list, &user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["documents"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    let revoke = call(
        "revoke",
        reqwest::Method::POST,
        &format!("/v1/keys/{id}/revoke"),
        None,
    );
    assert_eq!(first.call(&revoke, &admin).await.0, 204);
    let (status, body) = second.call(&list, &user).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("key_revoked"))
    );

    let audit = first.store.audit_events(0, 100).await.expect("audit");
    assert!(audit.iter().any(
        |event| event.kind == "key.revoked" && event.principal.as_deref() == Some(id.as_str())
    ));
}

#[tokio::test]
async fn without_keys_the_server_is_open_and_the_first_key_closes_it() {
    let Some(embedder) = embedder() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&dir, embedder, generous(), None).await;
    let search = call(
        "search",
        reqwest::Method::POST,
        "/v1/search",
        Some(json!({"query": "owner"})),
    );

    let (status, _, _) = server.send(&search, &Presented::default()).await;
    assert_ne!(status, 401, "open while no key exists");

    server.key(&KeySpec::new("first", scopes("search"))).await;
    tokio::time::sleep(grounded_server::access::KEY_CHECK_INTERVAL + Duration::from_millis(200))
        .await;
    let (status, _, _) = server.send(&search, &Presented::default()).await;
    assert_eq!(status, 401, "closed once a key exists");
}
