//! The pages rendered on the server (maud escapes every value it is given: recorded commands
//! are text written by whatever the agent ran, never markup): login, the sessions list, and
//! the frame of one session that `session.js` fills from its evidence. The approvals page is in
//! approvals.rs.
use std::fmt::Write as _;

use axum::{
    Extension, Form,
    extract::{Query, State},
    response::{Html, IntoResponse, Redirect, Response},
};
use http::{HeaderMap, StatusCode, header};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::{
    api::SessionQuery,
    auth::{Operator, set_cookie},
    search::{ListQuery, Listing, listing},
    server::{Console, Shared},
};

/// Scripts and styles only from the console itself.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Who is looking, for the header: the operator, and how many approval requests wait.
#[derive(Clone, Copy)]
pub(crate) struct Nav<'a> {
    op: &'a Operator,
    approvals: usize,
}

impl<'a> Nav<'a> {
    pub(crate) fn of(console: &Console, op: &'a Operator) -> Self {
        Self {
            op,
            approvals: console.source.approvals_waiting(),
        }
    }
}

pub(crate) fn page(title: &str, nav: Option<Nav<'_>>, body: &Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · recorder" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { "recorder" }
                    span.where { (title) }
                    @if let Some(nav) = &nav {
                        a.approvals.waiting[nav.approvals > 0] id="approvals-link" href="/approvals" {
                            "Approvals (" (nav.approvals) ")"
                        }
                        form.logout method="post" action="/logout" {
                            span.who { "operator " b { (nav.op.name) } }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                (*body)
            }
        }
    };
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(markup.into_string()),
    )
        .into_response()
}

/// Percent-encodes a value for a query string.
pub(crate) fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn refused(why: &str) -> Response {
    page(
        "refused",
        None,
        &html! {
            main.narrow {
                h1 { "Refused" }
                p.error { (why) }
                p { a href="/login" { "Log in with an operator token" } }
            }
        },
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LoginQuery {
    next: String,
}

fn login_page(next: &str, error: Option<&str>) -> Markup {
    html! {
        main.narrow {
            h1 { "Log in" }
            p { "Paste an operator token, made with "
                code { "recorder token --tls-cert OPERATOR.pem --tls-key OPERATOR-key.pem" } "." }
            @if let Some(e) = error { p.error id="login-error" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                textarea id="token" name="token" rows="6" cols="80" placeholder="rct1.…" required {}
                p { button id="login" type="submit" { "Log in" } }
            }
        }
    }
}

pub(crate) async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    page("log in", None, &login_page(&q.next, None))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

pub(crate) async fn login(State(console): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    match console.auth.login(&f.token) {
        Ok((id, name, lifetime)) => {
            console.actions.record(&name, "token", "POST", "/login");
            // Only a path of this console: never an open redirect.
            // (A backslash reads as a slash to browsers: `/\\host` would leave the console.)
            let next =
                if f.next.starts_with('/') && !f.next.starts_with("//") && !f.next.contains('\\') {
                    f.next.as_str()
                } else {
                    "/"
                };
            (
                [(header::SET_COOKIE, set_cookie(&id, lifetime))],
                Redirect::to(next),
            )
                .into_response()
        }
        Err(why) => {
            tracing::warn!(%why, "console: login refused");
            let mut r = page("log in", None, &login_page(&f.next, Some(&why)));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

pub(crate) async fn logout(State(console): State<Shared>, headers: HeaderMap) -> Response {
    console.auth.logout(&headers);
    (
        [(header::SET_COOKIE, set_cookie("", 0))],
        Redirect::to("/login"),
    )
        .into_response()
}

fn checked(on: bool) -> Option<&'static str> {
    on.then_some("checked")
}

pub(crate) async fn sessions(
    State(console): State<Shared>,
    Extension(op): Extension<Operator>,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = listing(&console, &q).await;
    let body = html! {
        main {
            form.filters id="filters" method="get" action="/" {
                label { "identity " input name="identity" value=(q.identity); }
                label { "host " input name="host" value=(q.host); }
                label { "namespace " input name="namespace" value=(q.namespace); }
                label { "pod " input name="pod" value=(q.pod); }
                label { "from (UTC) " input type="datetime-local" name="from" value=(q.from); }
                label { "to (UTC) " input type="datetime-local" name="to" value=(q.to); }
                label { input type="checkbox" name="failed" value="1" checked=[checked(q.failed == "1")]; " has errors" }
                label { input type="checkbox" name="gaps" value="1" checked=[checked(q.gaps == "1")]; " has gaps" }
                label { input type="checkbox" name="alerts" value="1" checked=[checked(q.alerts == "1")]; " has alerts" }
                label.search { "search " input name="q" value=(q.q) placeholder="command, SQL, kubectl, API path"; }
                button id="apply" type="submit" { "Apply" }
                a href="/" { "clear" }
            }
            @match &result {
                Err(why) => p.error { (why) },
                Ok(l) => (session_table(&q, l)),
            }
        }
    };
    let mut r = page("sessions", Some(Nav::of(&console, &op)), &body);
    if result.is_err() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

/// The query string of the list with another page (or a search going on from `before`).
fn list_link(q: &ListQuery, page: usize, before: Option<u64>) -> String {
    let mut q = q.clone();
    q.page = Some(page);
    if before.is_some() {
        q.before = before;
    }
    let fields = [
        ("identity", q.identity.as_str()),
        ("host", &q.host),
        ("namespace", &q.namespace),
        ("pod", &q.pod),
        ("from", &q.from),
        ("to", &q.to),
        ("failed", &q.failed),
        ("gaps", &q.gaps),
        ("alerts", &q.alerts),
        ("q", &q.q),
    ];
    let mut parts: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_query(v)))
        .collect();
    if let Some(b) = q.before {
        parts.push(format!("before={b}"));
    }
    if let Some(per) = q.per {
        parts.push(format!("per={per}"));
    }
    parts.push(format!("page={page}"));
    format!("/?{}", parts.join("&"))
}

fn session_table(q: &ListQuery, l: &Listing) -> Markup {
    html! {
        p.count id="count" {
            (l.total) " session" @if l.total != 1 { "s" }
            @if l.total > 0 { " · page " (l.page) " of " (l.pages) }
        }
        @if let Some(s) = &l.search {
            p.searched {
                "searched log records " (s.from) "–" (s.to)
                @if !s.complete {
                    " · " a id="search-older" href=(list_link(q, 1, Some(s.from))) { "search older records" }
                }
            }
        }
        table.sessions id="sessions" {
            thead { tr {
                th { "identity" } th { "host" } th { "session" } th { "pod" }
                th { "first" } th { "last" } th { "commands" } th { "records" }
                th { "errors" } th { "completeness" } th { "alerts" }
            } }
            tbody {
                @for s in &l.sessions {
                    tr.session data-session=(s.session) data-host=(s.host) {
                        td { (s.identity) }
                        td { (s.host) }
                        td { a.open href=(format!("/session?host={}&session={}", encode_query(&s.host), encode_query(&s.session))) { (s.session) } }
                        td { @if !s.pod.is_empty() { (s.namespace) "/" (s.pod) } }
                        td.time { (s.first_time) }
                        td.time { (s.last_time) }
                        td.num { (s.commands) }
                        td.num { (s.records) }
                        td.num.(if s.failed > 0 { "bad" } else { "" }) { (s.failed) }
                        td.(if s.gaps > 0 { "verdict gap" } else { "verdict ok" }) { (s.verdict) }
                        td.num { (s.alerts) }
                    }
                }
            }
        }
        nav.pages {
            @if l.page > 1 { a id="prev" href=(list_link(q, l.page - 1, None)) { "← newer" } }
            @if l.page < l.pages { " " a id="next" href=(list_link(q, l.page + 1, None)) { "older →" } }
        }
    }
}

pub(crate) async fn session(
    State(console): State<Shared>,
    Extension(op): Extension<Operator>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let title = format!("session {}", q.session);
    page(
        &title,
        Some(Nav::of(&console, &op)),
        &html! {
            main id="session" data-host=(q.host) data-session=(q.session) data-live="1" {
                p.loading { "Loading the session and checking its proofs…" }
            }
            script src="/assets/verify.js" {}
            script src="/assets/session.js" {}
        },
    )
}
