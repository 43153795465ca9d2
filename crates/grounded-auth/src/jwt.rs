//! Bearer tokens: OAuth 2 access tokens (JWTs) from an issuer the operator
//! names, verified with the `jsonwebtoken` crate.
//!
//! What a token must be to be accepted:
//!
//! - signed RS256 or ES256 by a key of the issuer's JWKS, or HS256 with
//!   the configured shared secret when that is the key source. The
//!   algorithm is the key's (from its `kty`, `crv` and `alg`), never the
//!   token header's alone: a header naming another algorithm than the key
//!   it points to is refused, so `alg: none` and an HS256 token keyed with
//!   an RSA public key (algorithm confusion) both fail;
//! - `iss` equal to the issuer, `aud` naming the audience, a `sub`, and an
//!   `exp` not passed; an `nbf`, if present, reached. Both times allow
//!   [`JwtConfig::leeway`] of clock skew, and are checked against the time
//!   the caller passes, not the system clock.
//!
//! Scopes come from `scope` (space-separated) and `scp` (an array), with
//! an optional prefix stripped; scopes without the prefix, and names that
//! are not ours, are ignored. A token grants no rate or quota of its own.
//!
//! When a token names a key id the set does not hold, the set is loaded
//! again, at most once per [`JwtConfig::refetch_interval`], so an issuer's
//! key rotation is picked up without a restart. A key the issuer removed
//! keeps verifying until the set is loaded again; a server that wants to
//! bound that calls [`JwtVerifier::refresh`] on a timer.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::{JwtError, KeySourceError};
use crate::principal::{Principal, PrincipalKind};
use crate::scope::{Scope, Scopes};

/// Clock skew allowed on `exp` and `nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// How often, at most, keys are loaded again for an unknown key id.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(300);

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// RSA keys shorter than this (in bytes of modulus) are not used.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// HS256 secrets shorter than this are refused (RFC 7518: at least the
/// hash's size).
const MIN_SECRET_LEN: usize = 32;

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the keys that verify tokens come from.
#[derive(Clone)]
pub enum KeySource {
    /// A JWKS document on disk.
    JwksFile(PathBuf),
    /// A JWKS document served by the issuer (its `jwks_uri`); `https`, or
    /// `http` to a loopback address.
    JwksUrl(String),
    /// An HS256 shared secret, at least 32 bytes. Tokens are then HS256
    /// only.
    SharedSecret(Vec<u8>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::JwksFile(path) => f.debug_tuple("JwksFile").field(path).finish(),
            Self::JwksUrl(url) => f.debug_tuple("JwksUrl").field(url).finish(),
            Self::SharedSecret(_) => f.write_str("SharedSecret(…)"),
        }
    }
}

/// How tokens are verified and what they grant.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// A value the token's `aud` must name.
    pub audience: String,
    pub keys: KeySource,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Stripped from scope names (`grounded:search` → `search`); scopes
    /// without it are ignored. `None` takes scope names as they are.
    pub scope_prefix: Option<String>,
    /// The claim listing the collections the token may use, an array of
    /// names. `None`, or a token without the claim, means every collection.
    pub collections_claim: Option<String>,
    /// The least time between two loads of the key set for unknown key ids.
    pub refetch_interval: Duration,
}

impl JwtConfig {
    /// The defaults: 30 s of leeway, no scope prefix, no collections
    /// claim, five minutes between key reloads.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, keys: KeySource) -> Self {
        JwtConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            keys,
            leeway: DEFAULT_LEEWAY,
            scope_prefix: None,
            collections_claim: None,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
        }
    }
}

/// Verifies bearer tokens and turns them into principals.
pub struct JwtVerifier {
    rules: ClaimRules,
    keys: Keys,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the keys (reading the file or fetching the URL) so that a
    /// misconfiguration shows at startup.
    ///
    /// # Errors
    /// [`KeySourceError`] when the keys cannot be read, fetched or parsed,
    /// hold no usable key, or the shared secret is too short.
    pub async fn try_new(config: JwtConfig) -> Result<Self, KeySourceError> {
        let interval = config.refetch_interval;
        let keys = match config.keys {
            KeySource::SharedSecret(secret) => Keys::Secret(shared_secret_key(&secret)?),
            KeySource::JwksFile(path) => {
                Keys::Set(KeySet::load(Origin::File(path), interval).await?)
            }
            KeySource::JwksUrl(url) => Keys::Set(KeySet::load(Origin::url(&url)?, interval).await?),
        };
        let rules = ClaimRules {
            issuer: config.issuer,
            audience: config.audience,
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            scope_prefix: config.scope_prefix,
            collections_claim: config.collections_claim,
        };
        Ok(JwtVerifier { rules, keys })
    }

    /// The principal `token` stands for at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`JwtError`] saying why the token was refused;
    /// [`JwtError::KeysUnavailable`] when the token names an unknown key
    /// and the key set could not be loaded again.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Principal, JwtError> {
        let header = RawHeader::parse(token)?;
        let key = self.keys.select(&header).await?;

        let claims = decode_claims(token, &key, &self.rules)?;
        self.rules.check_times(&claims, now)?;
        self.rules.principal(&claims)
    }

    /// Loads the key set again now, whatever the refetch interval; a no-op
    /// for a shared secret. On failure the keys already loaded stay.
    ///
    /// # Errors
    /// [`KeySourceError`] when the keys cannot be loaded.
    pub async fn refresh(&self) -> Result<(), KeySourceError> {
        match &self.keys {
            Keys::Secret(_) => Ok(()),
            Keys::Set(set) => set.reload(&mut *set.last_load.lock().await).await,
        }
    }
}

/// The claim checks that do not involve keys.
struct ClaimRules {
    issuer: String,
    audience: String,
    leeway: i64,
    scope_prefix: Option<String>,
    collections_claim: Option<String>,
}

impl ClaimRules {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        // Times are checked in `check_times` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        // Without these, a token lacking `iss` or `aud` would pass the
        // issuer and audience checks.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation
    }

    fn check_times(&self, claims: &Map<String, Value>, now: i64) -> Result<(), JwtError> {
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| JwtError::InvalidClaim(name.to_owned())),
        };
        let now = now as f64;
        let leeway = self.leeway as f64;

        let exp = time("exp")?.ok_or_else(|| JwtError::MissingClaim("exp".to_owned()))?;
        if now >= exp + leeway {
            return Err(JwtError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| now + leeway < nbf) {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, JwtError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| JwtError::InvalidClaim("sub".to_owned()))?;

        Ok(Principal {
            id: format!("jwt:{subject}"),
            kind: PrincipalKind::Token,
            scopes: self.scopes(claims),
            collections: self.collections(claims)?,
            requests_per_minute: None,
            tokens_per_day: None,
        })
    }

    fn scopes(&self, claims: &Map<String, Value>) -> Scopes {
        let names = ["scope", "scp"]
            .into_iter()
            .filter_map(|claim| claims.get(claim))
            .flat_map(claim_names);

        names
            .filter_map(|name| match &self.scope_prefix {
                Some(prefix) => name.strip_prefix(prefix.as_str()),
                None => Some(name),
            })
            .filter_map(|name| name.parse::<Scope>().ok())
            .collect()
    }

    fn collections(&self, claims: &Map<String, Value>) -> Result<Option<Vec<String>>, JwtError> {
        let Some(claim) = &self.collections_claim else {
            return Ok(None);
        };
        let Some(value) = claims.get(claim) else {
            return Ok(None);
        };

        let invalid = || JwtError::InvalidClaim(claim.clone());
        let names = value.as_array().ok_or_else(invalid)?;
        names
            .iter()
            .map(|name| name.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The names in a scope claim: a space-separated string or an array of
/// strings (non-strings skipped).
fn claim_names(value: &Value) -> Vec<&str> {
    match value {
        Value::String(list) => list.split_whitespace().collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The two header fields that pick the key, read before any verification.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl RawHeader {
    fn parse(token: &str) -> Result<Self, JwtError> {
        let malformed = |reason: &str| JwtError::Malformed {
            reason: reason.to_owned(),
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("token too long"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(malformed("not three dot-separated parts"));
        }

        let bytes = URL_SAFE_NO_PAD
            .decode(parts[0].trim_end_matches('='))
            .map_err(|_| malformed("header is not base64url"))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| malformed("header is not a JSON object with alg"))
    }
}

/// A key with the one algorithm it verifies.
#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

fn decode_claims(
    token: &str,
    key: &VerifyingKey,
    rules: &ClaimRules,
) -> Result<Map<String, Value>, JwtError> {
    let validation = rules.validation(key.algorithm);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map(|data| data.claims)
        .map_err(jwt_error)
}

fn jwt_error(error: jsonwebtoken::errors::Error) -> JwtError {
    match error.kind() {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => JwtError::InvalidClaim(claim.clone()),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => JwtError::Malformed {
            reason: error.to_string(),
        },
        // The kinds left are key and algorithm problems that the key
        // selection should have excluded, and kinds added by later
        // versions of the crate (the enum is non-exhaustive).
        _ => JwtError::Verification(error),
    }
}

/// The keys, by source.
enum Keys {
    Secret(VerifyingKey),
    Set(KeySet),
}

impl Keys {
    /// The key that may verify a token with `header`, whose algorithm is
    /// the key's.
    async fn select(&self, header: &RawHeader) -> Result<VerifyingKey, JwtError> {
        match self {
            Keys::Secret(key) if header.alg == "HS256" => Ok(key.clone()),
            Keys::Secret(_) => Err(JwtError::AlgorithmNotAccepted {
                alg: header.alg.clone(),
            }),
            Keys::Set(set) => set.select(header).await,
        }
    }
}

fn shared_secret_key(secret: &[u8]) -> Result<VerifyingKey, KeySourceError> {
    if secret.is_empty() {
        return Err(KeySourceError::EmptySecret);
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeySourceError::ShortSecret { len: secret.len() });
    }
    let key = DecodingKey::from_secret(secret).map_err(|_| KeySourceError::EmptySecret)?;
    Ok(VerifyingKey {
        kid: None,
        algorithm: Algorithm::HS256,
        key,
    })
}

/// A JWKS that can be loaded again.
struct KeySet {
    origin: Origin,
    current: RwLock<Arc<Vec<VerifyingKey>>>,
    /// When the set was last loaded or tried; held while loading, so that
    /// requests arriving together load it once.
    last_load: Mutex<Instant>,
    refetch_interval: Duration,
}

impl KeySet {
    async fn load(origin: Origin, refetch_interval: Duration) -> Result<Self, KeySourceError> {
        let keys = origin.load().await?;
        tracing::info!(origin = %origin, keys = keys.len(), "token verification keys loaded");

        Ok(KeySet {
            origin,
            current: RwLock::new(Arc::new(keys)),
            last_load: Mutex::new(Instant::now()),
            refetch_interval,
        })
    }

    async fn select(&self, header: &RawHeader) -> Result<VerifyingKey, JwtError> {
        let algorithm = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => {
                return Err(JwtError::AlgorithmNotAccepted {
                    alg: header.alg.clone(),
                });
            }
        };

        if let Some(key) = self.find(header.kid.as_deref(), algorithm) {
            return Ok(key);
        }
        self.reload_if_due().await?;
        self.find(header.kid.as_deref(), algorithm)
            .ok_or_else(|| JwtError::UnknownKey {
                kid: header.kid.clone(),
                alg: header.alg.clone(),
            })
    }

    /// The key named `kid` for `algorithm`; without a kid, the only key for
    /// `algorithm`, if there is exactly one.
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<VerifyingKey> {
        let keys = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let mut candidates = keys
            .iter()
            .filter(|key| key.algorithm == algorithm)
            .filter(|key| kid.is_none() || key.kid.as_deref() == kid);

        let first = candidates.next()?;
        if kid.is_none() && candidates.next().is_some() {
            return None;
        }
        Some(first.clone())
    }

    async fn reload_if_due(&self) -> Result<(), JwtError> {
        let mut last_load = self.last_load.lock().await;
        if last_load.elapsed() < self.refetch_interval {
            return Ok(());
        }
        self.reload(&mut last_load)
            .await
            .map_err(JwtError::KeysUnavailable)
    }

    /// Loads the set, counting the attempt even when it fails, so a failing
    /// issuer is asked at most once per interval.
    async fn reload(&self, last_load: &mut Instant) -> Result<(), KeySourceError> {
        *last_load = Instant::now();

        let keys = self.origin.load().await.inspect_err(|error| {
            tracing::warn!(origin = %self.origin, error = %error, "failed to reload token keys");
        })?;
        let count = keys.len();
        tracing::info!(origin = %self.origin, keys = count, "token verification keys reloaded");
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }
}

enum Origin {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Url { url, .. } => f.write_str(url),
        }
    }
}

impl Origin {
    fn url(url: &str) -> Result<Self, KeySourceError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| KeySourceError::InvalidUrl {
            url: url.to_owned(),
        })?;
        let https = parsed.scheme() == "https";
        let local_http = parsed.scheme() == "http" && is_loopback(&parsed);
        if !https && !local_http {
            return Err(KeySourceError::InsecureUrl {
                url: url.to_owned(),
            });
        }

        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .https_only(https)
            .build()
            .map_err(|source| KeySourceError::Fetch {
                url: url.to_owned(),
                source,
            })?;
        Ok(Origin::Url {
            url: url.to_owned(),
            client,
        })
    }

    async fn load(&self) -> Result<Vec<VerifyingKey>, KeySourceError> {
        let bytes = match self {
            Origin::File(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| KeySourceError::Read {
                        path: path.clone(),
                        source,
                    })?
            }
            Origin::Url { url, client } => fetch(client, url).await?,
        };

        let keys = parse_jwks(&bytes, &self.to_string())?;
        if keys.is_empty() {
            return Err(KeySourceError::NoUsableKeys {
                origin: self.to_string(),
            });
        }
        Ok(keys)
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, KeySourceError> {
    let failed = |source| KeySourceError::Fetch {
        url: url.to_owned(),
        source,
    };

    let response = client.get(url).send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(KeySourceError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(failed)?;
    Ok(body.to_vec())
}

/// The usable signing keys of a JWKS document. Keys of other kinds or
/// uses (encryption keys, symmetric keys, other curves, short RSA keys) are
/// skipped, one at a time, so one odd key does not hide the others.
fn parse_jwks(bytes: &[u8], origin: &str) -> Result<Vec<VerifyingKey>, KeySourceError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }

    let document: Document =
        serde_json::from_slice(bytes).map_err(|source| KeySourceError::Parse {
            origin: origin.to_owned(),
            source,
        })?;

    let keys = document.keys.into_iter().filter_map(|value| {
        let jwk: Jwk = serde_json::from_value(value).ok()?;
        let key = verifying_key(&jwk);
        if key.is_none() {
            tracing::debug!(kid = ?jwk.common.key_id, "unusable JWKS key skipped");
        }
        key
    });
    Ok(keys.collect())
}

/// The key and its algorithm, when `jwk` is an RS256 or ES256 signing key.
fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    let for_signing = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    if !for_signing {
        return None;
    }
    let declared = jwk.common.key_algorithm;

    let (algorithm, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
            let modulus_len = modulus.iter().skip_while(|b| **b == 0).count();
            if modulus_len < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            let algorithm = declared_or(declared, KeyAlgorithm::RS256, Algorithm::RS256)?;
            (
                algorithm,
                DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?,
            )
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let algorithm = declared_or(declared, KeyAlgorithm::ES256, Algorithm::ES256)?;
            (
                algorithm,
                DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?,
            )
        }
        _ => return None,
    };
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// `algorithm` when the key declares no `alg` or declares `expected`.
fn declared_or(
    declared: Option<KeyAlgorithm>,
    expected: KeyAlgorithm,
    algorithm: Algorithm,
) -> Option<Algorithm> {
    match declared {
        None => Some(algorithm),
        Some(alg) if alg == expected => Some(algorithm),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(prefix: Option<&str>, collections: Option<&str>) -> ClaimRules {
        ClaimRules {
            issuer: "https://issuer.example".to_owned(),
            audience: "grounded".to_owned(),
            leeway: 30,
            scope_prefix: prefix.map(str::to_owned),
            collections_claim: collections.map(str::to_owned),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn scopes_come_from_scope_and_scp() {
        let claims = claims(serde_json::json!({
            "scope": "search  openid",
            "scp": ["answer", 7, "delete"],
        }));

        let scopes = rules(None, None).scopes(&claims);

        assert_eq!(scopes, "search,answer".parse().unwrap());
    }

    #[test]
    fn scope_prefix_is_required_and_stripped() {
        let claims = claims(serde_json::json!({"scope": "grounded:search ingest grounded:admin"}));

        let scopes = rules(Some("grounded:"), None).scopes(&claims);

        assert_eq!(scopes, "search,admin".parse().unwrap());
    }

    #[test]
    fn times_allow_the_leeway_and_no_more() {
        let rules = rules(None, None);
        let token = claims(serde_json::json!({"exp": 1000, "nbf": 900}));

        assert!(rules.check_times(&token, 1029).is_ok());
        assert!(matches!(
            rules.check_times(&token, 1030),
            Err(JwtError::Expired)
        ));
        assert!(rules.check_times(&token, 870).is_ok());
        assert!(matches!(
            rules.check_times(&token, 869),
            Err(JwtError::NotYetValid)
        ));
    }

    #[test]
    fn non_numeric_times_are_invalid() {
        let token = claims(serde_json::json!({"exp": 1000, "nbf": "soon"}));

        let error = rules(None, None).check_times(&token, 0).unwrap_err();

        assert!(matches!(error, JwtError::InvalidClaim(name) if name == "nbf"));
    }

    #[test]
    fn collections_claim_is_read_when_configured() {
        let token = claims(serde_json::json!({"sub": "u", "cols": ["docs", "web"]}));

        assert_eq!(
            rules(None, None).principal(&token).unwrap().collections,
            None
        );
        assert_eq!(
            rules(None, Some("cols"))
                .principal(&token)
                .unwrap()
                .collections,
            Some(vec!["docs".to_owned(), "web".to_owned()])
        );
        assert_eq!(
            rules(None, Some("other"))
                .principal(&token)
                .unwrap()
                .collections,
            None
        );
        let bad = claims(serde_json::json!({"sub": "u", "cols": "docs"}));
        assert!(matches!(
            rules(None, Some("cols")).principal(&bad),
            Err(JwtError::InvalidClaim(name)) if name == "cols"
        ));
    }

    #[test]
    fn principal_is_named_after_the_subject() {
        let token = claims(serde_json::json!({"sub": "alice"}));

        let principal = rules(None, None).principal(&token).unwrap();

        assert_eq!(principal.id, "jwt:alice");
        assert_eq!(principal.kind, PrincipalKind::Token);
        assert_eq!(principal.requests_per_minute, None);
        let empty = claims(serde_json::json!({"sub": ""}));
        assert!(rules(None, None).principal(&empty).is_err());
    }

    #[test]
    fn header_must_have_three_parts_and_an_alg() {
        assert!(RawHeader::parse("a.b").is_err());
        assert!(RawHeader::parse("a.b.c.d.e").is_err());
        let no_alg = format!("{}.e30.", URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#));
        assert!(RawHeader::parse(&no_alg).is_err());
        let ok = format!(
            "{}.e30.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#)
        );
        let header = RawHeader::parse(&ok).unwrap();
        assert_eq!(
            (header.alg.as_str(), header.kid.as_deref()),
            ("RS256", Some("k"))
        );
    }

    #[test]
    fn jwks_keeps_only_signing_keys_it_can_use() {
        let jwks = include_str!("../tests/keys/jwks.json");
        let mut document: Value = serde_json::from_str(jwks).unwrap();
        let keys = document["keys"].as_array_mut().unwrap();
        let mut encryption = keys[0].clone();
        encryption["use"] = "enc".into();
        encryption["kid"] = "enc".into();
        let mut wrong_alg = keys[0].clone();
        wrong_alg["alg"] = "RSA-OAEP".into();
        wrong_alg["kid"] = "oaep".into();
        keys.push(encryption);
        keys.push(wrong_alg);
        keys.push(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}));
        keys.push(serde_json::json!({"kty": "weird"}));
        let bytes = serde_json::to_vec(&document).unwrap();

        let usable = parse_jwks(&bytes, "test").unwrap();

        let kids: Vec<_> = usable
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect();
        assert_eq!(
            kids,
            [
                (Some("test-rsa"), Algorithm::RS256),
                (Some("test-ec"), Algorithm::ES256)
            ]
        );
    }

    #[test]
    fn shared_secret_must_be_long_enough() {
        assert!(matches!(
            shared_secret_key(b""),
            Err(KeySourceError::EmptySecret)
        ));
        assert!(matches!(
            shared_secret_key(b"short"),
            Err(KeySourceError::ShortSecret { len: 5 })
        ));
        assert!(shared_secret_key(&[7; 32]).is_ok());
    }

    #[test]
    fn jwks_url_must_be_https_or_loopback() {
        assert!(Origin::url("https://issuer.example/jwks").is_ok());
        assert!(Origin::url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(Origin::url("http://[::1]:8080/jwks").is_ok());
        assert!(Origin::url("http://localhost/jwks").is_ok());
        assert!(matches!(
            Origin::url("http://issuer.example/jwks"),
            Err(KeySourceError::InsecureUrl { .. })
        ));
        assert!(matches!(
            Origin::url("not a url"),
            Err(KeySourceError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn debug_hides_the_shared_secret() {
        let source = KeySource::SharedSecret(b"hunter2hunter2hunter2hunter2hunter2".to_vec());

        assert_eq!(format!("{source:?}"), "SharedSecret(…)");
    }
}
