//! `grounded keys` and `grounded usage`, run as a user runs them, on the
//! SQLite store of a temporary data directory. These commands open the
//! store alone: every run points the embedding model at a directory that
//! does not exist, so a command that loaded it would fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use grounded_store::{AccessStore, AuditEvent, MetadataStore, SqliteStore, UsageRecord};
use serde_json::Value;

/// A temporary data directory.
struct Data {
    root: tempfile::TempDir,
    dir: PathBuf,
}

impl Data {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        Data { root, dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_grounded"))
            .args(args)
            .env("GROUNDED_DATA_DIR", &self.dir)
            .env("GROUNDED_MODEL_DIR", self.root.path().join("no-model-here"))
            .env("GROUNDED_MODEL_OFFLINE", "1")
            .env_remove("GROUNDED_DATABASE_URL")
            .env_remove("GROUNDED_QDRANT_URL")
            .env_remove("GROUNDED_PRICES")
            .output()
            .unwrap()
    }

    /// The standard output of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "grounded {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// The standard error of a run that must fail.
    fn failing(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        assert!(!output.status.success(), "grounded {args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// The store, opened by the test itself.
    async fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.dir.join("grounded.db"))
            .await
            .unwrap()
    }

    async fn audit_events(&self) -> Vec<AuditEvent> {
        let store = self.store().await;
        let events = store.audit_events(0, 100).await.unwrap();
        store.close().await;
        events
    }

    /// Every byte of every file in the data directory: the database and its
    /// write-ahead log.
    fn stored_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                bytes.extend(std::fs::read(&path).unwrap());
            }
        }
        bytes
    }
}

/// The one key a `create` or `rotate` printed, from its `key:` line.
fn printed_key(stdout: &str) -> String {
    let keys: Vec<&str> = stdout
        .split_whitespace()
        .filter(|word| word.starts_with("gnd_"))
        .collect();
    assert_eq!(keys.len(), 1, "{stdout}");
    assert!(stdout.contains(&format!("key: {}\n", keys[0])), "{stdout}");
    keys[0].to_owned()
}

/// The id part of a key: what follows `gnd_`, up to the next `_`.
fn id_of(key: &str) -> &str {
    &key[4..16]
}

/// The secret part of a key, between the id and the checksum.
fn secret_of(key: &str) -> &str {
    &key[17..key.len() - 6]
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The entry of `keys list --json` with this id.
fn listed(data: &Data, id: &str) -> Value {
    let keys = data.json(&["keys", "list", "--json"]);
    let keys = keys.as_array().unwrap();
    let key = keys.iter().find(|key| key["id"] == id);
    key.unwrap_or_else(|| panic!("{id} not in {keys:?}"))
        .clone()
}

fn create(data: &Data, name: &str) -> String {
    printed_key(&data.ok(&["keys", "create", "--name", name, "--scopes", "search"]))
}

#[tokio::test]
async fn a_created_key_is_printed_once_and_listed_without_its_secret() {
    let data = Data::new();

    let stdout = data.ok(&[
        "keys",
        "create",
        "--name",
        "ci",
        "--scopes",
        "search,answer",
        "--collections",
        "web,docs",
        "--expires",
        "90d",
        "--allow-ip",
        "10.1.2.3/8,192.0.2.7",
        "--requests-per-minute",
        "30",
        "--tokens-per-day",
        "10000",
    ]);

    let key = printed_key(&stdout);
    let id = id_of(&key);
    assert!(key.starts_with("gnd_") && key.len() == 66, "{key}");
    assert_eq!(stdout.matches(&key).count(), 1, "{stdout}");
    assert!(
        stdout.contains(&format!("created API key {id} (\"ci\")")),
        "{stdout}"
    );
    assert!(stdout.contains("will not be shown again"), "{stdout}");
    assert!(stdout.contains("answer,search"), "{stdout}");
    assert!(stdout.contains("docs,web"), "{stdout}");
    assert!(stdout.contains("(in 90.0 days)"), "{stdout}");

    let list = data.ok(&["keys", "list"]);
    let list_json = data.ok(&["keys", "list", "--json"]);
    let hash = grounded_auth::hash_secret(secret_of(&key));
    for shown in [&list, &list_json] {
        assert!(shown.contains(id), "{shown}");
        assert!(!shown.contains(secret_of(&key)), "{shown}");
        assert!(!shown.contains(&hash), "{shown}");
    }
    assert!(list.contains(&format!("{id}  \"ci\"  active")), "{list}");
    assert!(list.contains("collections: docs,web"), "{list}");
    assert!(list.contains("from: 10.0.0.0/8,192.0.2.7/32"), "{list}");
    assert!(
        list.contains("30 requests per minute, 10000 tokens per UTC day"),
        "{list}"
    );
    assert!(list.contains("last used never"), "{list}");

    let entry = listed(&data, id);
    assert_eq!(entry["state"], "active");
    assert_eq!(entry["scopes"], serde_json::json!(["answer", "search"]));
    assert_eq!(entry["tokens_per_day"], 10000);
    assert!(entry.get("secret_hash").is_none(), "{entry}");
    assert!(
        entry["expires_at"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );

    assert!(!contains(&data.stored_bytes(), secret_of(&key)));
    assert!(
        !data.dir.join("index").exists(),
        "the vector index was opened"
    );

    let events = data.audit_events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "key.created");
    assert_eq!(events[0].principal.as_deref(), Some(id));
    assert_eq!(events[0].client.as_deref(), Some("cli"));
    assert!(events[0].detail.contains("\"ci\""), "{:?}", events[0]);
    assert!(
        !events[0].detail.contains(secret_of(&key)),
        "{:?}",
        events[0]
    );
}

#[test]
fn create_json_holds_the_key_and_the_record() {
    let data = Data::new();

    let created = data.json(&[
        "keys", "create", "--name", "bot", "--scopes", "admin", "--json",
    ]);

    let key = created["key"].as_str().unwrap();
    assert_eq!(created["id"], id_of(key));
    assert_eq!(created["name"], "bot");
    assert_eq!(created["collections"], Value::Null);
    assert_eq!(created["expires_at"], Value::Null);
    assert_eq!(created["state"], "active");
    assert!(created.get("secret_hash").is_none(), "{created}");
}

#[tokio::test]
async fn a_revoked_key_is_listed_as_revoked() {
    let data = Data::new();
    let key = create(&data, "laptop");
    let id = id_of(&key);

    let stdout = data.ok(&["keys", "revoke", id]);

    assert!(
        stdout.contains(&format!("revoked API key {id}")),
        "{stdout}"
    );
    let list = data.ok(&["keys", "list"]);
    assert!(
        list.contains(&format!("{id}  \"laptop\"  revoked 2")),
        "{list}"
    );
    assert_eq!(listed(&data, id)["state"], "revoked");

    let again = data.ok(&["keys", "revoke", id]);
    assert!(again.contains("already revoked"), "{again}");
    let kinds: Vec<String> = data
        .audit_events()
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["key.created", "key.revoked"]);

    let stderr = data.failing(&["keys", "rotate", id]);
    assert!(
        stderr.contains(&format!("API key {id} is revoked")),
        "{stderr}"
    );
}

#[test]
fn a_whole_key_names_its_own_id_and_is_never_echoed() {
    let data = Data::new();
    let key = create(&data, "leaked");

    let stdout = data.ok(&["keys", "revoke", &key]);
    assert!(
        stdout.contains(&format!("revoked API key {}", id_of(&key))),
        "{stdout}"
    );
    assert!(!stdout.contains(secret_of(&key)), "{stdout}");

    let mangled = format!("{}0", &key[..key.len() - 1]);
    let stderr = data.failing(&["keys", "revoke", &mangled]);
    assert!(stderr.contains("is no valid key"), "{stderr}");
    assert!(!stderr.contains(secret_of(&key)), "{stderr}");
}

#[tokio::test]
async fn rotation_prints_a_new_key_and_the_old_works_until_the_end_of_grace() {
    let data = Data::new();
    let old_key = create(&data, "service");
    let old_id = id_of(&old_key);

    let rotated = data.json(&["keys", "rotate", old_id, "--grace", "2h", "--json"]);

    let new_key = rotated["key"].as_str().unwrap();
    let new_id = id_of(new_key);
    assert_ne!(new_key, old_key);
    assert_ne!(new_id, old_id);
    assert_eq!(rotated["id"], new_id);
    assert_eq!(rotated["rotated_from"], old_id);
    assert_eq!(rotated["name"], "service");
    let until = rotated["old_works_until"].as_str().unwrap();

    let old = listed(&data, old_id);
    assert_eq!(old["state"], "rotated");
    assert_eq!(old["rotated_to"], new_id);
    assert_eq!(old["expires_at"], until);
    assert_eq!(listed(&data, new_id)["state"], "active");
    let list = data.ok(&["keys", "list"]);
    let shown_until = until.replace('T', " ");
    assert!(
        list.contains(&format!("rotated → {new_id}, works until {shown_until}")),
        "{list}"
    );
    assert!(!list.contains(secret_of(new_key)), "{list}");

    let stderr = data.failing(&["keys", "rotate", old_id]);
    assert!(
        stderr.contains(&format!("rotate {new_id} instead")),
        "{stderr}"
    );

    let events = data.audit_events().await;
    let rotation = events.iter().find(|e| e.kind == "key.rotated").unwrap();
    assert_eq!(rotation.principal.as_deref(), Some(old_id));
    assert!(rotation.detail.contains(old_id) && rotation.detail.contains(new_id));
}

#[test]
fn rotation_prints_the_new_key_once_for_people() {
    let data = Data::new();
    let old_id = id_of(&create(&data, "service")).to_owned();

    let stdout = data.ok(&["keys", "rotate", &old_id, "--grace", "0s"]);

    let new_key = printed_key(&stdout);
    assert!(stdout.contains(&format!("rotated API key {old_id} to {}", id_of(&new_key))));
    assert!(
        stdout.contains(&format!("{old_id} works until ")),
        "{stdout}"
    );
    assert!(stdout.contains("will not be shown again"), "{stdout}");
    let list = data.ok(&["keys", "list"]);
    assert!(list.contains(", stopped working "), "{list}");
}

#[test]
fn bad_input_is_refused_naming_the_input_and_the_problem() {
    let data = Data::new();
    // A key named `ci` with the search scope, unless `extra` says otherwise.
    let create = |extra: &[&str]| {
        let mut args = vec!["keys", "create"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--name") {
            args.extend(["--name", "ci"]);
        }
        if !extra.contains(&"--scopes") {
            args.extend(["--scopes", "search"]);
        }
        data.failing(&args)
    };

    let stderr = create(&["--scopes", "search,delete"]);
    assert!(stderr.contains("unknown scope \"delete\""), "{stderr}");
    let stderr = create(&["--scopes", ","]);
    assert!(stderr.contains("at least one scope"), "{stderr}");
    let stderr = create(&["--name", "  "]);
    assert!(stderr.contains("name must not be empty"), "{stderr}");
    let stderr = create(&["--expires", "90x"]);
    assert!(stderr.contains("invalid duration \"90x\""), "{stderr}");
    let stderr = create(&["--allow-ip", "10.0.0.0/8,10.0.0.0/33"]);
    assert!(
        stderr.contains("invalid address block \"10.0.0.0/33\""),
        "{stderr}"
    );
    let stderr = create(&["--collections", "docs,bad name!"]);
    assert!(
        stderr.contains("invalid collection name \"bad name!\""),
        "{stderr}"
    );
    let stderr = create(&["--requests-per-minute", "0"]);
    assert!(stderr.contains("--requests-per-minute"), "{stderr}");

    let stderr = data.failing(&["keys", "revoke", "nosuchkey"]);
    assert!(stderr.contains("no API key \"nosuchkey\""), "{stderr}");
    let stderr = data.failing(&["keys", "rotate", "nosuchkey"]);
    assert!(stderr.contains("no API key \"nosuchkey\""), "{stderr}");
    let stderr = data.failing(&["keys", "rotate", "nosuchkey", "--grace", "1w"]);
    assert!(stderr.contains("invalid duration \"1w\""), "{stderr}");

    let stderr = data.failing(&["usage", "--since", "2025-13-01"]);
    assert!(stderr.contains("\"2025-13-01\" is not a day"), "{stderr}");
    let stderr = data.failing(&["usage", "--since", "yesterday"]);
    assert!(stderr.contains("expected YYYY-MM-DD"), "{stderr}");

    let list = data.ok(&["keys", "list"]);
    assert!(list.starts_with("no API keys in "), "{list}");
}

#[test]
fn usage_of_an_empty_ledger_says_none_was_recorded() {
    let data = Data::new();

    let stdout = data.ok(&["usage"]);
    assert!(stdout.starts_with("no usage recorded in "), "{stdout}");
    let stdout = data.ok(&["usage", "--key", "abcdefghijkl", "--since", "2025-02-28"]);
    assert!(stdout.starts_with("no usage recorded for abcdefghijkl since 2025-02-28"));

    let report = data.json(&["usage", "--json"]);
    assert_eq!(report["rows"], serde_json::json!([]));
    assert_eq!(report["totals"]["requests"], 0);
    assert_eq!(report["totals"]["cost_usd"], 0.0);
    assert!(
        !data.dir.join("index").exists(),
        "the vector index was opened"
    );
}

fn usage(principal: &str, day: &str, model: &str, prompt: u64, embedding: u64) -> UsageRecord {
    UsageRecord {
        principal: principal.to_owned(),
        route: "/v1/answer".to_owned(),
        model: model.to_owned(),
        day: day.to_owned(),
        requests: 1,
        prompt_tokens: prompt,
        completion_tokens: 0,
        embedding_tokens: embedding,
    }
}

async fn record_usage(data: &Data, rows: &[UsageRecord]) {
    let store = data.store().await;
    for row in rows {
        store.record_usage(row).await.unwrap();
    }
    store.close().await;
}

fn write_prices(dir: &Path, text: &str) -> String {
    let path = dir.join("prices.json");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn usage_is_priced_filtered_and_totalled() {
    let data = Data::new();
    data.ok(&["keys", "list"]);
    record_usage(
        &data,
        &[
            usage("aaaaaaaaaaaa", "2025-01-30", "gpt-4o-mini", 2_000_000, 0),
            usage("aaaaaaaaaaaa", "2025-01-31", "mystery-model", 1_000, 0),
            usage(
                "bbbbbbbbbbbb",
                "2025-01-31",
                "text-embedding-3-small",
                0,
                1_000_000,
            ),
        ],
    )
    .await;

    let report = data.json(&["usage", "--json"]);
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);
    assert_eq!(report["totals"]["requests"], 3);
    let cost = report["totals"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.32).abs() < 1e-9, "{report}");
    assert_eq!(
        report["unpriced_models"],
        serde_json::json!(["mystery-model"])
    );

    let table = data.ok(&["usage", "--key", "aaaaaaaaaaaa", "--since", "2025-01-31"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("day "), "{table}");
    assert!(lines[1].starts_with("2025-01-31  aaaaaaaaaaaa  /v1/answer  mystery-model"));
    assert!(lines[2].starts_with("total"), "{table}");
    assert!(table.contains("no price for: mystery-model"), "{table}");
    assert!(!table.contains("bbbbbbbbbbbb"), "{table}");

    let prices = write_prices(data.root.path(), r#"{"gpt-4o-mini": {"prompt": 1.0}}"#);
    let report = data.json(&[
        "usage",
        "--json",
        "--since",
        "2025-01-30",
        "--prices",
        &prices,
    ]);
    let cost = report["totals"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 2.02).abs() < 1e-9, "{report}");

    let bad = write_prices(data.root.path(), r#"{"gpt-4o-mini": {"prompt": -1}}"#);
    let stderr = data.failing(&["usage", "--prices", &bad]);
    assert!(
        stderr.contains(&format!("invalid price table {bad}")),
        "{stderr}"
    );
    assert!(stderr.contains("must be 0 or more"), "{stderr}");
}
