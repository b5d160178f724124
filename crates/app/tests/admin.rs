//! The admin page through HTTP, as a browser without JavaScript uses it: off without a token,
//! the login and its cookie, the checks on every form post, installations managed through the
//! forms, the live counts, and a device's delivery attempts after a push to a fake provider.

mod common;

use std::net::SocketAddr;

use common::providers::{ok, Providers, WAIT};
use common::{config, http, start, SEND_KEY};
use pushwarden::config::Config;
use pushwarden_fakes::Reply;
use pushwarden_push::store::SecretCheck;
use serde_json::json;

const ADMIN_TOKEN: &str = "the-admin-token-of-these-tests";
const USER: &str = "d2ea5b72-1111-4a4a-9f9f-0000000000a1";

fn with_admin(mut c: Config) -> Config {
    c.admin_token = Some(ADMIN_TOKEN.into());
    c
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(common::STEP)
        .build()
        .expect("client")
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// A logged-in admin session: its cookie and the page's CSRF token.
struct Session {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = body[start..].find('"').expect("end of the token") + start;
    body[start..end].to_owned()
}

/// The text of the element with `id` (up to its first tag end), for figures on the page.
fn element(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {body}"))
        + marker.len();
    let end = body[start..].find('<').expect("end of element") + start;
    body[start..end].to_owned()
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<String>,
    extra: &[(&str, &str)],
) -> Page {
    let url = format!("http://{addr}{path}");
    let mut r = match method {
        "POST" => browser().post(url),
        _ => browser().get(url),
    };
    if let Some(cookie) = cookie {
        r = r.header("cookie", cookie);
    }
    if let Some(body) = body {
        r = r
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        // A browser's same-origin post, unless the test says otherwise.
        if !extra.iter().any(|(name, _)| *name == "origin") {
            r = r.header("origin", format!("http://{addr}"));
        }
    }
    for (name, value) in extra {
        r = r.header(*name, *value);
    }
    let response = r.send().await.expect("request");
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.expect("body"),
    }
}

async fn log_in(addr: SocketAddr) -> Session {
    let page = request(
        addr,
        "POST",
        "/admin/login",
        None,
        Some(form(&[("token", ADMIN_TOKEN)])),
        &[],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let set_cookie = page.headers["set-cookie"].to_str().expect("cookie");
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let dashboard = request(addr, "GET", "/admin", Some(&cookie), None, &[]).await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("id=\"live\""), "{}", dashboard.body);
    Session {
        addr,
        csrf: csrf_of(&dashboard.body),
        cookie,
    }
}

impl Session {
    async fn get(&self, path: &str) -> Page {
        request(self.addr, "GET", path, Some(&self.cookie), None, &[]).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        request(
            self.addr,
            "POST",
            path,
            Some(&self.cookie),
            Some(form(&all)),
            &[],
        )
        .await
    }
}

#[tokio::test]
async fn without_a_token_there_is_no_admin_page() {
    let server = start(config()).await;
    for (method, path) in [
        ("GET", "/admin"),
        ("POST", "/admin/login"),
        ("GET", "/admin/devices?q=x"),
    ] {
        let body = (method == "POST").then(|| form(&[("token", ADMIN_TOKEN)]));
        let page = request(server.addr, method, path, None, body, &[]).await;
        assert_eq!(page.status, 404, "{method} {path}");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn login_takes_the_token_only_and_sets_a_strict_cookie() {
    let server = start(with_admin(config())).await;
    let addr = server.addr;
    let login = request(addr, "GET", "/admin", None, None, &[]).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("action=\"/admin/login\""));
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["cache-control"], "no-store");

    let wrong = request(
        addr,
        "POST",
        "/admin/login",
        None,
        Some(form(&[("token", "not-the-admin-token")])),
        &[],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.headers.get("set-cookie").is_none());
    assert!(wrong.body.contains("Wrong token"));

    let right = request(
        addr,
        "POST",
        "/admin/login",
        None,
        Some(form(&[("token", ADMIN_TOKEN)])),
        &[],
    )
    .await;
    assert_eq!(right.status, 303);
    assert_eq!(right.headers["location"], "/admin");
    let cookie = right.headers["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    // Through a trusted proxy (loopback is trusted by default) that terminated TLS.
    let proxied = request(
        addr,
        "POST",
        "/admin/login",
        None,
        Some(form(&[("token", ADMIN_TOKEN)])),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(proxied.status, 303);
    let cookie = proxied.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A made-up session is no session.
    let forged = request(
        addr,
        "GET",
        "/admin",
        Some("pushwarden_admin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        None,
        &[],
    )
    .await;
    assert!(forged.body.contains("action=\"/admin/login\""));
    server.shutdown().await.expect("shutdown");
}

/// Over pushwarden's own TLS the session cookie is `Secure`.
#[tokio::test]
async fn over_tls_the_cookie_is_secure() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let mut c = with_admin(config());
    std::fs::create_dir_all(&c.data_dir).expect("data dir");
    let cert = c.data_dir.join("cert.pem");
    let key = c.data_dir.join("key.pem");
    common::write_private(&cert, certified.cert.pem().as_bytes());
    common::write_private(&key, certified.signing_key.serialize_pem().as_bytes());
    c.tls.cert_file = Some(cert);
    c.tls.key_file = Some(key);
    let server = start(c).await;
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("root");
    let client = reqwest::Client::builder()
        .tls_certs_only([root])
        .resolve("localhost", server.addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(common::STEP)
        .build()
        .expect("client");
    let origin = format!("https://localhost:{}", server.addr.port());
    let response = client
        .post(format!("{origin}/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &origin)
        .body(form(&[("token", ADMIN_TOKEN)]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn logins_are_rate_limited_per_address() {
    let server = start(with_admin(config())).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let page = request(
            server.addr,
            "POST",
            "/admin/login",
            None,
            Some(form(&[("token", "guessing-the-admin-token")])),
            &[],
        )
        .await;
        statuses.push(page.status);
        if page.status == 429 {
            assert!(page.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn every_form_post_needs_the_session_its_csrf_token_and_this_origin() {
    let server = start(with_admin(config())).await;
    let addr = server.addr;
    let session = log_in(addr).await;
    let create = |csrf: Option<&str>| {
        let mut fields = vec![("email", "ops@example.com")];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        form(&fields)
    };
    // No CSRF token, a wrong one, another session's.
    let other = log_in(addr).await;
    for csrf in [None, Some("forged"), Some(other.csrf.as_str())] {
        let page = request(
            addr,
            "POST",
            "/admin/installations",
            Some(&session.cookie),
            Some(create(csrf)),
            &[],
        )
        .await;
        assert_eq!(page.status, 403, "csrf {csrf:?}: {}", page.body);
    }
    // The right token, but posted from another site.
    let cross = request(
        addr,
        "POST",
        "/admin/installations",
        Some(&session.cookie),
        Some(create(Some(&session.csrf))),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(cross.status, 403);
    // A browser that says it is a cross-site request.
    let fetch_site = request(
        addr,
        "POST",
        "/admin/installations",
        Some(&session.cookie),
        Some(create(Some(&session.csrf))),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(fetch_site.status, 403);
    // No session at all.
    let anonymous = request(
        addr,
        "POST",
        "/admin/installations",
        None,
        Some(create(Some(&session.csrf))),
        &[],
    )
    .await;
    assert_eq!(anonymous.status, 403);
    assert!(server
        .push
        .store()
        .installations()
        .list()
        .await
        .unwrap()
        .is_empty());

    // Logging out ends the session: its cookie and token no longer work.
    let out = session.post("/admin/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = session.post("/admin/installations", &[("email", "")]).await;
    assert_eq!(after.status, 403);
    server.shutdown().await.expect("shutdown");
}

fn new_key(body: &str) -> (String, String) {
    (element(body, "new-id"), element(body, "new-key"))
}

async fn check(server: &pushwarden::server::Server, id: &str, key: &str) -> SecretCheck {
    server
        .push
        .store()
        .installations()
        .check_secret(id, key)
        .await
        .expect("check_secret")
}

#[tokio::test]
async fn installations_are_created_disabled_enabled_and_rotated_through_the_forms() {
    let server = start(with_admin(config())).await;
    let session = log_in(server.addr).await;

    let created = session
        .post("/admin/installations", &[("email", "ops@example.com")])
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let (id, key) = new_key(&created.body);
    assert_eq!(key.len(), 30);
    assert!(matches!(
        check(&server, &id, &key).await,
        SecretCheck::Valid(_)
    ));
    assert!(created.body.contains("ops@example.com"));
    // The key is shown once: the dashboard does not show it again.
    let again = session.get("/admin").await;
    assert!(again.body.contains(&id));
    assert!(!again.body.contains(&key));
    assert!(again.body.contains("never"), "no activity yet");

    let disabled = session
        .post(&format!("/admin/installations/{id}/disable"), &[])
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert_eq!(check(&server, &id, &key).await, SecretCheck::Disabled);
    let enabled = session
        .post(&format!("/admin/installations/{id}/enable"), &[])
        .await;
    assert_eq!(enabled.status, 200);
    assert!(matches!(
        check(&server, &id, &key).await,
        SecretCheck::Valid(_)
    ));

    let rotated = session
        .post(&format!("/admin/installations/{id}/rotate-key"), &[])
        .await;
    assert_eq!(rotated.status, 200);
    let (same_id, new) = new_key(&rotated.body);
    assert_eq!(same_id, id);
    assert_ne!(new, key);
    assert_eq!(check(&server, &id, &key).await, SecretCheck::WrongSecret);
    assert!(matches!(
        check(&server, &id, &new).await,
        SecretCheck::Valid(_)
    ));

    // Unknown installations and actions are 404; a bad email is 400.
    let unknown = session
        .post("/admin/installations/no-such-id/disable", &[])
        .await;
    assert_eq!(unknown.status, 404);
    let action = session
        .post(&format!("/admin/installations/{id}/delete"), &[])
        .await;
    assert_eq!(action.status, 404);
    let long = "x".repeat(300);
    let bad = session
        .post("/admin/installations", &[("email", &long)])
        .await;
    assert_eq!(bad.status, 400);

    // A token request is activity, recorded in the store and shown.
    let token = http()
        .post(format!("http://{}/connect/token", server.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("scope", "api.push"),
            ("client_id", &format!("installation.{id}")),
            ("client_secret", &new),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let installation = server
        .push
        .store()
        .installations()
        .get(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(installation.last_activity_ms.is_some());
    assert!(!session.get("/admin").await.body.contains("never"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_dashboard_counts_sends_and_connections() {
    let server = start(with_admin(config())).await;
    let session = log_in(server.addr).await;
    let before = session.get("/admin").await.body;
    assert_eq!(element(&before, "notifications-15m"), "0");
    assert_eq!(element(&before, "connections-hub"), "0");

    let client = common::connect_user(
        server.addr,
        USER,
        None,
        pushwarden_client::Protocol::MessagePack,
    )
    .await;
    common::wait_for_connections(&server, 1).await;
    for _ in 0..3 {
        common::send(
            server.addr,
            &json!({"type": 5, "payload": {"userId": USER, "date": "2026-12-03T10:00:00Z"}}),
        )
        .await;
    }
    let after = session.get("/admin").await.body;
    assert_eq!(element(&after, "notifications-15m"), "3");
    assert_eq!(element(&after, "connections-hub"), "1");
    assert!(
        after.contains("<td>hub</td><td>WebSockets</td><td>messagepack</td><td class=\"n\">1</td>"),
        "{after}"
    );
    assert!(after.contains("id=\"send-p99\""));
    assert!(after.contains("<svg id=\"chart\""));
    drop(client);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_device_lookup_shows_its_recent_attempts_and_outcomes() {
    let p = Providers::start().await;
    let server = start(with_admin(p.config())).await;
    let token = common::providers::token('f');
    ok(
        &server,
        "POST",
        "/push/register",
        json!({"deviceId": "phone-1", "userId": USER, "identifier": "ident-phone-1",
               "type": 0, "pushToken": token}),
    )
    .await;
    // FCM is unavailable once, then takes the push.
    p.fcm.script(&token, Reply::new(503, "UNAVAILABLE"), 1);
    let (status, answer) = common::send_raw(
        server.addr,
        Some(&format!("Bearer {SEND_KEY}")),
        json!({"type": 5, "payload": {"userId": USER, "date": "2026-12-03T10:00:00Z"}}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    p.fcm.wait_for(1, WAIT).await;
    common::providers::wait_pending(&server, 0).await;

    let session = log_in(server.addr).await;
    for query in [USER, "phone-1"] {
        let page = session.get(&format!("/admin/devices?q={query}")).await;
        assert_eq!(page.status, 200);
        let body = page.body;
        assert!(body.contains("Device <code>phone-1</code>"), "{body}");
        assert!(body.contains("token <code>ffffffff…</code>"), "{body}");
        assert!(!body.contains(&token), "the whole push token is not shown");
        // Newest first: delivered on the second attempt, after a retry.
        let delivered = body.find(">delivered<").expect("a delivered attempt");
        let retry = body.find(">retry<").expect("a retried attempt");
        assert!(delivered < retry, "{body}");
        assert!(body.contains("SyncVault (5)"), "{body}");
    }
    let nothing = session.get("/admin/devices?q=nobody").await;
    assert!(nothing.body.contains("id=\"no-devices\""));
    // Markup in a query is shown as text.
    let markup = session.get("/admin/devices?q=%3Cscript%3E").await;
    assert!(markup.body.contains("&lt;script&gt;"));
    assert!(!markup.body.contains("<script>"));

    // The provider's error shows on the dashboard.
    let dashboard = session.get("/admin").await.body;
    assert!(dashboard.contains("retry: <code>"), "{dashboard}");
    server.shutdown().await.expect("shutdown");
}
