//! `grounded keys create|list|revoke|rotate`: the API keys of the HTTP
//! service, managed in the store directly, so no server needs to run.
//!
//! A key's whole string is printed once, when it is created or rotated;
//! the store keeps only a hash of its secret, and nothing here prints the
//! hash or echoes a key given as an argument. Each change is appended to
//! the audit log with client `cli`. What a key may do, and when it stops
//! working, is decided by `grounded-auth`; this module only asks and shows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use grounded_auth::calendar::DAY_SECONDS;
use grounded_auth::key::{ApiKey, KEY_PREFIX, ParsedKey};
use grounded_auth::{Authenticator, IssuedKey, KeyError, KeySpec, unix_now, utc_time};
use grounded_store::{AccessStore, ApiKeyRecord, AuditEvent, MetadataStore};
use serde::Serialize;
use serde_json::json;

use crate::cli::{GlobalArgs, KeyCreateArgs, KeyRotateArgs, KeysCommand};
use crate::context::open_metadata_store;

/// The client the audit log names for changes made here.
const AUDIT_CLIENT: &str = "cli";

pub async fn run(global: &GlobalArgs, command: KeysCommand) -> anyhow::Result<()> {
    let store: Arc<dyn MetadataStore> = Arc::from(open_metadata_store(global).await?);
    let authenticator = Authenticator::new(store.clone());

    let result = match command {
        KeysCommand::Create(args) => create(&authenticator, args).await,
        KeysCommand::List { json } => list(store.as_ref(), json).await,
        KeysCommand::Revoke { id } => revoke(&authenticator, &id).await,
        KeysCommand::Rotate(args) => rotate(&authenticator, args).await,
    };
    store.close().await;
    result
}

/// Creates a key, records `key.created`, and prints the key once. The key
/// is printed even when the audit event could not be written, since it
/// exists from then on and could not be shown again.
async fn create(authenticator: &Authenticator, args: KeyCreateArgs) -> anyhow::Result<()> {
    let now = unix_now();
    let spec = KeySpec {
        collections: args.collections,
        expires_in: args.expires,
        allow_ips: args.allow_ips,
        requests_per_minute: args.requests_per_minute,
        tokens_per_day: args.tokens_per_day,
        ..KeySpec::new(args.name, args.scopes)
    };
    let IssuedKey { record, key } = authenticator.create_key(&spec, now).await?;

    let detail = json!({ "name": record.name, "scopes": record.scopes });
    let audit = record_audit(authenticator.store(), "key.created", &record.id, detail).await;

    if args.json {
        print_issued_json(&record, &key, now, json!({}));
    } else {
        println!("created API key {} ({:?})", record.id, record.name);
        print_issued(&record, &key, now);
    }
    audit.with_context(|| format!("API key {} was created, but", record.id))
}

/// Prints every key, oldest first.
async fn list(store: &dyn MetadataStore, json: bool) -> anyhow::Result<()> {
    let now = unix_now();
    let records = store.list_keys().await?;

    if json {
        let views: Vec<KeyView> = records.iter().map(|r| KeyView::new(r, now)).collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if records.is_empty() {
        println!(
            "no API keys in {}; `grounded keys create` makes one",
            store.location()
        );
    }
    for record in &records {
        print_listed(record, now);
    }
    Ok(())
}

/// Revokes a key and records `key.revoked`; a key revoked before is left
/// as it was.
async fn revoke(authenticator: &Authenticator, id: &str) -> anyhow::Result<()> {
    let now = unix_now();
    let id = key_id(id)?;
    let record = find_key(authenticator.store().as_ref(), &id).await?;
    if let Some(at) = record.revoked_at {
        println!("API key {id} was already revoked at {}", shown_time(at));
        return Ok(());
    }

    authenticator
        .revoke_key(&id, now)
        .await
        .map_err(|error| key_error(error, &id))?;
    let detail = json!({ "name": record.name });
    record_audit(authenticator.store(), "key.revoked", &id, detail).await?;

    println!(
        "revoked API key {id} ({:?}): it no longer works",
        record.name
    );
    Ok(())
}

/// Replaces a key with a successor, records `key.rotated`, and prints the
/// new key once with the time the old one stops working.
async fn rotate(authenticator: &Authenticator, args: KeyRotateArgs) -> anyhow::Result<()> {
    let now = unix_now();
    let old_id = key_id(&args.id)?;
    let IssuedKey { record, key } = authenticator
        .rotate_key(&old_id, args.grace, now)
        .await
        .map_err(|error| key_error(error, &old_id))?;

    let old_until = old_key_end(authenticator, &old_id, args.grace, now).await;
    let detail = json!({ "old": old_id, "new": record.id, "old_expires_at": old_until });
    let audit = record_audit(authenticator.store(), "key.rotated", &old_id, detail).await;

    if args.json {
        let rotation = json!({ "rotated_from": old_id, "old_works_until": rfc3339(old_until) });
        print_issued_json(&record, &key, now, rotation);
    } else {
        println!(
            "rotated API key {old_id} to {} ({:?})",
            record.id, record.name
        );
        println!(
            "  {old_id} works until {}, then stops",
            shown_time(old_until)
        );
        print_issued(&record, &key, now);
    }
    audit.with_context(|| format!("API key {old_id} was rotated to {}, but", record.id))
}

/// When the rotated key `id` stops working, as the store now records it:
/// the end of `grace`, or its own expiry if that came sooner. Should the
/// record not be read back, the end of `grace` is shown, so that the new
/// key is printed whatever happens.
async fn old_key_end(authenticator: &Authenticator, id: &str, grace: Duration, now: i64) -> i64 {
    let grace_end = now.saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
    match authenticator.store().find_key(id).await {
        Ok(Some(record)) => record.expires_at.unwrap_or(grace_end),
        _ => grace_end,
    }
}

/// A key as `keys list --json` and the `--json` of `create` and `rotate`
/// show it: everything but the secret's hash. Times are RFC 3339, UTC.
#[derive(Debug, Serialize)]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    scopes: &'a [String],
    /// `null`: every collection.
    collections: Option<&'a [String]>,
    /// Empty: anywhere.
    allow_ips: &'a [String],
    /// `null`: the server's default.
    requests_per_minute: Option<u32>,
    /// `null`: no quota.
    tokens_per_day: Option<u64>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
    rotated_to: Option<&'a str>,
    /// `active`, `expired`, `revoked` or `rotated`.
    state: &'static str,
}

impl<'a> KeyView<'a> {
    fn new(record: &'a ApiKeyRecord, now: i64) -> Self {
        KeyView {
            id: &record.id,
            name: &record.name,
            scopes: &record.scopes,
            collections: record.collections.as_deref(),
            allow_ips: &record.allow_ips,
            requests_per_minute: record.requests_per_minute,
            tokens_per_day: record.tokens_per_day,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            revoked_at: record.revoked_at.map(rfc3339),
            last_used_at: record.last_used_at.map(rfc3339),
            rotated_to: record.rotated_to.as_deref(),
            state: KeyState::of(record, now).name(),
        }
    }
}

/// Where a key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    Active,
    /// Expired at this time.
    Expired(i64),
    /// Revoked at this time.
    Revoked(i64),
    /// Replaced; it works until its expiry, the end of the grace period.
    Rotated,
}

impl KeyState {
    /// A revocation outranks a rotation, and a rotation an expiry: a
    /// rotated key's expiry is the end of its grace, shown with it.
    fn of(record: &ApiKeyRecord, now: i64) -> Self {
        if let Some(at) = record.revoked_at {
            return KeyState::Revoked(at);
        }
        if record.rotated_to.is_some() {
            return KeyState::Rotated;
        }
        match record.expires_at {
            Some(at) if now >= at => KeyState::Expired(at),
            _ => KeyState::Active,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Expired(_) => "expired",
            KeyState::Revoked(_) => "revoked",
            KeyState::Rotated => "rotated",
        }
    }
}

/// The state as `keys list` prints it.
fn state_line(record: &ApiKeyRecord, now: i64) -> String {
    match KeyState::of(record, now) {
        KeyState::Active => "active".to_owned(),
        KeyState::Expired(at) => format!("expired {}", shown_time(at)),
        KeyState::Revoked(at) => format!("revoked {}", shown_time(at)),
        KeyState::Rotated => {
            let successor = record.rotated_to.as_deref().unwrap_or_default();
            match record.expires_at {
                Some(at) if now >= at => {
                    format!("rotated → {successor}, stopped working {}", shown_time(at))
                }
                Some(at) => format!("rotated → {successor}, works until {}", shown_time(at)),
                None => format!("rotated → {successor}"),
            }
        }
    }
}

fn print_listed(record: &ApiKeyRecord, now: i64) {
    println!(
        "{}  {:?}  {}",
        record.id,
        record.name,
        state_line(record, now)
    );
    println!(
        "  scopes: {}; collections: {}; from: {}",
        record.scopes.join(","),
        collections_line(record),
        addresses_line(record)
    );
    println!("  limits: {}", limits_line(record));
    println!(
        "  created {}, expires {}, last used {}",
        shown_time(record.created_at),
        optional_time(record.expires_at, "never"),
        optional_time(record.last_used_at, "never")
    );
}

/// A new key's rights and the key itself, with the warning that it is
/// shown only this once.
fn print_issued(record: &ApiKeyRecord, key: &ApiKey, now: i64) {
    println!("  scopes:       {}", record.scopes.join(","));
    println!("  collections:  {}", collections_line(record));
    println!("  allowed from: {}", addresses_line(record));
    println!("  limits:       {}", limits_line(record));
    println!("  expires:      {}", expiry_line(record.expires_at, now));
    println!("key: {}", key.expose_secret());
    println!(
        "This key will not be shown again: grounded keeps only a hash of it. Store it now \
         (a secret manager, an environment variable), not in a file under version control."
    );
}

/// A new key as one JSON object: its record's view, the `key`, and the
/// fields of `extra`.
fn print_issued_json(record: &ApiKeyRecord, key: &ApiKey, now: i64, extra: serde_json::Value) {
    let mut object = json!(KeyView::new(record, now));
    object["key"] = json!(key.expose_secret());
    if let (Some(object), serde_json::Value::Object(extra)) = (object.as_object_mut(), extra) {
        object.extend(extra);
    }
    println!("{object:#}");
}

fn collections_line(record: &ApiKeyRecord) -> String {
    match &record.collections {
        None => "all".to_owned(),
        Some(names) if names.is_empty() => "none".to_owned(),
        Some(names) => names.join(","),
    }
}

fn addresses_line(record: &ApiKeyRecord) -> String {
    match record.allow_ips.is_empty() {
        true => "anywhere".to_owned(),
        false => record.allow_ips.join(","),
    }
}

fn limits_line(record: &ApiKeyRecord) -> String {
    let rate = record.requests_per_minute.map_or_else(
        || "the server's default requests per minute".to_owned(),
        |rate| format!("{rate} requests per minute"),
    );
    let tokens = record.tokens_per_day.map_or_else(
        || "no daily token quota".to_owned(),
        |tokens| format!("{tokens} tokens per UTC day"),
    );
    format!("{rate}, {tokens}")
}

/// When a new key stops working, and in how many days.
fn expiry_line(expires_at: Option<i64>, now: i64) -> String {
    match expires_at {
        None => "never (until revoked)".to_owned(),
        Some(at) => {
            let days = (at - now) as f64 / DAY_SECONDS as f64;
            format!("{} (in {days:.1} days)", shown_time(at))
        }
    }
}

fn optional_time(seconds: Option<i64>, none: &str) -> String {
    seconds.map_or_else(|| none.to_owned(), shown_time)
}

/// The key id an argument names: the id itself, or a whole key, whose id
/// is taken. A whole key is never repeated in a message.
///
/// # Errors
/// When the argument starts like a key but is not a valid one.
pub(crate) fn key_id(argument: &str) -> anyhow::Result<String> {
    let argument = argument.trim();
    if !argument.starts_with(KEY_PREFIX) {
        return Ok(argument.to_owned());
    }
    match ParsedKey::parse(argument) {
        Ok(parsed) => Ok(parsed.id().to_owned()),
        Err(error) => anyhow::bail!(
            "the key id given starts with {KEY_PREFIX} but is no valid key ({}): give the id \
             that `grounded keys list` shows",
            error.reason
        ),
    }
}

/// The key `id`, or an error naming it.
async fn find_key(store: &dyn AccessStore, id: &str) -> anyhow::Result<ApiKeyRecord> {
    let record = store.find_key(id).await?;
    record.ok_or_else(|| unknown_key(id))
}

fn unknown_key(id: &str) -> anyhow::Error {
    anyhow::anyhow!("there is no API key {id:?}; `grounded keys list` shows the keys")
}

/// A failure of the authenticator, with the hint of [`unknown_key`] for an
/// id the store does not know.
fn key_error(error: KeyError, id: &str) -> anyhow::Error {
    match error {
        KeyError::NotFound { .. } => unknown_key(id),
        other => other.into(),
    }
}

/// Appends a key event to the audit log, naming the key as the principal.
async fn record_audit(
    store: &Arc<dyn AccessStore>,
    kind: &str,
    key_id: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let event = AuditEvent {
        at: unix_now(),
        kind: kind.to_owned(),
        principal: Some(key_id.to_owned()),
        client: Some(AUDIT_CLIENT.to_owned()),
        detail: detail.to_string(),
    };
    store
        .record_audit(&event)
        .await
        .with_context(|| format!("failed to record {kind} in the audit log"))
}

/// Unix seconds as people read them: `2025-01-31 09:05:00Z`.
fn shown_time(seconds: i64) -> String {
    utc_time(seconds, ' ')
}

/// Unix seconds as RFC 3339: `2025-01-31T09:05:00Z`.
fn rfc3339(seconds: i64) -> String {
    utc_time(seconds, 'T')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ApiKeyRecord {
        ApiKeyRecord {
            id: "abcdefghijkl".to_owned(),
            name: "ci".to_owned(),
            secret_hash: "0".repeat(64),
            scopes: vec!["answer".to_owned(), "search".to_owned()],
            collections: None,
            allow_ips: Vec::new(),
            requests_per_minute: None,
            tokens_per_day: None,
            created_at: 1_000,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            rotated_to: None,
        }
    }

    #[test]
    fn state_ranks_revocation_over_rotation_over_expiry() {
        let expired = ApiKeyRecord {
            expires_at: Some(2_000),
            ..record()
        };
        let rotated = ApiKeyRecord {
            rotated_to: Some("mnopqrstuvwx".to_owned()),
            ..expired.clone()
        };
        let revoked = ApiKeyRecord {
            revoked_at: Some(1_500),
            ..rotated.clone()
        };

        assert_eq!(KeyState::of(&record(), 3_000), KeyState::Active);
        assert_eq!(KeyState::of(&expired, 1_999), KeyState::Active);
        assert_eq!(KeyState::of(&expired, 2_000), KeyState::Expired(2_000));
        assert_eq!(KeyState::of(&rotated, 3_000), KeyState::Rotated);
        assert_eq!(KeyState::of(&revoked, 3_000), KeyState::Revoked(1_500));
    }

    #[test]
    fn a_rotated_key_shows_its_successor_and_end_of_grace() {
        let rotated = ApiKeyRecord {
            rotated_to: Some("mnopqrstuvwx".to_owned()),
            expires_at: Some(86_400),
            ..record()
        };

        assert_eq!(
            state_line(&rotated, 0),
            "rotated → mnopqrstuvwx, works until 1970-01-02 00:00:00Z"
        );
        assert_eq!(
            state_line(&rotated, 86_400),
            "rotated → mnopqrstuvwx, stopped working 1970-01-02 00:00:00Z"
        );
    }

    #[test]
    fn a_key_id_argument_may_be_the_whole_key_which_is_never_echoed() {
        let generated = grounded_auth::generate_key();
        let whole = generated.key.expose_secret();

        assert_eq!(key_id(whole).unwrap(), generated.id);
        assert_eq!(key_id(" abcdefghijkl ").unwrap(), "abcdefghijkl");
        let mangled = format!("{}x", &whole[..whole.len() - 1]);
        let error = key_id(&mangled).unwrap_err().to_string();
        assert!(!error.contains(&whole[20..40]), "{error}");
    }

    #[test]
    fn the_json_view_has_no_secret_hash() {
        let view = serde_json::to_value(KeyView::new(&record(), 0)).unwrap();

        assert!(view.get("secret_hash").is_none());
        assert_eq!(view["collections"], serde_json::Value::Null);
        assert_eq!(view["created_at"], "1970-01-01T00:16:40Z");
        assert_eq!(view["state"], "active");
    }
}
