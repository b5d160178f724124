//! Verification with static key material: HS256 secret and RSA public PEM.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use pushwarden_auth::{AuthError, TokenVerifier, VerifierConfig};
use serde_json::json;

fn hs_verifier() -> TokenVerifier {
    TokenVerifier::new(VerifierConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..VerifierConfig::default()
    })
    .expect("hs256 verifier")
}

fn rsa_verifier(pem: &[u8], issuer: Option<&str>) -> TokenVerifier {
    TokenVerifier::new(VerifierConfig {
        rsa_public_key_pem: Some(pem.to_vec()),
        issuer: issuer.map(str::to_owned),
        ..VerifierConfig::default()
    })
    .expect("rsa verifier")
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn valid_hs256() {
    let claims = hs_verifier()
        .verify(&hs256(&user_claims()))
        .await
        .expect("valid");
    assert_eq!(claims.sub(), Some("4b2b4a3e-54b4-4b8a-9c07-5a2f0f7b0c11"));
    assert!(claims.has("amr", "Application"));
}

#[tokio::test]
async fn valid_rs256_with_spki_and_pkcs1_pem() {
    let issuer = "https://vault.example.com|login";
    let token = sign(
        Algorithm::RS256,
        None,
        &with(user_claims(), "iss", json!(issuer)),
        &rsa_key(RSA_A_PRIVATE),
    );
    for pem in [RSA_A_PUBLIC_SPKI, RSA_A_PUBLIC_PKCS1] {
        let claims = rsa_verifier(pem, Some(issuer))
            .verify(&token)
            .await
            .expect("valid");
        assert_eq!(claims.get_str("device"), Some("d1"));
    }
}

#[tokio::test]
async fn other_rsa_algorithms_accepted_with_rsa_key() {
    let verifier = rsa_verifier(RSA_A_PUBLIC_SPKI, None);
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS512,
    ] {
        let token = sign(alg, None, &user_claims(), &rsa_key(RSA_A_PRIVATE));
        verifier
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
}

#[tokio::test]
async fn surrounding_whitespace_is_trimmed() {
    let token = format!("  {}\n", hs256(&user_claims()));
    assert!(hs_verifier().verify(&token).await.is_ok());
}

#[tokio::test]
async fn expired_token_refused() {
    let token = hs256(&with(user_claims(), "exp", json!(now() - 120)));
    let err = hs_verifier().verify(&token).await.expect_err("expired");
    assert!(matches!(err, AuthError::Expired), "{err:?}");
    assert_eq!(err.reason(), "expired");
}

#[tokio::test]
async fn nbf_in_future_refused() {
    let token = hs256(&with(user_claims(), "nbf", json!(now() + 120)));
    let err = hs_verifier().verify(&token).await.expect_err("immature");
    assert!(matches!(err, AuthError::NotYetValid), "{err:?}");
}

#[tokio::test]
async fn within_leeway_accepted_and_leeway_configurable() {
    let expired_recently = hs256(&with(user_claims(), "exp", json!(now() - 10)));
    let nbf_soon = hs256(&with(user_claims(), "nbf", json!(now() + 10)));
    let verifier = hs_verifier();
    assert!(verifier.verify(&expired_recently).await.is_ok());
    assert!(verifier.verify(&nbf_soon).await.is_ok());

    let strict = TokenVerifier::new(VerifierConfig {
        hs256_secret: Some(SECRET.to_vec()),
        leeway: Duration::ZERO,
        ..VerifierConfig::default()
    })
    .expect("verifier");
    assert!(matches!(
        strict.verify(&expired_recently).await,
        Err(AuthError::Expired)
    ));
    assert!(matches!(
        strict.verify(&nbf_soon).await,
        Err(AuthError::NotYetValid)
    ));
}

#[tokio::test]
async fn missing_exp_refused() {
    let mut claims = user_claims();
    claims.as_object_mut().map(|m| m.remove("exp"));
    let err = hs_verifier()
        .verify(&hs256(&claims))
        .await
        .expect_err("no exp");
    assert!(matches!(err, AuthError::MissingClaim("exp")), "{err:?}");
}

#[tokio::test]
async fn wrong_signature_refused() {
    let other = sign(
        Algorithm::HS256,
        None,
        &user_claims(),
        &EncodingKey::from_secret(b"other"),
    );
    assert!(matches!(
        hs_verifier().verify(&other).await,
        Err(AuthError::BadSignature)
    ));

    let by_b = sign(
        Algorithm::RS256,
        None,
        &user_claims(),
        &rsa_key(RSA_B_PRIVATE),
    );
    let verifier = rsa_verifier(RSA_A_PUBLIC_SPKI, None);
    assert!(matches!(
        verifier.verify(&by_b).await,
        Err(AuthError::BadSignature)
    ));

    // Tampered payload, original signature.
    let good = hs256(&user_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = b64(&with(user_claims(), "sub", json!("someone-else")).to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(matches!(
        hs_verifier().verify(&forged).await,
        Err(AuthError::BadSignature)
    ));
}

#[tokio::test]
async fn wrong_or_missing_issuer_refused() {
    let verifier = rsa_verifier(RSA_A_PUBLIC_SPKI, Some("https://vault.example.com|login"));
    let key = rsa_key(RSA_A_PRIVATE);
    let wrong = sign(
        Algorithm::RS256,
        None,
        &with(
            user_claims(),
            "iss",
            json!("https://evil.example.com|login"),
        ),
        &key,
    );
    let err = verifier.verify(&wrong).await.expect_err("wrong iss");
    assert!(matches!(err, AuthError::WrongIssuer), "{err:?}");
    assert_eq!(err.reason(), "issuer");

    let missing = sign(Algorithm::RS256, None, &user_claims(), &key);
    assert!(matches!(
        verifier.verify(&missing).await,
        Err(AuthError::MissingClaim("iss"))
    ));
}

#[tokio::test]
async fn alg_none_refused() {
    let verifier = hs_verifier();
    let payload = b64(&user_claims().to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let unsigned = format!("{}.{}.", b64(header), payload);
        let err = verifier.verify(&unsigned).await.expect_err("alg none");
        assert!(
            matches!(err, AuthError::AlgorithmNotAllowed(_)),
            "{header}: {err:?}"
        );
        assert_eq!(err.reason(), "algorithm");
        // Also with a junk signature attached.
        let junk = format!("{}.{}.c2ln", b64(header), payload);
        assert!(matches!(
            verifier.verify(&junk).await,
            Err(AuthError::AlgorithmNotAllowed(_))
        ));
    }
}

#[tokio::test]
async fn algorithm_confusion_refused() {
    // HS256 "signed" with the RSA public key bytes as HMAC secret.
    for pem in [RSA_A_PUBLIC_SPKI, RSA_A_PUBLIC_PKCS1] {
        let forged = sign(
            Algorithm::HS256,
            None,
            &user_claims(),
            &EncodingKey::from_secret(pem),
        );
        let rsa_only = rsa_verifier(pem, None);
        let err = rsa_only.verify(&forged).await.expect_err("confusion");
        assert!(matches!(err, AuthError::AlgorithmNotAllowed(_)), "{err:?}");

        // With both methods configured, HS256 is checked against the real
        // secret only, never the RSA key.
        let both = TokenVerifier::new(VerifierConfig {
            hs256_secret: Some(SECRET.to_vec()),
            rsa_public_key_pem: Some(pem.to_vec()),
            ..VerifierConfig::default()
        })
        .expect("verifier");
        assert!(matches!(
            both.verify(&forged).await,
            Err(AuthError::BadSignature)
        ));
    }
    // The reverse: an RS256 token against an HS256-only verifier.
    let rs = sign(
        Algorithm::RS256,
        None,
        &user_claims(),
        &rsa_key(RSA_A_PRIVATE),
    );
    assert!(matches!(
        hs_verifier().verify(&rs).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
    // ES256 needs a JWKS EC key; none is configured.
    let es = sign(Algorithm::ES256, None, &user_claims(), &ec_key());
    let verifier = rsa_verifier(RSA_A_PUBLIC_SPKI, None);
    assert!(matches!(
        verifier.verify(&es).await,
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[tokio::test]
async fn both_methods_pick_by_alg() {
    let both = TokenVerifier::new(VerifierConfig {
        hs256_secret: Some(SECRET.to_vec()),
        rsa_public_key_pem: Some(RSA_A_PUBLIC_SPKI.to_vec()),
        ..VerifierConfig::default()
    })
    .expect("verifier");
    assert_eq!(both.methods(), vec!["hs256", "rsa"]);
    assert!(both.verify(&hs256(&user_claims())).await.is_ok());
    let rs = sign(
        Algorithm::RS256,
        Some("any"),
        &user_claims(),
        &rsa_key(RSA_A_PRIVATE),
    );
    assert!(both.verify(&rs).await.is_ok());
}

#[tokio::test]
async fn malformed_strings_refused() {
    let verifier = hs_verifier();
    assert!(matches!(verifier.verify("").await, Err(AuthError::Missing)));
    assert!(matches!(
        verifier.verify("   ").await,
        Err(AuthError::Missing)
    ));
    let valid = hs256(&user_claims());
    let header = valid.split('.').next().unwrap_or_default().to_owned();
    let cases = vec![
        "garbage".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "....".to_owned(),
        "ü.ö.ä".to_owned(),
        format!("{}.{}", valid, "extra"),
        format!("{header}.!!!.sig"),
        format!("{header}.{}.sig", b64("not json")),
        format!("{header}.{}.sig", b64("[1,2,3]")),
        format!("{}.{}.sig", b64("[]"), b64("{}")),
        format!("{}.{}.sig", b64(r#"{"typ":"JWT"}"#), b64("{}")),
        format!("{}.{}.sig", b64(r#"{"alg":7}"#), b64("{}")),
        "x".repeat(70_000),
    ];
    for token in cases {
        let err = verifier.verify(&token).await.expect_err("malformed");
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::BadSignature),
            "{token:.40}: {err:?}"
        );
    }
    // A validly signed payload that is not a JSON object is malformed.
    let array = sign(
        Algorithm::HS256,
        None,
        &json!([1]),
        &EncodingKey::from_secret(SECRET),
    );
    assert!(matches!(
        verifier.verify(&array).await,
        Err(AuthError::Malformed(_))
    ));
    // An `exp` that is not a number does not count as an `exp`.
    let bad_exp = hs256(&with(user_claims(), "exp", json!("tomorrow")));
    assert!(matches!(
        verifier.verify(&bad_exp).await,
        Err(AuthError::MissingClaim("exp"))
    ));
}

#[test]
fn invalid_configs_refused() {
    let bad = |config: VerifierConfig| match TokenVerifier::new(config) {
        Err(e) => e,
        Ok(_) => panic!("config should be refused"),
    };
    assert!(matches!(
        bad(VerifierConfig::default()),
        AuthError::Config(_)
    ));
    let cases = [
        VerifierConfig {
            hs256_secret: Some(Vec::new()),
            ..VerifierConfig::default()
        },
        VerifierConfig {
            rsa_public_key_pem: Some(b"nope".to_vec()),
            ..VerifierConfig::default()
        },
        VerifierConfig {
            rsa_public_key_pem: Some(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
            ),
            ..VerifierConfig::default()
        },
        // An EC key is not an RSA key.
        VerifierConfig {
            rsa_public_key_pem: Some(EC_P256_PRIVATE.to_vec()),
            ..VerifierConfig::default()
        },
        VerifierConfig {
            authority: Some("not a url".into()),
            ..VerifierConfig::default()
        },
        VerifierConfig {
            authority: Some("ftp://example.com".into()),
            ..VerifierConfig::default()
        },
    ];
    for config in cases {
        let err = bad(config);
        assert_eq!(err.reason(), "config", "{err:?}");
    }
}

#[test]
fn verifier_is_send_sync_and_config_debug_redacts() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<TokenVerifier>();
    let config = VerifierConfig {
        hs256_secret: Some(SECRET.to_vec()),
        ..VerifierConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("test-secret"), "{shown}");
    assert_eq!(
        TokenVerifier::new(config).map(|v| v.methods()).ok(),
        Some(vec!["hs256"])
    );
}
