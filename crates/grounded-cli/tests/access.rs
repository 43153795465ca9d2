//! Access control through the real binary: a whole session with API keys,
//! bearer tokens, a provider key and prompt logging on, after which no log
//! line, response, listing or stored row holds any of the secrets; a daily
//! token quota that is refused once spent and shows in `grounded usage`;
//! and an open server kept to loopback.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use grounded_standin::{StandIn, StandInConfig};
use serde_json::{Value, json};

const PROVIDER_KEY: &str = "sk-proj-Zq7providerSecret0123456789abcdefXYZ";
const JWT_SECRET: &str = "hs256-shared-secret-of-the-session-test-0123456789";
const ISSUER: &str = "https://login.example.test";
const AUDIENCE: &str = "grounded";

const NOTES: &str = "# Retries\n\nWe retry 429 and 5xx responses with exponential backoff and \
full jitter. A request is retried at most four times.\n";

/// `grounded ARGS` on the data directory `data`.
fn grounded(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grounded"));
    command
        .args(args)
        .env("GROUNDED_DATA_DIR", data)
        .env_remove("GROUNDED_DATABASE_URL")
        .env_remove("GROUNDED_COLLECTION");
    command
}

/// Runs a command to success; its stdout and stderr.
fn run(mut command: Command) -> (String, String) {
    let output = command.output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// Creates a key with `args`; its id and the key.
fn create_key(data: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["keys", "create", "--json"];
    all.extend_from_slice(args);
    let (stdout, _) = run(grounded(data, &all));
    let created: Value = serde_json::from_str(&stdout).expect("json");
    (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

/// A running `grounded serve`, its output collected as it comes.
struct Serve {
    child: Child,
    base: String,
    output: Arc<Mutex<String>>,
}

impl Serve {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let output = Arc::new(Mutex::new(String::new()));

        let mut stdout = child.stdout.take().expect("stdout");
        let collected = output.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            collected.lock().unwrap().push_str(&text);
        });

        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let base = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "serve ended before listening"
            );
            output.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("serving on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let collected = output.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            collected.lock().unwrap().push_str(&rest);
        });
        Self {
            child,
            base,
            output,
        }
    }

    /// Stops the server with SIGTERM; everything it wrote.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("serve stops");
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.output.lock().unwrap().clone()
    }
}

/// Every request and response of the session, as text.
#[derive(Default)]
struct Transcript {
    text: String,
}

impl Transcript {
    async fn send(
        &mut self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let request = request.build().expect("request");
        let response = client.execute(request).await.expect("response");
        let status = response.status().as_u16();
        for (name, value) in response.headers() {
            self.text
                .push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
        }
        let body = response.text().await.expect("body");
        self.text.push_str(&body);
        self.text.push('\n');
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }
}

fn token(scope: &str, exp_from_now: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": now + exp_from_now, "scope": scope});
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("key");
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("token")
}

fn embedding_model_available() -> bool {
    let cache_dir = grounded_core::default_cache_dir();
    match grounded_embed::resolve_model_files(None, &cache_dir) {
        Ok(_) => true,
        Err(error) => {
            eprintln!("skipped: the embedding model cannot be obtained here: {error}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_session_leaves_no_secret_in_any_log_response_or_row() {
    if !embedding_model_available() {
        return;
    }
    let standin = StandIn::start(StandInConfig {
        api_key: Some(PROVIDER_KEY.into()),
        ..StandInConfig::default()
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");

    let (app_id, app_key) = create_key(
        &data,
        &["--name", "app", "--scopes", "search,answer,ingest"],
    );
    let (_, admin_key) = create_key(&data, &["--name", "ops", "--scopes", "admin"]);

    let mut serve = grounded(
        &data,
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--llm",
            "openai",
            "--log-prompts",
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
        ],
    );
    serve
        .env("GROUNDED_LOG", "debug")
        .env("GROUNDED_JWT_HS256_SECRET", JWT_SECRET)
        .env("OPENAI_BASE_URL", standin.base_url())
        .env("OPENAI_API_KEY", PROVIDER_KEY);
    let server = Serve::start(serve);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let mut transcript = Transcript::default();
    let bearer = |key: &str| format!("Bearer {key}");

    let upload = client
        .post(format!("{base}/v1/documents"))
        .header("authorization", bearer(&app_key))
        .json(&json!({"path": "notes/retries.md", "text": NOTES}));
    assert_eq!(transcript.send(&client, upload).await.0, 201);

    let question = "How often is a request retried? Mail alice@example.com, card \
                    4111 1111 1111 1111, my key sk-live-abcdefABCDEF0123456789abcd";
    for stream in [false, true] {
        let answer = client
            .post(format!("{base}/v1/answer"))
            .header("authorization", bearer(&app_key))
            .json(&json!({"question": question, "stream": stream}));
        let (status, body) = transcript.send(&client, answer).await;
        assert_eq!(status, 200, "{body}");
    }
    let search = |authorization: String| {
        client
            .post(format!("{base}/v1/search"))
            .header("authorization", authorization)
            .json(&json!({"query": "retry backoff"}))
    };
    let jwt = token("search", 600);
    assert_eq!(transcript.send(&client, search(bearer(&jwt))).await.0, 200);
    let expired_jwt = token("search", -600);
    assert_eq!(
        transcript
            .send(&client, search(bearer(&expired_jwt)))
            .await
            .0,
        401
    );
    let wrong_secret = format!("{}Q", &app_key[..app_key.len() - 1]);
    assert_eq!(
        transcript
            .send(&client, search(bearer(&wrong_secret)))
            .await
            .0,
        401
    );
    assert_eq!(
        transcript
            .send(&client, search(format!("Basic {admin_key}")))
            .await
            .0,
        401
    );

    let rotate = client
        .post(format!("{base}/v1/keys/{app_id}/rotate"))
        .header("authorization", bearer(&admin_key))
        .json(&json!({"grace": "1h"}));
    let (status, rotated) = transcript.send(&client, rotate).await;
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["key"].as_str().expect("new key").to_owned();
    assert_eq!(
        transcript.send(&client, search(bearer(&new_key))).await.0,
        200
    );
    for path in ["/v1/keys", "/v1/usage", "/metrics", "/openapi.json"] {
        let get = client
            .get(format!("{base}{path}"))
            .header("authorization", bearer(&admin_key));
        assert_eq!(transcript.send(&client, get).await.0, 200, "{path}");
    }
    let (listed, _) = run(grounded(&data, &["keys", "list"]));
    let (revoked, _) = run(grounded(&data, &["keys", "revoke", &app_id]));
    assert_eq!(
        transcript.send(&client, search(bearer(&app_key))).await.0,
        401
    );
    let (usage, _) = run(grounded(&data, &["usage"]));
    let logs = server.stop();

    let store = grounded_store::SqliteStore::open(&data.join("grounded.db"))
        .await
        .unwrap();
    use grounded_store::access::AccessStore as _;
    let prompts = store.prompts(0).await.unwrap();
    let audit = store.audit_events(0, 10_000).await.unwrap();
    let rows = format!("{prompts:?}\n{audit:?}");
    assert!(prompts.len() >= 2, "the prompt log is on: {prompts:?}");
    assert!(
        prompts[0].prompt.contains("[email]") && prompts[0].prompt.contains("[card]"),
        "{prompts:?}"
    );
    assert!(
        logs.contains("authentication failed"),
        "the failures were logged:\n{logs}"
    );

    let everything = [
        ("the server's log", &logs),
        ("the responses", &transcript.text),
        ("keys list", &listed),
        ("keys revoke", &revoked),
        ("usage", &usage),
        ("the prompt log and audit rows", &rows),
    ];
    let secret_part = |key: &str| key.rsplit('_').next().unwrap()[..43].to_owned();
    let secrets = [
        ("the provider key", PROVIDER_KEY.to_owned()),
        ("the token secret", JWT_SECRET.to_owned()),
        ("the bearer token", jwt.clone()),
        ("the expired token", expired_jwt.clone()),
        ("the app key", secret_part(&app_key)),
        ("the admin key", secret_part(&admin_key)),
        ("the rotated key", secret_part(&new_key)),
        ("the wrong secret", secret_part(&wrong_secret)),
        ("the email in the question", "alice@example.com".to_owned()),
        ("the card in the question", "4111 1111 1111 1111".to_owned()),
        (
            "the key in the question",
            "sk-live-abcdefABCDEF0123456789abcd".to_owned(),
        ),
    ];
    let mut checked = 0;
    for (place, text) in everything {
        assert!(
            !text.is_empty() || place == "keys revoke",
            "{place} is empty"
        );
        for (what, secret) in &secrets {
            let allowed = place == "the responses"
                && (*what == "the rotated key" || what.ends_with("in the question"));
            if allowed {
                continue; // the rotation's response shows the new key, once; answers may quote the question
            }
            assert!(!text.contains(secret.as_str()), "{what} found in {place}");
            checked += 1;
        }
    }
    eprintln!(
        "{checked} secret checks over {} bytes of logs, {} of responses; {} prompt log rows, {} audit rows",
        logs.len(),
        transcript.text.len(),
        prompts.len(),
        audit.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_daily_quota_is_refused_and_usage_shows_the_spend() {
    if !embedding_model_available() {
        return;
    }
    let standin = StandIn::start(StandInConfig::default()).await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let (id, key) = create_key(
        &data,
        &[
            "--name",
            "frugal",
            "--scopes",
            "answer,ingest",
            "--tokens-per-day",
            "1000",
        ],
    );

    let mut serve = grounded(
        &data,
        &["serve", "--addr", "127.0.0.1:0", "--llm", "openai"],
    );
    serve
        .env("OPENAI_BASE_URL", standin.base_url())
        .env("OPENAI_API_KEY", "sk-standin");
    let server = Serve::start(serve);
    let client = reqwest::Client::new();
    let base = server.base.clone();

    let upload = client
        .post(format!("{base}/v1/documents"))
        .bearer_auth(&key)
        .json(&json!({"path": "notes/retries.md", "text": NOTES}))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status().as_u16(), 201);

    let mut answered = 0;
    let refused = loop {
        let response = client
            .post(format!("{base}/v1/answer"))
            .bearer_auth(&key)
            .json(&json!({"question": "How often is a request retried?"}))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() != 200 {
            break response;
        }
        answered += 1;
        assert!(answered < 100, "the quota never ran out");
    };
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    server.stop();

    let (stdout, _) = run(grounded(&data, &["usage", "--key", &id, "--json"]));
    let usage: Value = serde_json::from_str(&stdout).expect("json");
    let totals = &usage["totals"];
    let spent = ["prompt_tokens", "completion_tokens", "embedding_tokens"]
        .iter()
        .map(|field| totals[field].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(spent >= 1000, "{usage}");
    assert_eq!(totals["requests"].as_u64(), Some(answered + 1), "{usage}");

    let (table, _) = run(grounded(&data, &["usage", "--key", &id]));
    assert!(
        table.contains(&id) && table.contains("/v1/answer"),
        "{table}"
    );
    eprintln!("{answered} answers spent {spent} tokens of a 1000-token quota:\n{table}");
}

#[test]
fn without_authentication_serve_refuses_any_address_but_loopback() {
    if !embedding_model_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");

    let output = grounded(
        &data,
        &["serve", "--addr", "0.0.0.0:0", "--llm", "extractive"],
    )
    .output()
    .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an open server listened on 0.0.0.0"
    );
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("grounded keys create"),
        "{stderr}"
    );

    create_key(&data, &["--name", "app", "--scopes", "search"]);
    let server = Serve::start(grounded(
        &data,
        &["serve", "--addr", "0.0.0.0:0", "--llm", "extractive"],
    ));
    let logs = server.stop();
    assert!(!logs.contains("authentication is off"), "{logs}");
}
