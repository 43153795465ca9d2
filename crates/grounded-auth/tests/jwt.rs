//! Bearer tokens signed with the test keys in `tests/keys/` and checked by
//! a real `JwtVerifier`: what it accepts, every reason it refuses, and the
//! reload of a JWKS served over HTTP.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grounded_auth::{
    AuthError, Authenticator, JwtConfig, JwtError, JwtVerifier, KeySource, KeySourceError,
    PrincipalKind, Scope, Scopes,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "grounded";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn read_key(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).unwrap()
}

fn config(keys: KeySource) -> JwtConfig {
    JwtConfig {
        scope_prefix: Some("grounded:".to_owned()),
        ..JwtConfig::new(ISSUER, AUDIENCE, keys)
    }
}

async fn verifier() -> JwtVerifier {
    JwtVerifier::try_new(config(KeySource::JwksFile(key_file("jwks.json"))))
        .await
        .unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW,
        "exp": NOW + 300,
        "scope": "openid grounded:search grounded:answer",
    })
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read_key("rsa_private.pem")).unwrap();
    sign(Algorithm::RS256, Some("test-rsa"), &key, claims)
}

fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_key("ec_private.pem")).unwrap();
    sign(Algorithm::ES256, Some("test-ec"), &key, claims)
}

/// A token assembled by hand from a header, claims and a signature part.
fn hand_made(header: &Value, claims: &Value, signature: &str) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

#[tokio::test]
async fn valid_rs256_token_is_accepted() {
    let principal = verifier()
        .await
        .verify(&rs256(&claims()), NOW)
        .await
        .unwrap();

    assert_eq!(principal.id, "jwt:alice");
    assert_eq!(principal.kind, PrincipalKind::Token);
    assert_eq!(principal.scopes, "search,answer".parse().unwrap());
    assert_eq!(principal.collections, None);
}

#[tokio::test]
async fn valid_es256_token_is_accepted() {
    let principal = verifier()
        .await
        .verify(&es256(&claims()), NOW)
        .await
        .unwrap();

    assert_eq!(principal.id, "jwt:alice");
    assert!(principal.allows(Scope::Search));
}

#[tokio::test]
async fn expired_token_is_refused_after_the_leeway() {
    let verifier = verifier().await;

    let just_expired = rs256(&with(claims(), "exp", json!(NOW - 10)));
    let long_expired = rs256(&with(claims(), "exp", json!(NOW - 31)));

    assert!(verifier.verify(&just_expired, NOW).await.is_ok());
    let error = verifier.verify(&long_expired, NOW).await.unwrap_err();
    assert!(matches!(error, JwtError::Expired), "{error}");
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let token = rs256(&without(claims(), "exp"));

    let error = verifier().await.verify(&token, NOW).await.unwrap_err();

    assert!(
        matches!(&error, JwtError::MissingClaim(claim) if claim == "exp"),
        "{error}"
    );
}

#[tokio::test]
async fn token_not_yet_valid_is_refused() {
    let verifier = verifier().await;

    let soon = rs256(&with(claims(), "nbf", json!(NOW + 20)));
    let later = rs256(&with(claims(), "nbf", json!(NOW + 120)));

    assert!(verifier.verify(&soon, NOW).await.is_ok());
    let error = verifier.verify(&later, NOW).await.unwrap_err();
    assert!(matches!(error, JwtError::NotYetValid), "{error}");
}

#[tokio::test]
async fn wrong_or_missing_audience_is_refused() {
    let verifier = verifier().await;

    let other = rs256(&with(claims(), "aud", json!("another-api")));
    let several = rs256(&with(claims(), "aud", json!(["another-api", AUDIENCE])));
    let missing = rs256(&without(claims(), "aud"));

    let error = verifier.verify(&other, NOW).await.unwrap_err();
    assert!(matches!(error, JwtError::WrongAudience), "{error}");
    assert!(verifier.verify(&several, NOW).await.is_ok());
    let error = verifier.verify(&missing, NOW).await.unwrap_err();
    assert!(
        matches!(&error, JwtError::MissingClaim(claim) if claim == "aud"),
        "{error}"
    );
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_refused() {
    let verifier = verifier().await;

    let other = rs256(&with(claims(), "iss", json!("https://evil.example")));
    let missing = rs256(&without(claims(), "iss"));

    let error = verifier.verify(&other, NOW).await.unwrap_err();
    assert!(matches!(error, JwtError::WrongIssuer), "{error}");
    let error = verifier.verify(&missing, NOW).await.unwrap_err();
    assert!(
        matches!(&error, JwtError::MissingClaim(claim) if claim == "iss"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let verifier = verifier().await;
    let token = rs256(&claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = signed.split_once('.').unwrap();

    // The same signature over claims that grant more.
    let escalated = with(claims(), "scope", json!("grounded:admin"));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&escalated).unwrap());
    let forged = format!("{header}.{payload}.{signature}");
    // A signature with one byte changed.
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));

    for token in [forged, flipped] {
        let error = verifier.verify(&token, NOW).await.unwrap_err();
        assert!(matches!(error, JwtError::BadSignature), "{error}");
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let verifier = verifier().await;

    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "test-rsa"}),
        json!({"alg": "None"}),
    ] {
        let token = hand_made(&header, &claims(), "");

        let error = verifier.verify(&token, NOW).await.unwrap_err();

        assert!(
            matches!(error, JwtError::AlgorithmNotAccepted { .. }),
            "{header}: {error}"
        );
    }
}

#[tokio::test]
async fn rsa_public_key_as_hmac_secret_is_refused() {
    // Algorithm confusion: a verifier that trusted the header would check
    // this HS256 signature with the RSA public key's bytes as the secret,
    // which anyone can compute.
    let public_pem = read_key("rsa_public.pem");
    let secret = EncodingKey::from_secret(&public_pem).unwrap();
    let token = sign(Algorithm::HS256, Some("test-rsa"), &secret, &claims());

    let error = verifier().await.verify(&token, NOW).await.unwrap_err();

    assert!(
        matches!(&error, JwtError::AlgorithmNotAccepted { alg } if alg == "HS256"),
        "{error}"
    );
}

#[tokio::test]
async fn header_naming_another_algorithm_than_the_key_is_refused() {
    // An ES256 token pointing at the RSA key: the key decides, so there is
    // no ES256 key by that id.
    let key = EncodingKey::from_ec_pem(&read_key("ec_private.pem")).unwrap();
    let token = sign(Algorithm::ES256, Some("test-rsa"), &key, &claims());

    let error = verifier().await.verify(&token, NOW).await.unwrap_err();

    assert!(matches!(error, JwtError::UnknownKey { .. }), "{error}");
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let key = EncodingKey::from_rsa_pem(&read_key("rsa_private.pem")).unwrap();
    let token = sign(Algorithm::RS256, Some("rotated-away"), &key, &claims());

    let error = verifier().await.verify(&token, NOW).await.unwrap_err();

    assert!(matches!(&error, JwtError::UnknownKey { kid: Some(kid), .. } if kid == "rotated-away"));
}

#[tokio::test]
async fn token_without_kid_uses_the_only_key_of_its_algorithm() {
    let key = EncodingKey::from_ec_pem(&read_key("ec_private.pem")).unwrap();
    let token = sign(Algorithm::ES256, None, &key, &claims());

    assert!(verifier().await.verify(&token, NOW).await.is_ok());
}

#[tokio::test]
async fn scopes_are_mapped_from_scope_and_scp() {
    let verifier = verifier().await;

    let scp = rs256(&with(
        without(claims(), "scope"),
        "scp",
        json!(["grounded:ingest", "grounded:nonsense", "admin"]),
    ));
    let none = rs256(&without(claims(), "scope"));

    let principal = verifier.verify(&scp, NOW).await.unwrap();
    assert_eq!(principal.scopes, "ingest".parse().unwrap());
    assert!(!principal.allows(Scope::Admin));
    assert_eq!(
        verifier.verify(&none, NOW).await.unwrap().scopes,
        Scopes::empty()
    );
}

#[tokio::test]
async fn scopes_without_a_prefix_and_collections_claim() {
    let config = JwtConfig {
        collections_claim: Some("grounded_collections".to_owned()),
        ..JwtConfig::new(ISSUER, AUDIENCE, KeySource::JwksFile(key_file("jwks.json")))
    };
    let verifier = JwtVerifier::try_new(config).await.unwrap();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "svc", "exp": NOW + 60,
        "scope": "search grounded:answer",
        "grounded_collections": ["docs"],
    });

    let principal = verifier.verify(&rs256(&claims), NOW).await.unwrap();

    assert_eq!(principal.scopes, "search".parse().unwrap());
    assert!(principal.sees("docs"));
    assert!(!principal.sees("hr"));
}

#[tokio::test]
async fn shared_secret_accepts_hs256_only() {
    let secret = b"a shared secret of at least 32 bytes!".to_vec();
    let verifier = JwtVerifier::try_new(config(KeySource::SharedSecret(secret.clone())))
        .await
        .unwrap();

    let hs256 = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&secret).unwrap(),
        &claims(),
    );
    let wrong = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another secret, also 32 bytes long").unwrap(),
        &claims(),
    );

    assert_eq!(verifier.verify(&hs256, NOW).await.unwrap().id, "jwt:alice");
    let error = verifier.verify(&wrong, NOW).await.unwrap_err();
    assert!(matches!(error, JwtError::BadSignature), "{error}");
    let error = verifier.verify(&rs256(&claims()), NOW).await.unwrap_err();
    assert!(
        matches!(&error, JwtError::AlgorithmNotAccepted { alg } if alg == "RS256"),
        "{error}"
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    let verifier = verifier().await;

    for token in ["", "abc", "a.b.c", "eyJ.eyJ.", "x.y.z.w.v"] {
        let error = verifier.verify(token, NOW).await.unwrap_err();
        assert!(
            matches!(error, JwtError::Malformed { .. }),
            "{token:?}: {error}"
        );
    }
}

#[tokio::test]
async fn jwks_without_usable_keys_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();

    let error = JwtVerifier::try_new(config(KeySource::JwksFile(path)))
        .await
        .unwrap_err();

    assert!(
        matches!(error, KeySourceError::NoUsableKeys { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn authenticator_accepts_tokens_and_reports_their_refusals() {
    let store = Arc::new(crate::authenticate::MemoryStore::default());
    let authenticator = Authenticator::new(store).with_jwt(verifier().await);
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);

    let principal = authenticator
        .authenticate(Some(&es256(&claims())), client, NOW)
        .await
        .unwrap();
    let expired = rs256(&with(claims(), "exp", json!(NOW - 3600)));
    let error = authenticator
        .authenticate(Some(&expired), client, NOW)
        .await
        .unwrap_err();

    assert_eq!(principal.kind, PrincipalKind::Token);
    assert!(
        matches!(error, AuthError::Token(JwtError::Expired)),
        "{error}"
    );
    assert_eq!(error.status(), 401);
    assert_eq!(error.code(), "token_expired");
}

/// A JWKS served over HTTP on a loopback port, whose body can change.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));

        let (served, counted) = (Arc::clone(&body), Arc::clone(&hits));
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        JwksServer { url, body, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The committed JWKS with only the RSA key.
fn rsa_only_jwks() -> String {
    let mut jwks: Value = serde_json::from_slice(&read_key("jwks.json")).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["kid"] == "test-rsa");
    jwks.to_string()
}

#[tokio::test]
async fn jwks_url_is_fetched_again_for_a_new_kid() {
    let server = JwksServer::start(rsa_only_jwks()).await;
    let config = JwtConfig {
        refetch_interval: Duration::ZERO,
        ..config(KeySource::JwksUrl(server.url.clone()))
    };
    let verifier = JwtVerifier::try_new(config).await.unwrap();
    assert_eq!(server.hits(), 1);

    assert!(verifier.verify(&rs256(&claims()), NOW).await.is_ok());
    assert_eq!(server.hits(), 1, "a known kid needs no fetch");

    // The issuer adds its new EC key; a token naming it makes the verifier
    // fetch the set again.
    *server.body.lock().unwrap() = String::from_utf8(read_key("jwks.json")).unwrap();
    assert!(verifier.verify(&es256(&claims()), NOW).await.is_ok());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jwks_url_is_not_fetched_again_within_the_interval() {
    let server = JwksServer::start(rsa_only_jwks()).await;
    let verifier = JwtVerifier::try_new(config(KeySource::JwksUrl(server.url.clone())))
        .await
        .unwrap();
    *server.body.lock().unwrap() = String::from_utf8(read_key("jwks.json")).unwrap();

    for _ in 0..3 {
        let error = verifier.verify(&es256(&claims()), NOW).await.unwrap_err();
        assert!(matches!(error, JwtError::UnknownKey { .. }), "{error}");
    }

    assert_eq!(server.hits(), 1);
    verifier.refresh().await.unwrap();
    assert_eq!(server.hits(), 2);
    assert!(verifier.verify(&es256(&claims()), NOW).await.is_ok());
}

#[tokio::test]
async fn failed_refetch_keeps_the_old_keys_and_says_keys_are_unavailable() {
    let server = JwksServer::start(rsa_only_jwks()).await;
    let config = JwtConfig {
        refetch_interval: Duration::ZERO,
        ..config(KeySource::JwksUrl(server.url.clone()))
    };
    let verifier = JwtVerifier::try_new(config).await.unwrap();
    *server.body.lock().unwrap() = "not json".to_owned();

    let error = verifier.verify(&es256(&claims()), NOW).await.unwrap_err();

    assert!(error.is_unavailable(), "{error}");
    assert_eq!(AuthError::Token(error).status(), 503);
    assert!(verifier.verify(&rs256(&claims()), NOW).await.is_ok());
}
