//! The report for people (one line per check, fix lines indented under it) and for scripts
//! (one JSON object).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::fixes::{self, Fix};
use crate::verdict::{Check, Report, Verdict};

fn fixes_of(check: &Check, report: &Report) -> Vec<Fix> {
    match (check.verdict, check.problem) {
        (Verdict::Pass, _) | (_, None) => Vec::new(),
        (_, Some(problem)) => fixes::for_problem(problem, report.proxy),
    }
}

/// `PASS  id: detail`, then `    proxy: line` for each fix line, then a summary line.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pushwarden doctor {}", report.url);
    match report.proxy {
        Some(proxy) => {
            let _ = writeln!(out, "proxy: {}", proxy.name());
        }
        None => {
            let _ = writeln!(out, "proxy: not recognised (fixes for each kind follow)");
        }
    }
    for check in &report.checks {
        let _ = writeln!(
            out,
            "{}  {}: {}",
            check.verdict.label(),
            check.id,
            check.detail
        );
        for fix in fixes_of(check, report) {
            let label = if fix.proxy == "any" { "fix" } else { fix.proxy };
            for line in &fix.lines {
                let _ = writeln!(out, "      {label}: {line}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{} pass, {} warn, {} fail",
        report.count(Verdict::Pass),
        report.count(Verdict::Warn),
        report.count(Verdict::Fail)
    );
    out
}

/// `{"url", "proxy", "summary": {pass, warn, fail}, "checks": [{id, verdict, detail, problem, fixes}]}`.
pub fn json(report: &Report) -> Value {
    let checks: Vec<Value> = report
        .checks
        .iter()
        .map(|check| {
            json!({
                "id": check.id,
                "verdict": check.verdict,
                "detail": check.detail,
                "problem": check.problem,
                "fixes": fixes_of(check, report),
            })
        })
        .collect();
    json!({
        "url": report.url,
        "proxy": report.proxy.map(|p| p.id()),
        "summary": {
            "pass": report.count(Verdict::Pass),
            "warn": report.count(Verdict::Warn),
            "fail": report.count(Verdict::Fail),
        },
        "checks": checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Problem, Proxy};

    fn report(proxy: Option<Proxy>) -> Report {
        Report {
            url: "https://vault.example.com".into(),
            proxy,
            checks: vec![
                Check::pass("negotiate", "200 from pushwarden"),
                Check::fail("sse", "no event within 10 s", Some(Problem::Buffering)),
            ],
        }
    }

    #[test]
    fn text_names_the_line_for_the_recognised_proxy_only() {
        let out = text(&report(Some(Proxy::Nginx)));
        assert!(
            out.contains("PASS  negotiate: 200 from pushwarden\n"),
            "{out}"
        );
        assert!(out.contains("FAIL  sse: no event within 10 s\n"), "{out}");
        assert!(out.contains("      nginx: proxy_buffering off;\n"), "{out}");
        assert!(!out.contains("caddy:"), "{out}");
        assert!(out.ends_with("1 pass, 0 warn, 1 fail\n"), "{out}");
        let all = text(&report(None));
        for proxy in ["nginx:", "caddy:", "apache:", "haproxy:", "traefik:"] {
            assert!(all.contains(proxy), "{all}");
        }
    }

    #[test]
    fn json_shape() {
        let value = json(&report(Some(Proxy::Caddy)));
        assert_eq!(value["proxy"], "caddy");
        assert_eq!(value["summary"]["fail"], 1);
        assert_eq!(value["checks"][0]["verdict"], "pass");
        assert_eq!(value["checks"][0]["fixes"], json!([]));
        assert_eq!(value["checks"][1]["problem"], "buffering");
        assert_eq!(value["checks"][1]["fixes"][0]["proxy"], "caddy");
        assert!(value["checks"][1]["fixes"][0]["lines"][1]
            .as_str()
            .unwrap()
            .contains("flush_interval -1"));
    }
}
