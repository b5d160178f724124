//! The admin page's HTML, rendered on the server: no script, no external asset, one inline
//! stylesheet allowed by a per-response CSP nonce, and the notification chart as inline SVG.
//! Everything that comes from outside (ids, emails, tokens, provider errors) goes through
//! [`esc`].

use std::fmt::Write;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use pushwarden_model::PushType;
use pushwarden_push::journal::Attempt;
use pushwarden_push::registration::{environment_name, Channel, Registration};

use super::session::nonce;
use super::stats::{BUCKET, BUCKETS};
use super::view::{Dashboard, DeviceView, Lookup, MAX_USER_DEVICES};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f4f5f8}
header{background:#175ddc;color:#fff;padding:10px 20px;display:flex;align-items:center;gap:16px}
header h1{font-size:18px;margin:0;flex:1}
header a{color:#fff}
header button{color:#fff;background:transparent;border:1px solid #fff;border-radius:4px;padding:2px 10px}
main{padding:12px 20px;max-width:1200px}
section{background:#fff;border:1px solid #d8dbe3;border-radius:6px;padding:10px 16px;margin:12px 0}
h2{font-size:16px;margin:4px 0 8px}
h3{font-size:14px;margin:10px 0 4px}
table{border-collapse:collapse;margin:4px 0}
th,td{text-align:left;padding:3px 10px 3px 0;border-bottom:1px solid #eceef3;vertical-align:top}
th{font-weight:600;color:#4a5163}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,monospace;word-break:break-all}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:0 16px}
.figure{font-size:22px;font-weight:600}
.muted{color:#6b7285}
.ok{color:#1a7f37}.bad{color:#b3261e;font-weight:600}
.notice{background:#fff8d6;border-color:#e5c950}
.key{font:16px ui-monospace,monospace;background:#eef3ff;padding:6px 10px;border-radius:4px;display:inline-block}
form.inline{display:inline}
button{cursor:pointer}
input[type=text],input[type=password],input[type=email]{padding:4px 6px;min-width:260px}
svg{max-width:100%;height:auto;display:block}
";

/// A whole page, with the admin page's security headers.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let nonce = nonce();
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · pushwarden admin</title><link rel=\"icon\" href=\"data:,\">\
         <style nonce=\"{nonce}\">{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers, Some(&nonce));
    response
}

/// The headers every admin answer carries: a CSP that allows no script and only this
/// answer's stylesheet, no framing, no caching, no sniffing, and no referrer to other sites.
pub fn secure_headers(headers: &mut http::HeaderMap, nonce: Option<&str>) {
    let style = nonce.map_or_else(|| "'none'".to_owned(), |n| format!("'nonce-{n}'"));
    let csp = format!(
        "default-src 'none'; style-src {style}; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A redirect after a form post (`303 See Other`), with the admin headers and any cookie.
pub fn redirect(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    secure_headers(headers, None);
    response
}

pub fn login(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"bad\" id=\"login-error\">{}</p>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "<header><h1>pushwarden admin</h1></header><main><section><h2>Log in</h2>{message}\
         <form method=\"post\" action=\"/admin/login\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" \
         autocomplete=\"current-password\" required autofocus></label> \
         <button type=\"submit\" id=\"login\">Log in</button></form>\
         <p class=\"muted\">The token is the service's <code>PUSHWARDEN_ADMIN_TOKEN</code>.</p>\
         </section></main>"
    );
    page(status, "Log in", &body)
}

/// A refusal or an error, with a way back.
pub fn problem(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<header><h1>pushwarden admin</h1></header><main><section>\
         <h2>{}</h2><p id=\"problem\">{}</p><p><a href=\"/admin\">Back to the admin page</a></p>\
         </section></main>",
        status.as_u16(),
        esc(message)
    );
    page(status, status.canonical_reason().unwrap_or("Error"), &body)
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn duration(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(10) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

fn push_type(t: u8) -> String {
    PushType::from_u8(t).map_or_else(|| t.to_string(), |p| format!("{} ({t})", p.name()))
}

/// The page's frame: header with the logout form, then `content`.
fn frame(csrf: &str, notice: &str, content: &str) -> String {
    format!(
        "<header><h1>pushwarden admin</h1><a href=\"/admin\" id=\"refresh\">Refresh</a>\
         <form class=\"inline\" method=\"post\" action=\"/admin/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"logout\">Log out</button></form></header>\
         <main>{notice}{content}</main>",
        esc(csrf)
    )
}

/// The dashboard, with an optional notice on top (an action's result, a new key).
pub fn dashboard(d: &Dashboard, csrf: &str, notice: Option<String>) -> Response {
    let mut s = String::new();
    live(&mut s, d);
    providers(&mut s, d);
    queue(&mut s, d);
    installations(&mut s, d, csrf);
    lookup_form(&mut s, "");
    let notice = notice
        .map(|n| format!("<section class=\"notice\" id=\"notice\">{n}</section>"))
        .unwrap_or_default();
    page(StatusCode::OK, "Dashboard", &frame(csrf, &notice, &s))
}

fn live(s: &mut String, d: &Dashboard) {
    let window_total: u64 = d.notifications.iter().sum();
    let last_minute: u64 = d.notifications.iter().rev().take(12).sum();
    let _ = write!(
        s,
        "<section id=\"live\"><h2>Live</h2><p class=\"muted\">Up {}; figures of this node.</p>\
         <div class=\"grid\"><div><h3>Connections</h3>",
        humantime::format_duration(Duration::from_secs(d.uptime.as_secs()))
    );
    s.push_str("<table id=\"connections\"><tr><th>hub</th><th>transport</th><th>protocol</th><th>open</th></tr>");
    for hub in &d.hubs {
        for t in &hub.tallies {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                hub.name, t.transport, t.protocol, t.open
            );
        }
        let _ = write!(
            s,
            "<tr><th>{}</th><th colspan=\"2\">all (handshakes included)</th>\
             <td class=\"n\" id=\"connections-{}\">{}</td></tr>",
            hub.name, hub.name, hub.total
        );
    }
    s.push_str("</table></div><div><h3>Notifications</h3>");
    let _ = write!(
        s,
        "<p><span class=\"figure\" id=\"notifications-15m\">{window_total}</span> accepted in the \
         last 15 minutes, <span id=\"notifications-1m\">{last_minute}</span> in the last minute \
         (<code>/send</code> and <code>/push/send</code>).</p>"
    );
    match &d.latency {
        Some(l) => {
            let _ = write!(
                s,
                "<p><code>/send</code> latency over the last {} sends: p50 \
                 <b id=\"send-p50\">{}</b>, p99 <b id=\"send-p99\">{}</b>, max {}.</p>",
                l.samples,
                duration(l.p50),
                duration(l.p99),
                duration(l.max)
            );
        }
        None => s.push_str(
            "<p class=\"muted\" id=\"send-p50\">No <code>/send</code> since the start.</p>",
        ),
    }
    s.push_str("</div></div>");
    chart(s, &d.notifications);
    s.push_str("</section>");
}

/// Notifications per second as bars, one per 5-second bucket, oldest on the left.
fn chart(s: &mut String, buckets: &[u64]) {
    const W: usize = 4;
    const H: f64 = 100.0;
    let seconds = BUCKET.as_secs_f64();
    let peak = buckets.iter().copied().max().unwrap_or(0);
    let top = (peak as f64 / seconds).max(1.0);
    let width = BUCKETS * W;
    let _ = write!(
        s,
        "<svg id=\"chart\" role=\"img\" viewBox=\"0 0 {} 130\" width=\"{}\" height=\"130\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>Notifications per second, last 15 minutes</title>\
         <rect x=\"40\" y=\"5\" width=\"{width}\" height=\"100\" fill=\"#f7f8fb\" stroke=\"#d8dbe3\"/>",
        width + 50,
        width + 50
    );
    for (i, &n) in buckets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let rate = n as f64 / seconds;
        let h = (rate / top * H).max(1.0);
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\" fill=\"#175ddc\"><title>{rate:.1}/s</title></rect>",
            40 + i * W,
            5.0 + H - h,
            W - 1
        );
    }
    let _ = write!(
        s,
        "<text x=\"36\" y=\"14\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5163\">{top:.1}/s</text>\
         <text x=\"36\" y=\"105\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5163\">0</text>\
         <text x=\"40\" y=\"120\" font-size=\"10\" fill=\"#4a5163\">15 min ago</text>\
         <text x=\"{}\" y=\"120\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5163\">now</text></svg>",
        40 + width
    );
}

fn providers(s: &mut String, d: &Dashboard) {
    s.push_str("<section id=\"providers\"><h2>Providers</h2><table><tr><th>provider</th><th>configured</th><th>state</th><th>last errors (newest first)</th></tr>");
    for p in &d.providers {
        let state = match (&p.error, p.configured) {
            (Some(e), _) => format!("<span class=\"bad\">misconfigured: {}</span>", esc(e)),
            (None, true) => "<span class=\"ok\">ok</span>".to_owned(),
            (None, false) => "<span class=\"muted\">off</span>".to_owned(),
        };
        let mut errors = String::new();
        for e in &p.last_errors {
            let _ = write!(
                errors,
                "<div><span class=\"muted\">{}</span> {}: <code>{}</code></div>",
                time(e.at_ms),
                e.outcome,
                esc(&e.detail)
            );
        }
        if errors.is_empty() {
            errors.push_str("<span class=\"muted\">none</span>");
        }
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{errors}</td></tr>",
            p.name,
            if p.configured { "yes" } else { "no" }
        );
    }
    s.push_str("</table></section>");
}

fn queue(s: &mut String, d: &Dashboard) {
    s.push_str("<section id=\"queue\"><h2>Pushes</h2><div class=\"grid\"><div><h3>Pending</h3>");
    match &d.pending {
        Ok(rows) if rows.is_empty() => s.push_str("<p id=\"pending\">None pending.</p>"),
        Ok(rows) => {
            s.push_str("<table id=\"pending\"><tr><th>platform</th><th>pending</th><th>of which retrying</th></tr>");
            for r in rows {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&r.platform),
                    r.pending,
                    r.retrying
                );
            }
            s.push_str("</table>");
        }
        Err(e) => {
            let _ = write!(s, "<p class=\"bad\">Database: {}</p>", esc(e));
        }
    }
    s.push_str("<h3>Dropped since the start</h3>");
    if d.dropped.is_empty() {
        s.push_str("<p id=\"dropped\">None dropped.</p>");
    } else {
        s.push_str(
            "<table id=\"dropped\"><tr><th>provider</th><th>reason</th><th>pushes</th></tr>",
        );
        for (provider, reason, n) in &d.dropped {
            let _ = write!(
                s,
                "<tr><td>{provider}</td><td>{reason}</td><td class=\"n\">{n}</td></tr>"
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</div><div><h3>Registered devices</h3>");
    match &d.registrations {
        Ok(rows) if rows.is_empty() => s.push_str("<p>None registered.</p>"),
        Ok(rows) => {
            s.push_str("<table id=\"registrations\"><tr><th>platform</th><th>devices</th></tr>");
            for (platform, n) in rows {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"n\">{n}</td></tr>",
                    esc(platform)
                );
            }
            s.push_str("</table>");
        }
        Err(e) => {
            let _ = write!(s, "<p class=\"bad\">Database: {}</p>", esc(e));
        }
    }
    s.push_str("<h3>Upstream relay outbox</h3>");
    match &d.outbox {
        None => s.push_str("<p class=\"muted\" id=\"outbox\">No upstream relay configured.</p>"),
        Some(Ok(n)) => {
            let _ = write!(s, "<p id=\"outbox\">{n} requests waiting.</p>");
        }
        Some(Err(e)) => {
            let _ = write!(s, "<p class=\"bad\" id=\"outbox\">Database: {}</p>", esc(e));
        }
    }
    s.push_str("</div></div></section>");
}

fn action(csrf: &str, id: &str, action: &str, label: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/admin/installations/{}/{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" name=\"do\" value=\"{action}\">{label}</button></form>",
        esc(id),
        esc(csrf)
    )
}

fn installations(s: &mut String, d: &Dashboard, csrf: &str) {
    s.push_str("<section id=\"installations\"><h2>Relay installations</h2>");
    match &d.installations {
        Ok(list) if list.is_empty() => s.push_str("<p>No installations.</p>"),
        Ok(list) => {
            s.push_str("<table id=\"installation-list\"><tr><th>id</th><th>state</th><th>email</th><th>devices</th><th>created</th><th>last activity</th><th></th></tr>");
            for v in list {
                let i = &v.installation;
                let toggle = if i.enabled {
                    action(csrf, &i.id, "disable", "Disable")
                } else {
                    action(csrf, &i.id, "enable", "Enable")
                };
                let _ = write!(
                    s,
                    "<tr data-id=\"{id}\"><td><code>{id}</code></td><td>{}</td><td>{}</td>\
                     <td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{toggle} {}</td></tr>",
                    if i.enabled {
                        "<span class=\"ok\">enabled</span>"
                    } else {
                        "<span class=\"bad\">disabled</span>"
                    },
                    esc(i.email.as_deref().unwrap_or("")),
                    v.devices,
                    time(i.created_ms),
                    i.last_activity_ms.map_or_else(|| "never".to_owned(), time),
                    action(csrf, &i.id, "rotate-key", "Rotate key"),
                    id = esc(&i.id),
                );
            }
            s.push_str("</table>");
        }
        Err(e) => {
            let _ = write!(s, "<p class=\"bad\">Database: {}</p>", esc(e));
        }
    }
    let _ = write!(
        s,
        "<h3>New installation</h3><form method=\"post\" action=\"/admin/installations\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Operator's email (optional) <input type=\"email\" name=\"email\" id=\"email\" maxlength=\"254\"></label> \
         <button type=\"submit\" id=\"create\">Create installation</button></form>\
         <p class=\"muted\">Its key is shown once, on the next page. Last activity: the last token or \
         relay request, to the minute.</p></section>",
        esc(csrf)
    );
}

/// The notice that shows a new key, once.
pub fn key_notice(what: &str, id: &str, key: &str) -> String {
    format!(
        "<h2>{}</h2><p>Installation <code id=\"new-id\">{}</code>, key:</p>\
         <p><span class=\"key\" id=\"new-key\">{}</span></p>\
         <p>Copy the key now: it is not shown again (only a hash of it is kept). A Vaultwarden \
         sets <code>PUSH_INSTALLATION_ID</code> and <code>PUSH_INSTALLATION_KEY</code> to these.</p>",
        esc(what),
        esc(id),
        esc(key)
    )
}

fn lookup_form(s: &mut String, query: &str) {
    let _ = write!(
        s,
        "<section id=\"lookup\"><h2>Device lookup</h2>\
         <form method=\"get\" action=\"/admin/devices\">\
         <label>User id or device id <input type=\"text\" name=\"q\" id=\"q\" value=\"{}\" maxlength=\"200\" required></label> \
         <button type=\"submit\" id=\"find\">Look up</button></form>\
         <p class=\"muted\">A device's recent delivery attempts are kept in memory by this node \
         (the last 10 for each of the last 10,000 devices tried) and lost on restart. Relayed \
         devices are stored as <code>installation-id_device-id</code>.</p></section>",
        esc(query)
    );
}

fn channel(r: &Registration) -> String {
    match &r.channel {
        // Enough to tell tokens apart, not enough to use one.
        Channel::Token(t) => {
            let shown: String = t.chars().take(8).collect();
            format!(
                "token <code>{}…</code> ({} characters)",
                esc(&shown),
                t.len()
            )
        }
        Channel::WebPush { endpoint, .. } => {
            let origin = url::Url::parse(endpoint)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| "?".to_owned());
            format!("endpoint at <code>{}</code>", esc(&origin))
        }
    }
}

fn device(s: &mut String, v: &DeviceView) {
    let _ = write!(
        s,
        "<section class=\"device\"><h3>Device <code>{}</code></h3>",
        esc(&v.device_id)
    );
    match &v.registration {
        None => s.push_str(
            "<p class=\"bad\">Not registered (any more): removed as dead, or unregistered.</p>",
        ),
        Some(r) => {
            let _ = write!(
                s,
                "<table><tr><th>user</th><td><code>{}</code></td></tr>\
                 <tr><th>platform</th><td>{}{}</td></tr>\
                 <tr><th>channel</th><td>{}</td></tr>\
                 <tr><th>device type</th><td>{}</td></tr>\
                 <tr><th>identifier</th><td><code>{}</code></td></tr>\
                 <tr><th>organizations</th><td><code>{}</code></td></tr>\
                 <tr><th>installation</th><td><code>{}</code></td></tr>\
                 <tr><th>relayed for</th><td><code>{}</code></td></tr>\
                 <tr><th>registered</th><td>{}, updated {}</td></tr></table>",
                esc(&r.user_id),
                r.platform.as_str(),
                r.apns_environment
                    .map(|e| format!(" ({})", environment_name(e)))
                    .unwrap_or_default(),
                channel(r),
                r.device_type,
                esc(r.identifier.as_deref().unwrap_or("")),
                esc(&r.organization_ids.join(", ")),
                esc(r.installation_id.as_deref().unwrap_or("")),
                esc(r.owner.as_deref().unwrap_or("this server")),
                time(r.created_ms),
                time(r.updated_ms)
            );
        }
    }
    if v.attempts.is_empty() {
        s.push_str("<p class=\"muted attempts\">No delivery attempts seen by this node since its start.</p>");
    } else {
        s.push_str("<table class=\"attempts\"><tr><th>when</th><th>provider</th><th>outcome</th><th>push</th><th>attempt</th><th>detail</th></tr>");
        for a in &v.attempts {
            attempt_row(s, a);
        }
        s.push_str("</table>");
    }
    s.push_str("</section>");
}

fn attempt_row(s: &mut String, a: &Attempt) {
    let class = if a.outcome == "delivered" {
        "ok"
    } else {
        "bad"
    };
    let _ = write!(
        s,
        "<tr><td>{}</td><td>{}</td><td class=\"{class} outcome\">{}</td><td>{}</td>\
         <td class=\"n\">{}</td><td><code>{}</code></td></tr>",
        time(a.at_ms),
        a.provider,
        a.outcome,
        push_type(a.push_type),
        a.earlier_attempts + 1,
        esc(&a.detail)
    );
}

pub fn lookup(l: &Lookup, csrf: &str) -> Response {
    let mut s = String::new();
    lookup_form(&mut s, &l.query);
    if let Some(e) = &l.error {
        let _ = write!(s, "<p class=\"bad\">Database: {}</p>", esc(e));
    }
    if !l.query.is_empty() {
        let _ = write!(
            s,
            "<section id=\"results\"><h2>{} found for <code>{}</code></h2>",
            l.devices.len(),
            esc(&l.query)
        );
        if l.devices.is_empty() {
            s.push_str("<p id=\"no-devices\">No registration has this device id or user id, and no recent attempt names it.</p>");
        }
        if l.devices.len() >= MAX_USER_DEVICES as usize {
            let _ = write!(
                s,
                "<p class=\"muted\">The {MAX_USER_DEVICES} most recently updated shown.</p>"
            );
        }
        s.push_str("</section>");
        for v in &l.devices {
            device(&mut s, v);
        }
    }
    page(StatusCode::OK, "Device lookup", &frame(csrf, "", &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            esc("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn pages_carry_the_security_headers_and_their_nonce() {
        let response = problem(StatusCode::FORBIDDEN, "<script>");
        let h = response.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src"));
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
