//! The access store's contract (API keys, the usage ledger, the audit log
//! and the prompt log), checked on both backends as `store.rs` checks the
//! rest: a SQLite file, and a scratch database on the Postgres server that
//! `GROUNDED_TEST_DATABASE_URL` names (skipped, with a message, where it is
//! unset). Each test reaches the store as an `Arc<dyn AccessStore>` upcast
//! from an `Arc<dyn MetadataStore>`, as the server holds it. Then upgrades
//! of databases made before these tables existed.

use std::path::Path;
use std::sync::Arc;

use grounded_store::scratch::{ScratchDatabase, test_server_url};
use grounded_store::{
    AccessStore, ApiKeyRecord, AuditEvent, MetadataStore, PostgresStore, PromptLogEntry,
    SqliteStore, StoreError, UsageRecord,
};

fn key(id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("key {id}"),
        secret_hash: format!("{id:0>64}"),
        scopes: vec!["answer".into(), "search".into()],
        collections: None,
        allow_ips: Vec::new(),
        requests_per_minute: None,
        tokens_per_day: None,
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        rotated_to: None,
    }
}

/// A key with every optional field set, to values that would show any
/// truncation or reordering.
fn full_key(id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        scopes: vec!["admin".into(), "ingest".into(), "search".into()],
        collections: Some(vec![
            "b, with comma".into(),
            "a \"quoted\"".into(),
            "".into(),
        ]),
        allow_ips: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        requests_per_minute: Some(u32::MAX),
        tokens_per_day: Some(i64::MAX as u64),
        expires_at: Some(-5),
        revoked_at: Some(i64::MAX),
        last_used_at: Some(i64::MIN),
        rotated_to: Some("successor".into()),
        ..key(id, created_at)
    }
}

fn usage(principal: &str, route: &str, day: &str, requests: u64, tokens: u64) -> UsageRecord {
    UsageRecord {
        principal: principal.into(),
        route: route.into(),
        model: "model".into(),
        day: day.into(),
        requests,
        prompt_tokens: tokens,
        completion_tokens: 2 * tokens,
        embedding_tokens: 3 * tokens,
    }
}

fn audit(at: i64, kind: &str) -> AuditEvent {
    AuditEvent {
        at,
        kind: kind.into(),
        principal: Some("k1".into()),
        client: None,
        detail: format!("{kind} at {at}"),
    }
}

fn prompt(at: i64, text: &str) -> PromptLogEntry {
    PromptLogEntry {
        at,
        principal: "k1".into(),
        route: "/v1/answer".into(),
        prompt: text.into(),
        answer: format!("answer to {text}"),
    }
}

async fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("grounded.db"))
        .await
        .unwrap();
    (dir, store)
}

async fn scratch_database(test: &str) -> Option<ScratchDatabase> {
    let server = test_server_url(test)?;
    Some(ScratchDatabase::create(&server).await.unwrap())
}

/// The store as access control holds it: through the metadata store.
fn as_access_store(store: Arc<dyn MetadataStore>) -> Arc<dyn AccessStore> {
    store
}

/// Runs each named contract test once on SQLite and once on Postgres.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, store) = super::sqlite_store().await;
                    let store: std::sync::Arc<dyn super::MetadataStore> =
                        std::sync::Arc::new(store);
                    super::$name(super::as_access_store(store.clone())).await;
                    store.close().await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let test = concat!("on_postgres::", stringify!($name));
                    let Some(database) = super::scratch_database(test).await else {
                        return;
                    };
                    let store = super::PostgresStore::open(database.url()).await.unwrap();
                    let store: std::sync::Arc<dyn super::MetadataStore> =
                        std::sync::Arc::new(store);
                    super::$name(super::as_access_store(store.clone())).await;
                    store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    keys_keep_every_field_and_list_oldest_first,
    a_taken_key_id_is_a_conflict,
    only_keys_neither_revoked_nor_expired_are_active,
    revoking_twice_keeps_the_first_time,
    rotation_stores_the_successor_and_ends_the_old_key,
    a_failed_rotation_writes_nothing,
    touching_a_key_keeps_its_latest_use,
    usage_adds_up_and_filters_by_principal_and_day,
    tokens_on_day_count_every_route_and_model,
    concurrent_usage_records_lose_nothing,
    counts_beyond_the_database_range_are_refused,
    audit_events_come_oldest_first_within_the_limit,
    prompts_come_oldest_first_and_purge_by_age,
);

async fn keys_keep_every_field_and_list_oldest_first(store: Arc<dyn AccessStore>) {
    let full = full_key("full", 20);
    let plain = key("plain", 10);
    let mut empty_lists = key("empty", 30);
    empty_lists.scopes.clear();
    empty_lists.collections = Some(Vec::new());
    let same_time = key("aaa", 20);
    for key in [&full, &plain, &empty_lists, &same_time] {
        store.insert_key(key).await.unwrap();
    }

    assert_eq!(store.find_key("full").await.unwrap(), Some(full.clone()));
    assert_eq!(store.find_key("plain").await.unwrap(), Some(plain.clone()));
    assert_eq!(
        store.find_key("empty").await.unwrap(),
        Some(empty_lists.clone()),
        "no collections and every collection are different keys"
    );
    assert_eq!(store.find_key("nobody").await.unwrap(), None);

    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed, [plain, same_time, full, empty_lists]);
}

async fn a_taken_key_id_is_a_conflict(store: Arc<dyn AccessStore>) {
    let first = key("k1", 10);
    store.insert_key(&first).await.unwrap();

    let mut second = full_key("k1", 20);
    second.secret_hash = "f".repeat(64);
    let error = store.insert_key(&second).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { what } if what.contains("k1")),
        "{error}"
    );
    assert_eq!(store.find_key("k1").await.unwrap(), Some(first));
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}

async fn only_keys_neither_revoked_nor_expired_are_active(store: Arc<dyn AccessStore>) {
    let now = 1_000;
    assert!(!store.has_active_keys(now).await.unwrap(), "no keys at all");

    let revoked = ApiKeyRecord {
        revoked_at: Some(now - 1),
        ..key("revoked", 1)
    };
    let expired = ApiKeyRecord {
        expires_at: Some(now - 1),
        ..key("expired", 2)
    };
    let revoked_later = ApiKeyRecord {
        revoked_at: Some(now + 100),
        expires_at: Some(now + 100),
        ..key("revoked-later", 3)
    };
    for key in [&revoked, &expired, &revoked_later] {
        store.insert_key(key).await.unwrap();
    }
    assert!(
        !store.has_active_keys(now).await.unwrap(),
        "a revoked or expired key counted as active"
    );

    let expiring = ApiKeyRecord {
        expires_at: Some(now + 1),
        ..key("expiring", 4)
    };
    store.insert_key(&expiring).await.unwrap();
    assert!(
        store.has_active_keys(now).await.unwrap(),
        "works until its expiry"
    );
    assert!(
        !store.has_active_keys(now + 1).await.unwrap(),
        "expired at its expiry"
    );

    store.insert_key(&key("forever", 5)).await.unwrap();
    assert!(store.has_active_keys(i64::MAX).await.unwrap());
}

async fn revoking_twice_keeps_the_first_time(store: Arc<dyn AccessStore>) {
    store.insert_key(&key("k1", 10)).await.unwrap();
    store.insert_key(&key("k2", 10)).await.unwrap();

    assert!(store.revoke_key("k1", 100).await.unwrap());
    assert!(
        store.revoke_key("k1", 200).await.unwrap(),
        "still a known key"
    );
    assert!(!store.revoke_key("nobody", 100).await.unwrap());

    let revoked = store.find_key("k1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(100));
    assert_eq!(
        store.find_key("k2").await.unwrap().unwrap().revoked_at,
        None,
        "another key was revoked"
    );
    assert!(store.find_key("nobody").await.unwrap().is_none());
}

async fn rotation_stores_the_successor_and_ends_the_old_key(store: Arc<dyn AccessStore>) {
    let old = key("old", 10);
    store.insert_key(&old).await.unwrap();
    let successor = full_key("new", 50);

    assert!(store.rotate_key("old", &successor, 500).await.unwrap());
    assert_eq!(store.find_key("new").await.unwrap(), Some(successor));
    let ended = store.find_key("old").await.unwrap().unwrap();
    assert_eq!(ended.expires_at, Some(500));
    assert_eq!(ended.rotated_to.as_deref(), Some("new"));
    assert_eq!(
        ApiKeyRecord {
            expires_at: None,
            rotated_to: None,
            ..ended
        },
        old,
        "rotation changed more than expiry and successor"
    );

    let soon = ApiKeyRecord {
        expires_at: Some(100),
        ..key("soon", 20)
    };
    store.insert_key(&soon).await.unwrap();
    assert!(
        store
            .rotate_key("soon", &key("later", 60), 500)
            .await
            .unwrap()
    );
    let soon = store.find_key("soon").await.unwrap().unwrap();
    assert_eq!(soon.expires_at, Some(100), "rotation extended a key's life");
    assert_eq!(soon.rotated_to.as_deref(), Some("later"));
}

async fn a_failed_rotation_writes_nothing(store: Arc<dyn AccessStore>) {
    let old = key("old", 10);
    store.insert_key(&old).await.unwrap();

    let orphan = key("orphan", 20);
    assert!(!store.rotate_key("nobody", &orphan, 500).await.unwrap());
    assert_eq!(
        store.find_key("orphan").await.unwrap(),
        None,
        "the successor of an unknown key was stored"
    );

    // A successor whose id is taken fails after the old key's update: the
    // transaction must take that update back.
    let error = store
        .rotate_key("old", &key("old", 30), 500)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error}");
    assert_eq!(store.find_key("old").await.unwrap(), Some(old.clone()));
    assert_eq!(store.list_keys().await.unwrap(), [old]);
}

async fn touching_a_key_keeps_its_latest_use(store: Arc<dyn AccessStore>) {
    store.insert_key(&key("k1", 10)).await.unwrap();

    store.touch_key("k1", 50).await.unwrap();
    assert_eq!(
        store.find_key("k1").await.unwrap().unwrap().last_used_at,
        Some(50)
    );
    store.touch_key("k1", 40).await.unwrap();
    assert_eq!(
        store.find_key("k1").await.unwrap().unwrap().last_used_at,
        Some(50),
        "an earlier use, recorded late, went back in time"
    );
    store.touch_key("k1", 60).await.unwrap();
    assert_eq!(
        store.find_key("k1").await.unwrap().unwrap().last_used_at,
        Some(60)
    );

    store.touch_key("nobody", 60).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}

async fn usage_adds_up_and_filters_by_principal_and_day(store: Arc<dyn AccessStore>) {
    let records = [
        usage("k2", "/v1/search", "2024-03-02", 1, 10),
        usage("k1", "/v1/answer", "2024-03-02", 1, 5),
        usage("k1", "/v1/answer", "2024-03-01", 1, 7),
        usage("k1", "/v1/answer", "2024-03-02", 2, 1),
        usage("k1", "/v1/search", "2024-03-02", 1, 0),
    ];
    for record in &records {
        store.record_usage(record).await.unwrap();
    }

    let all = store.usage(None, None).await.unwrap();
    let summed = usage("k1", "/v1/answer", "2024-03-02", 3, 6);
    let expected = [
        records[2].clone(),
        summed.clone(),
        records[4].clone(),
        records[0].clone(),
    ];
    assert_eq!(all, expected, "rows by day, principal, route and model");
    assert_eq!(all[1].tokens(), 36);

    let k1 = store.usage(Some("k1"), None).await.unwrap();
    assert_eq!(k1, expected[..3]);
    let recent = store.usage(None, Some("2024-03-02")).await.unwrap();
    assert_eq!(recent, expected[1..]);
    let both = store.usage(Some("k2"), Some("2024-03-02")).await.unwrap();
    assert_eq!(both, [records[0].clone()]);
    assert!(
        store
            .usage(None, Some("2024-03-03"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.usage(Some("k3"), None).await.unwrap().is_empty());
}

async fn tokens_on_day_count_every_route_and_model(store: Arc<dyn AccessStore>) {
    let mut other_model = usage("k1", "/v1/answer", "2024-03-02", 1, 2);
    other_model.model = "another".into();
    let records = [
        usage("k1", "/v1/answer", "2024-03-02", 1, 1),
        other_model,
        usage("k1", "/v1/search", "2024-03-02", 1, 4),
        usage("k1", "/v1/search", "2024-03-01", 1, 100),
        usage("k2", "/v1/search", "2024-03-02", 1, 100),
    ];
    for record in &records {
        store.record_usage(record).await.unwrap();
    }

    // Each record counts 6 tokens per unit: prompt 1, completion 2, embedding 3.
    assert_eq!(
        store.tokens_on_day("k1", "2024-03-02").await.unwrap(),
        6 * 7
    );
    assert_eq!(store.tokens_on_day("k1", "2024-03-01").await.unwrap(), 600);
    assert_eq!(store.tokens_on_day("k1", "2024-03-03").await.unwrap(), 0);
    assert_eq!(
        store.tokens_on_day("nobody", "2024-03-02").await.unwrap(),
        0
    );
}

async fn concurrent_usage_records_lose_nothing(store: Arc<dyn AccessStore>) {
    let (tasks, each) = (8, 25);
    let writers: Vec<_> = (0..tasks)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    let record = usage("k1", "/v1/answer", "2024-03-02", 1, 1);
                    store.record_usage(&record).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let total = tasks * each;
    let rows = store.usage(Some("k1"), None).await.unwrap();
    assert_eq!(
        rows,
        [usage("k1", "/v1/answer", "2024-03-02", total, total)]
    );
}

async fn counts_beyond_the_database_range_are_refused(store: Arc<dyn AccessStore>) {
    let huge = ApiKeyRecord {
        tokens_per_day: Some(u64::MAX),
        ..key("huge", 10)
    };
    let error = store.insert_key(&huge).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::OutOfRange {
                column: "api_keys.tokens_per_day",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.find_key("huge").await.unwrap(), None);

    let record = usage("k1", "/v1/answer", "2024-03-02", u64::MAX, 1);
    let error = store.record_usage(&record).await.unwrap_err();
    assert!(matches!(error, StoreError::OutOfRange { .. }), "{error}");
    assert!(store.usage(None, None).await.unwrap().is_empty());
}

async fn audit_events_come_oldest_first_within_the_limit(store: Arc<dyn AccessStore>) {
    let events = [
        audit(30, "key.revoked"),
        audit(10, "key.created"),
        AuditEvent {
            principal: None,
            client: Some("203.0.113.7".into()),
            ..audit(20, "auth.failed")
        },
        audit(20, "rate.exceeded"),
    ];
    for event in &events {
        store.record_audit(event).await.unwrap();
    }

    let all = store.audit_events(0, 100).await.unwrap();
    let in_order = [
        events[1].clone(),
        events[2].clone(),
        events[3].clone(),
        events[0].clone(),
    ];
    assert_eq!(all, in_order, "by time, then in the order written");
    assert_eq!(store.audit_events(20, 100).await.unwrap(), in_order[1..]);
    assert_eq!(store.audit_events(0, 2).await.unwrap(), in_order[..2]);
    assert!(store.audit_events(31, 100).await.unwrap().is_empty());
    assert!(store.audit_events(0, 0).await.unwrap().is_empty());
}

async fn prompts_come_oldest_first_and_purge_by_age(store: Arc<dyn AccessStore>) {
    let entries = [
        prompt(300, "third"),
        prompt(100, "first"),
        prompt(200, "second"),
        prompt(200, "second again"),
    ];
    for entry in &entries {
        store.record_prompt(entry).await.unwrap();
    }

    let in_order = [
        entries[1].clone(),
        entries[2].clone(),
        entries[3].clone(),
        entries[0].clone(),
    ];
    assert_eq!(store.prompts(0).await.unwrap(), in_order);
    assert_eq!(store.prompts(200).await.unwrap(), in_order[1..]);

    assert_eq!(
        store.purge_prompts(100).await.unwrap(),
        0,
        "nothing is older"
    );
    assert_eq!(store.purge_prompts(201).await.unwrap(), 3);
    assert_eq!(store.prompts(0).await.unwrap(), in_order[3..]);
    assert_eq!(store.purge_prompts(201).await.unwrap(), 0);
}

/// The migrations of `backend` up to `version`, copied into a directory a
/// runtime migrator reads: the schema an older build of grounded left.
fn migrations_up_to(backend: &str, version: i64) -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= version {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    copy
}

#[tokio::test]
async fn a_sqlite_database_of_the_previous_schema_gains_the_access_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grounded.db");
    let older = migrations_up_to("sqlite", 2);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(older.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO documents (id, collection, source_path, kind, content_hash, state) \
             VALUES ('00000000-0000-0000-0000-000000000001', 'books', 'a.md', 'markdown', '', \
             'ready')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version(), 3);
    assert_eq!(
        store.list_documents("books").await.unwrap().len(),
        1,
        "documents kept"
    );
    store.insert_key(&key("k1", 10)).await.unwrap();
    assert!(store.has_active_keys(10).await.unwrap());
    store.close().await;
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_schema_gains_the_access_tables() {
    let Some(database) = scratch_database("postgres_previous_schema").await else {
        return;
    };
    let older = migrations_up_to("postgres", 1);
    {
        let pool = sqlx::PgPool::connect(database.url()).await.unwrap();
        sqlx::migrate::Migrator::new(older.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    let store = PostgresStore::open(database.url()).await.unwrap();
    assert_eq!(store.schema_version(), 2);
    store.insert_key(&key("k1", 10)).await.unwrap();
    assert!(store.has_active_keys(10).await.unwrap());
    store.close().await;
}
