//! Minter round-trips and claim helpers.

mod common;

use common::*;
use pushwarden_auth::{AuthError, Claims, Minter, TokenVerifier, VerifierConfig};
use serde_json::json;

#[tokio::test]
async fn hs256_round_trip() {
    let token = Minter::Hs256(SECRET.to_vec())
        .mint(&user_claims())
        .expect("mint");
    let verifier = TokenVerifier::new(VerifierConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..VerifierConfig::default()
    })
    .expect("verifier");
    let claims = verifier.verify(&token).await.expect("verify");
    assert_eq!(claims.strings("orgowner"), vec!["o1", "o2"]);
}

#[tokio::test]
async fn rs256_round_trip_with_kid() {
    let minter = Minter::Rs256 {
        private_key_pem: RSA_A_PRIVATE.to_vec(),
        kid: Some("k1".into()),
    };
    let token = minter
        .mint(&with(user_claims(), "iss", json!("x|login")))
        .expect("mint");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.kid.as_deref(), Some("k1"));
    let verifier = TokenVerifier::new(VerifierConfig {
        rsa_public_key_pem: Some(RSA_A_PUBLIC_SPKI.to_vec()),
        issuer: Some("x|login".into()),
        ..VerifierConfig::default()
    })
    .expect("verifier");
    assert!(verifier.verify(&token).await.is_ok());
}

#[test]
fn minter_rejects_bad_input() {
    let hs = Minter::Hs256(SECRET.to_vec());
    assert!(matches!(hs.mint(&json!("str")), Err(AuthError::Config(_))));
    assert!(matches!(
        Minter::Hs256(Vec::new()).mint(&json!({})),
        Err(AuthError::Config(_))
    ));
    let rs = Minter::Rs256 {
        private_key_pem: b"junk".to_vec(),
        kid: None,
    };
    assert!(matches!(rs.mint(&json!({})), Err(AuthError::Config(_))));
    assert!(!format!("{hs:?}").contains("test-secret"));
}

fn claims(value: serde_json::Value) -> Claims {
    Claims(value.as_object().cloned().unwrap_or_default())
}

#[test]
fn claim_helpers() {
    let c = claims(json!({
        "sub": "u1",
        "amr": "Application",
        "scope": "api internal",
        "orgadmin": ["o1", 5, "o2"],
        "n": 3
    }));
    assert_eq!(c.sub(), Some("u1"));
    assert_eq!(c.get_str("n"), None);
    assert_eq!(c.strings("amr"), vec!["Application"]);
    assert_eq!(c.strings("orgadmin"), vec!["o1", "o2"]);
    assert!(c.strings("missing").is_empty());
    assert_eq!(c.scopes(), vec!["api", "internal"]);
    assert!(c.has("scope", "internal"));
    assert!(c.has("orgadmin", "o2"));
    assert!(!c.has("amr", "application"), "ordinal comparison");

    let arr = claims(json!({"scope": ["api", "offline_access"], "amr": ["external"]}));
    assert_eq!(arr.scopes(), vec!["api", "offline_access"]);
    assert!(arr.require_application().is_ok());
    assert!(matches!(
        arr.require_internal(),
        Err(AuthError::Forbidden(_))
    ));
}

#[test]
fn bitwarden_policies() {
    assert!(claims(user_claims()).require_application().is_ok());
    let no_api = claims(json!({"amr": ["Application"], "scope": ["offline_access"]}));
    assert_eq!(
        no_api.require_application().map_err(|e| e.reason()),
        Err("forbidden")
    );
    let wrong_amr = claims(json!({"amr": ["pwd"], "scope": ["api"]}));
    assert!(wrong_amr.require_application().is_err());
    assert!(claims(json!({"scope": "internal"}))
        .require_internal()
        .is_ok());
}
