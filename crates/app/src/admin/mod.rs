//! The admin page at `/admin`, served only when `PUSHWARDEN_ADMIN_TOKEN` is set (otherwise
//! no route exists and `/admin` answers 404 like any unknown path).
//!
//! - `session`: login, sessions, the cookie, and the checks on every form post;
//! - `stats`: the live figures only this page keeps (notification rate, `/send` latency);
//! - `view`: what the page shows, gathered from the hubs, the push service and its store;
//! - `pages`: the HTML, rendered on the server, with the page's security headers.
//!
//! The handlers here are thin: check, call the store (the same calls as
//! `pushwarden installation`), render. Every form works without JavaScript; the page has none.

mod pages;
mod session;
mod stats;
mod view;

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use pushwarden_bitwarden::Notifications;
use pushwarden_push::store::now_ms;
use pushwarden_push::PushService;
use serde::Deserialize;

pub use stats::{record as record_stats, LiveStats};

use session::{Login, Refusal, Sessions};

/// Largest admin form accepted.
const MAX_FORM: usize = 8 * 1024;
/// Longest operator email accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;
/// Longest lookup query or installation id looked at.
const MAX_ID: usize = 200;

pub struct Admin {
    sessions: Sessions,
    push: Arc<PushService>,
    notifications: Arc<Notifications>,
    stats: Arc<LiveStats>,
}

impl Admin {
    pub fn new(
        token: String,
        push: Arc<PushService>,
        notifications: Arc<Notifications>,
        stats: Arc<LiveStats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions: Sessions::new(token),
            push,
            notifications,
            stats,
        })
    }

    async fn dashboard(&self, csrf: &str, notice: Option<String>) -> Response {
        let d = view::dashboard(&self.notifications, &self.push, &self.stats).await;
        pages::dashboard(&d, csrf, notice)
    }
}

/// The admin routes.
pub fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/installations", post(create_installation))
        .route(
            "/admin/installations/{id}/{action}",
            post(change_installation),
        )
        .route("/admin/devices", get(devices))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(admin)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// A missing token is an empty one, refused as a wrong one (403, not 400).
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// A form that changes something, and so carries the session's CSRF token.
trait Posted {
    fn csrf(&self) -> &str;
}

impl Posted for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl Posted for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The posted form and the session it came from, or the answer that refuses it: a form that
/// does not parse (400), or one without this session's CSRF token or from elsewhere (403).
fn accepted<T: Posted>(
    admin: &Admin,
    parts: &Parts,
    form: Result<Form<T>, FormRejection>,
) -> Result<(T, session::Current), Box<Response>> {
    let Form(form) = form.map_err(|e| Box::new(bad_form(e)))?;
    let current = admin
        .sessions
        .check_post(parts, form.csrf())
        .map_err(|r| Box::new(refused(r)))?;
    Ok((form, current))
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(default)]
    q: String,
}

fn bad_form(rejection: FormRejection) -> Response {
    pages::problem(
        StatusCode::BAD_REQUEST,
        &format!("The form could not be read: {}", rejection.body_text()),
    )
}

fn refused(refusal: Refusal) -> Response {
    tracing::warn!(?refusal, "admin: form post refused");
    pages::problem(StatusCode::FORBIDDEN, refusal.message())
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin: the store failed");
    pages::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The database failed: {e}"),
    )
}

async fn home(State(admin): State<Arc<Admin>>, parts: Parts) -> Response {
    match admin.sessions.current(&parts.headers) {
        Some(current) => admin.dashboard(&current.csrf, None).await,
        None => pages::login(StatusCode::OK, None),
    }
}

async fn login(
    State(admin): State<Arc<Admin>>,
    parts: Parts,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !session::same_origin(&parts.headers) {
        return refused(Refusal::CrossOrigin);
    }
    let Form(form) = match form {
        Ok(form) => form,
        Err(e) => return bad_form(e),
    };
    let client = session::client(&parts);
    match admin.sessions.login(client, &form.token) {
        Login::Welcome(current) => {
            tracing::info!(%client, "admin: logged in");
            let cookie = session::session_cookie(&current, session::is_secure(&parts));
            pages::redirect("/admin", Some(cookie))
        }
        Login::WrongToken => {
            tracing::warn!(%client, "admin: wrong token");
            pages::login(StatusCode::UNAUTHORIZED, Some("Wrong token."))
        }
        Login::TooMany { retry_after } => {
            tracing::warn!(%client, "admin: login attempts rate limited");
            let mut response = pages::login(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many login attempts from this address: wait a minute."),
            );
            let secs = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
    }
}

async fn logout(
    State(admin): State<Arc<Admin>>,
    parts: Parts,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    match accepted(&admin, &parts, form) {
        Ok((_, current)) => {
            admin.sessions.logout(&current);
            pages::redirect(
                "/admin",
                Some(session::cleared_cookie(session::is_secure(&parts))),
            )
        }
        Err(refused) => *refused,
    }
}

async fn create_installation(
    State(admin): State<Arc<Admin>>,
    parts: Parts,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Response {
    let (form, current) = match accepted(&admin, &parts, form) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    let email = form.email.trim();
    if email.len() > MAX_EMAIL || email.chars().any(char::is_control) {
        return pages::problem(
            StatusCode::BAD_REQUEST,
            &format!(
                "The email must be at most {MAX_EMAIL} characters, without control characters."
            ),
        );
    }
    let email = (!email.is_empty()).then_some(email);
    match admin
        .push
        .store()
        .installations()
        .create(email, now_ms())
        .await
    {
        Ok((installation, key)) => {
            tracing::info!(id = %installation.id, "admin: installation created");
            let notice = pages::key_notice("Installation created", &installation.id, &key);
            admin.dashboard(&current.csrf, Some(notice)).await
        }
        Err(e) => unavailable(e),
    }
}

async fn change_installation(
    State(admin): State<Arc<Admin>>,
    Path((id, action)): Path<(String, String)>,
    parts: Parts,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (_, current) = match accepted(&admin, &parts, form) {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    if id.len() > MAX_ID {
        return pages::problem(StatusCode::NOT_FOUND, "No such installation.");
    }
    let installations = admin.push.store().installations();
    let now = now_ms();
    let notice = match action.as_str() {
        "enable" | "disable" => {
            let enable = action == "enable";
            match installations.set_enabled(&id, enable, now).await {
                Ok(true) => {
                    tracing::info!(%id, enable, "admin: installation changed");
                    format!(
                        "<p>Installation <code>{}</code> {}.</p>",
                        pages::esc(&id),
                        if enable {
                            "enabled"
                        } else {
                            "disabled: its tokens stop working now"
                        }
                    )
                }
                Ok(false) => return pages::problem(StatusCode::NOT_FOUND, "No such installation."),
                Err(e) => return unavailable(e),
            }
        }
        "rotate-key" => match installations.rotate_key(&id, now).await {
            Ok(Some(key)) => {
                tracing::info!(%id, "admin: installation key rotated");
                pages::key_notice(
                    "Key rotated: the old key and its tokens stop working now",
                    &id,
                    &key,
                )
            }
            Ok(None) => return pages::problem(StatusCode::NOT_FOUND, "No such installation."),
            Err(e) => return unavailable(e),
        },
        _ => {
            return pages::problem(
                StatusCode::NOT_FOUND,
                "Unknown action: enable, disable or rotate-key.",
            )
        }
    };
    admin.dashboard(&current.csrf, Some(notice)).await
}

async fn devices(
    State(admin): State<Arc<Admin>>,
    parts: Parts,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(current) = admin.sessions.current(&parts.headers) else {
        return pages::login(StatusCode::OK, None);
    };
    let q = match query {
        Ok(Query(q)) => q.q,
        Err(e) => {
            return pages::problem(
                StatusCode::BAD_REQUEST,
                &format!("The query could not be read: {}", e.body_text()),
            )
        }
    };
    if q.len() > MAX_ID {
        return pages::problem(
            StatusCode::BAD_REQUEST,
            &format!("A user id or device id is at most {MAX_ID} characters."),
        );
    }
    let lookup = view::lookup(&admin.push, &q).await;
    pages::lookup(&lookup, &current.csrf)
}
