//! The approvals page: the actions agents hold on this collector until an operator decides, each
//! with Approve and Deny; and the same as JSON for scripts.
//!
//! A decision lets a process run, so its POST must come from the console itself. A browser sends
//! its certificate or cookie with a cross-site request too (the cookie is `SameSite=Strict`, a
//! certificate is not): the `Origin` and `Sec-Fetch-Site` headers, when sent, must say this
//! console, and a form must carry the operator's form token, which only the console's own page
//! holds. A bearer token is never sent by a browser on its own, and a JSON body cannot be sent
//! cross-site without a CORS preflight the console does not answer: those need no form token.
use axum::{
    Extension, Form, Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::html;
use serde::Deserialize;

use crate::{
    DecideError, DecisionView,
    actions::Decided,
    auth::Operator,
    pages::{Nav, encode_query, page},
    server::{Console, Shared, refuse},
};

/// The list, oldest first.
pub(crate) async fn list(State(console): State<Shared>) -> Response {
    Json(serde_json::json!({ "pending": console.source.approvals() })).into_response()
}

pub(crate) async fn show(
    State(console): State<Shared>,
    Extension(op): Extension<Operator>,
) -> Response {
    render(&console, &op, None)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    id: String,
    /// `1` (Approve) or `0` (Deny): the button pressed.
    approve: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn decide_form(
    State(console): State<Shared>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    Form(f): Form<DecideForm>,
) -> Response {
    let checked = same_origin(&headers).and_then(|()| {
        if op.by == "token" || console.auth.csrf_ok(&op, &f.csrf) {
            Ok(())
        } else {
            Err("the form is stale or not from this console (reload the approvals page)".into())
        }
    });
    let approve = match f.approve.as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err((
            StatusCode::BAD_REQUEST,
            format!("approve={other:?}: give 1 (approve) or 0 (deny)"),
        )),
    };
    let result = match (checked, approve) {
        (Err(why), _) => {
            tracing::warn!(operator = %op.name, %why, "console: decision refused");
            Err((StatusCode::FORBIDDEN, why))
        }
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(approve)) => decide(
            &console,
            &op,
            &f.id,
            approve,
            &f.reason,
            "/approvals/decide",
        ),
    };
    let status = result.as_ref().err().map(|(s, _)| *s);
    let mut r = render(&console, &op, Some(&result.map_err(|(_, why)| why)));
    if let Some(status) = status {
        *r.status_mut() = status;
    }
    r
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideJson {
    id: String,
    approve: bool,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn decide_json(
    State(console): State<Shared>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    Json(q): Json<DecideJson>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, &why);
    }
    match decide(
        &console,
        &op,
        &q.id,
        q.approve,
        &q.reason,
        "/api/approvals/decide",
    ) {
        Ok(d) => Json(d).into_response(),
        Err((status, why)) => refuse(status, &why),
    }
}

/// Decides as this operator and writes it to the action log.
fn decide(
    console: &Console,
    op: &Operator,
    id: &str,
    approve: bool,
    reason: &str,
    path: &str,
) -> Result<DecisionView, (StatusCode, String)> {
    match console.source.decide(id, approve, reason.trim(), &op.name) {
        Ok(d) => {
            let decided = Decided {
                id,
                state: &d.state,
                reason: &d.reason,
            };
            console.actions.decided(&op.name, op.by, path, decided);
            Ok(d)
        }
        Err(DecideError::NotFound(why)) => Err((StatusCode::NOT_FOUND, why)),
        Err(DecideError::Conflict(why)) => Err((StatusCode::CONFLICT, why)),
        Err(DecideError::Invalid(why)) => Err((StatusCode::BAD_REQUEST, why)),
    }
}

/// Refuses a request a browser says comes from another site.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return Err(format!(
            "a cross-site request (Sec-Fetch-Site: {site:?}): decide from the console's own page"
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.is_empty() && origin.to_str().ok() == Some(format!("https://{host}").as_str()) {
        Ok(())
    } else {
        Err(format!(
            "the request comes from {origin:?}, not from this console (https://{host})"
        ))
    }
}

/// `12 s`, `3 min 5 s`, `2 h 4 min`.
fn span(ns: i64) -> String {
    let s = ns.max(0) / 1_000_000_000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn render(
    console: &Console,
    op: &Operator,
    said: Option<&Result<DecisionView, String>>,
) -> Response {
    let now = recorder_record::time::now_unix_ns() as i64;
    let pending = console.source.approvals();
    let csrf = console.auth.csrf(op);
    let body = html! {
        main {
            @match said {
                Some(Ok(d)) => p.done id="decided" { (d.state) " " code { (d.id) } " (by " (d.approver) ")" },
                Some(Err(why)) => p.error id="decide-error" { (why) },
                None => {},
            }
            p.count id="count" {
                (pending.len()) " request" @if pending.len() != 1 { "s" } " waiting for a decision on this collector · "
                a href="/approvals" { "refresh" }
            }
            p.note {
                "Each is an action an agent holds: the process is stopped before its command runs, or before \
                 its statement or API call leaves. Approve lets it go on; Deny stops it. At its deadline \
                 the agent denies it by itself."
            }
            @if !pending.is_empty() {
                table.approvals id="approvals" {
                    thead { tr {
                        th { "id" } th { "age" } th { "host" } th { "identity" } th { "pid" }
                        th { "action" } th { "rule" } th { "text" } th { "denied in" } th { "decision" }
                    } }
                    tbody {
                        @for a in &pending {
                            tr.approval data-id=(a.id) {
                                td { code { (a.id) } }
                                td.time { (span(now - a.held_unix_ns)) }
                                td { (a.host) }
                                td {
                                    @if a.session.is_empty() { (a.identity) } @else {
                                        a href=(format!("/session?host={}&session={}", encode_query(&a.host), encode_query(&a.session))) { (a.identity) }
                                    }
                                }
                                td.num { (a.pid) }
                                td { (a.action) }
                                td { (a.rule) }
                                td.text { (a.text) }
                                td.time { (span(a.deadline_unix_ns - now)) }
                                td {
                                    form.decide method="post" action="/approvals/decide" {
                                        input type="hidden" name="id" value=(a.id);
                                        input type="hidden" name="csrf" value=(csrf);
                                        input name="reason" placeholder="reason (optional)" maxlength="4096";
                                        button.approve type="submit" name="approve" value="1" { "Approve" }
                                        button.deny type="submit" name="approve" value="0" { "Deny" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut r = page("approvals", Some(Nav::of(console, op)), &body);
    // The console's pages say `no-referrer`, under which a browser sends `Origin: null` with a
    // form; here it must send the console's origin for the check above.
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_console_itself_may_decide() {
        let host = ("host", "collector.example:7444");
        assert!(same_origin(&headers(&[host])).is_ok());
        assert!(
            same_origin(&headers(&[
                host,
                ("origin", "https://collector.example:7444"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok()
        );
        for refused in [
            headers(&[host, ("origin", "https://evil.example")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "http://collector.example:7444")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[("origin", "https://collector.example:7444")]),
        ] {
            assert!(same_origin(&refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn spans_read_as_people_say_them() {
        let s = 1_000_000_000;
        assert_eq!(span(-s), "0 s");
        assert_eq!(span(12 * s), "12 s");
        assert_eq!(span(185 * s), "3 min 5 s");
        assert_eq!(span(7440 * s), "2 h 4 min");
    }
}
