//! Requests in, responses out: the parts of a request the router reads, the replies it makes,
//! and the bodies they carry (whole documents, or a watch's live stream of events).
use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    Method, Request, Response, StatusCode, Version,
    body::{Frame, Incoming, SizeHint},
    header,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Served,
    present::{openapi_v3_core, openapi_v3_paths, percent_decode, resource_list, version},
    store::{Kind, Store},
};

/// A response body: a whole document, or the lines of a watch as its producer task sends them.
/// A watch ends when its producer does (timeout, expiry) or when the client goes away, which
/// drops the receiver here and so stops the producer.
pub(super) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Body::Full(chunk) => Poll::Ready(chunk.take().map(|c| Ok(Frame::data(c)))),
            // One frame per event: hyper writes (and flushes) each as it comes.
            Body::Stream(lines) => lines.poll_recv(cx).map(|l| l.map(|l| Ok(Frame::data(l)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |c| c.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// What the router decided, before it becomes a response.
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Body,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(status: StatusCode, value: &Value) -> Self {
        Reply {
            status,
            body: Body::Full(Some(Bytes::from(serde_json::to_vec(value).unwrap()))),
            content_type: "application/json",
        }
    }

    pub fn text(body: &'static str) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Body::Full(Some(Bytes::from_static(body.as_bytes()))),
            content_type: "text/plain; charset=utf-8",
        }
    }

    /// A failure as kube-apiserver reports it: a `Status` object whose `code` matches the HTTP
    /// status, which clients decode into typed errors (kubectl's "NotFound" handling needs it).
    pub fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Self {
        Reply::json(
            code,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason,
                "details": details, "code": code.as_u16(),
            }),
        )
    }

    pub fn not_found_path() -> Self {
        Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        )
    }

    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", kind.resource),
            json!({"name": name, "kind": kind.resource}),
        )
    }

    pub fn method_not_allowed() -> Self {
        Reply::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            json!({}),
        )
    }

    pub fn bad_request(message: String) -> Self {
        Reply::status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
    }
}

pub(super) struct Api {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Served>>>,
    pub store: Mutex<Store>,
}

/// The parts of a request the router looks at.
pub(super) struct Call {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }
}

impl Api {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string());
        let version = if req.version() == Version::HTTP_2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let header = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let user_agent = header(header::USER_AGENT);
        let accept = header(header::ACCEPT);
        let content_type = header(header::CONTENT_TYPE);
        let path = req.uri().path().to_string();
        let query = req
            .uri()
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (percent_decode(k), percent_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let call = Call {
            method: method.clone(),
            path,
            query,
            accept,
            content_type,
            body,
        };
        let reply = self.route(&call);
        self.log.lock().unwrap().push(Served {
            method: method.to_string(),
            target,
            status: reply.status.as_u16(),
            version,
            user_agent,
        });
        Response::builder()
            .status(reply.status)
            .header(header::CONTENT_TYPE, reply.content_type)
            .header("audit-id", "fixture")
            .body(reply.body)
            .unwrap()
    }

    fn route(&self, call: &Call) -> Reply {
        let segments: Vec<&str> = call.path.split('/').filter(|s| !s.is_empty()).collect();
        let read_only = call.method == Method::GET || call.method == Method::HEAD;
        match segments.as_slice() {
            ["healthz" | "livez" | "readyz"] if read_only => Reply::text("ok"),
            ["version"] if read_only => Reply::json(StatusCode::OK, &version()),
            ["api"] if read_only => Reply::json(StatusCode::OK, &self.api_versions()),
            ["apis"] if read_only => Reply::json(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            ),
            ["api", "v1"] if read_only => Reply::json(StatusCode::OK, &resource_list()),
            ["openapi", "v3"] if read_only => Reply::json(StatusCode::OK, &openapi_v3_paths()),
            ["openapi", "v3", "api", "v1"] if read_only => {
                Reply::json(StatusCode::OK, &openapi_v3_core())
            }
            ["api", "v1", rest @ ..] => self.resource(call, rest),
            _ => Reply::not_found_path(),
        }
    }

    fn api_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", self.port)}
            ],
        })
    }
}
