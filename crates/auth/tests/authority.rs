//! Verification against a fake OpenID authority (discovery + JWKS).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use pushwarden_auth::{AuthError, TokenVerifier, VerifierConfig};
use serde_json::json;

fn verifier_for(base: &str, min_refresh: Duration) -> TokenVerifier {
    TokenVerifier::new(VerifierConfig {
        authority: Some(base.to_owned()),
        jwks_min_refresh: min_refresh,
        http_timeout: Duration::from_secs(5),
        ..VerifierConfig::default()
    })
    .expect("authority verifier")
}

/// Claims with the fake authority's issuer.
fn claims_for(issuer: &str) -> serde_json::Value {
    with(user_claims(), "iss", json!(issuer))
}

#[tokio::test]
async fn fetches_lazily_then_uses_cache() {
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    let verifier = verifier_for(&auth.base_url(), Duration::ZERO);
    assert_eq!(verifier.methods(), vec!["authority"]);
    // `new` does not fetch.
    assert_eq!((auth.discovery_hits(), auth.jwks_hits()), (0, 0));

    let token = sign(Algorithm::RS256, Some("k1"), &claims_for(&auth.issuer), &a);
    let claims = verifier.verify(&token).await.expect("first verify");
    assert!(claims.has("scope", "api"));
    assert_eq!((auth.discovery_hits(), auth.jwks_hits()), (1, 1));

    for _ in 0..3 {
        verifier.verify(&token).await.expect("cached verify");
    }
    // Clones share the cache.
    verifier.clone().verify(&token).await.expect("clone verify");
    assert_eq!((auth.discovery_hits(), auth.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn unknown_kid_refetches_after_rotation() {
    let a = rsa_key(RSA_A_PRIVATE);
    let b = rsa_key(RSA_B_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    let verifier = verifier_for(&auth.base_url(), Duration::ZERO);
    let old = sign(Algorithm::RS256, Some("k1"), &claims_for(&auth.issuer), &a);
    verifier.verify(&old).await.expect("old key");

    // Rotate: the authority now publishes k2 only.
    auth.set_keys(vec![jwk(&b, Algorithm::RS256, Some("k2"))]);
    let new = sign(Algorithm::RS256, Some("k2"), &claims_for(&auth.issuer), &b);
    verifier.verify(&new).await.expect("new key after refetch");
    assert_eq!(auth.jwks_hits(), 2);
    // Discovery is not repeated for a JWKS refresh.
    assert_eq!(auth.discovery_hits(), 1);

    // A kid nobody publishes: one refetch, then UnknownKey.
    let bogus = sign(Algorithm::RS256, Some("k9"), &claims_for(&auth.issuer), &b);
    let err = verifier.verify(&bogus).await.expect_err("unknown kid");
    assert!(matches!(err, AuthError::UnknownKey), "{err:?}");
    assert_eq!(auth.jwks_hits(), 3);
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    let verifier = verifier_for(&auth.base_url(), Duration::from_secs(300));
    let good = sign(Algorithm::RS256, Some("k1"), &claims_for(&auth.issuer), &a);
    verifier.verify(&good).await.expect("valid");
    let bogus = sign(
        Algorithm::RS256,
        Some("nope"),
        &claims_for(&auth.issuer),
        &a,
    );
    for _ in 0..5 {
        assert!(matches!(
            verifier.verify(&bogus).await,
            Err(AuthError::UnknownKey)
        ));
    }
    assert_eq!(auth.jwks_hits(), 1);
}

#[tokio::test]
async fn concurrent_verifies_do_not_stampede() {
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    auth.jwks_delay_ms.store(200, Ordering::SeqCst);
    let verifier = verifier_for(&auth.base_url(), Duration::ZERO);
    let token = sign(Algorithm::RS256, Some("k1"), &claims_for(&auth.issuer), &a);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, t) = (verifier.clone(), token.clone());
            tokio::spawn(async move { v.verify(&t).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("join").is_ok());
    }
    assert_eq!((auth.discovery_hits(), auth.jwks_hits()), (1, 1));

    // The same holds for concurrent unknown-kid refreshes.
    let bogus = sign(Algorithm::RS256, Some("zz"), &claims_for(&auth.issuer), &a);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (v, t) = (verifier.clone(), bogus.clone());
            tokio::spawn(async move { v.verify(&t).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.expect("join"),
            Err(AuthError::UnknownKey)
        ));
    }
    assert!(auth.jwks_hits() <= 3, "jwks hits: {}", auth.jwks_hits());
}

#[tokio::test]
async fn unreachable_authority_is_keys_unavailable() {
    // Bind then drop, so the port is (almost certainly) closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let verifier = verifier_for(&format!("http://{addr}"), Duration::ZERO);
    let token = sign(
        Algorithm::RS256,
        Some("k1"),
        &user_claims(),
        &rsa_key(RSA_A_PRIVATE),
    );
    let err = verifier.verify(&token).await.expect_err("unreachable");
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(err.reason(), "keys_unavailable");
    assert!(err.is_server_side());
}

#[tokio::test]
async fn failed_fetch_is_retried_later() {
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    auth.failing.store(true, Ordering::SeqCst);
    let verifier = verifier_for(&auth.base_url(), Duration::from_secs(300));
    let token = sign(Algorithm::RS256, Some("k1"), &claims_for(&auth.issuer), &a);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert_eq!(auth.discovery_hits(), 2);

    auth.failing.store(false, Ordering::SeqCst);
    verifier.verify(&token).await.expect("recovered");
    assert_eq!((auth.discovery_hits(), auth.jwks_hits()), (3, 1));
}

#[tokio::test]
async fn discovery_issuer_is_enforced_unless_overridden() {
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![jwk(&a, Algorithm::RS256, Some("k1"))]).await;
    let verifier = verifier_for(&auth.base_url(), Duration::ZERO);
    let foreign = sign(
        Algorithm::RS256,
        Some("k1"),
        &with(user_claims(), "iss", json!("https://other.example")),
        &a,
    );
    assert!(matches!(
        verifier.verify(&foreign).await,
        Err(AuthError::WrongIssuer)
    ));

    let overridden = TokenVerifier::new(VerifierConfig {
        authority: Some(format!("{}/", auth.base_url())), // trailing slash tolerated
        issuer: Some("https://other.example".into()),
        ..VerifierConfig::default()
    })
    .expect("verifier");
    overridden
        .verify(&foreign)
        .await
        .expect("configured issuer wins");
}

#[tokio::test]
async fn ec_jwks_keys_and_kidless_keys() {
    let ec = ec_key();
    let a = rsa_key(RSA_A_PRIVATE);
    let auth = start_authority(vec![
        jwk(&ec, Algorithm::ES256, Some("ec1")),
        jwk(&a, Algorithm::RS256, None),
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
    ])
    .await;
    let verifier = verifier_for(&auth.base_url(), Duration::ZERO);
    let claims = claims_for(&auth.issuer);

    verifier
        .verify(&sign(Algorithm::ES256, Some("ec1"), &claims, &ec))
        .await
        .expect("ES256 via JWKS");
    verifier
        .verify(&sign(Algorithm::RS256, None, &claims, &a))
        .await
        .expect("kid-less token with kid-less key");
    // HS256 never comes from a JWKS, and the EC key cannot verify RS256.
    let hs = hs256(&claims);
    assert!(matches!(
        verifier.verify(&hs).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
    let mismatched = sign(Algorithm::RS256, Some("ec1"), &claims, &a);
    assert!(matches!(
        verifier.verify(&mismatched).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
    // `use: enc` keys are skipped, so that kid is unknown.
    let enc = sign(Algorithm::RS256, Some("enc"), &claims, &a);
    assert!(matches!(
        verifier.verify(&enc).await,
        Err(AuthError::UnknownKey)
    ));
}

#[tokio::test]
async fn static_pem_and_authority_together() {
    let a = rsa_key(RSA_A_PRIVATE);
    let b = rsa_key(RSA_B_PRIVATE);
    let auth = start_authority(vec![jwk(&b, Algorithm::RS256, Some("kb"))]).await;
    let verifier = TokenVerifier::new(VerifierConfig {
        rsa_public_key_pem: Some(RSA_A_PUBLIC_SPKI.to_vec()),
        authority: Some(auth.base_url()),
        ..VerifierConfig::default()
    })
    .expect("verifier");
    assert_eq!(verifier.methods(), vec!["rsa", "authority"]);
    // Kid-less token: the static key, no fetch.
    let vw = sign(Algorithm::RS256, None, &user_claims(), &a);
    verifier.verify(&vw).await.expect("static key");
    assert_eq!(auth.jwks_hits(), 0);
    // Token with kid: the authority.
    let idp = sign(Algorithm::RS256, Some("kb"), &claims_for(&auth.issuer), &b);
    verifier.verify(&idp).await.expect("jwks key");
    assert_eq!(auth.jwks_hits(), 1);
}
