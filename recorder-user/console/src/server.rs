//! The HTTPS server: the collector's certificate, client certificates asked for but optional
//! (a browser logs in with a token instead), HTTP/1.1; the routes and the check that lets only
//! operators through.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use http::StatusCode;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use recorder_api::client_check::ClientCheck;
use rustls::{ServerConfig, server::WebPkiClientVerifier};
use tokio::{
    net::TcpListener,
    sync::{broadcast, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    Live, Source,
    actions::ActionLog,
    alerts::AlertBook,
    api, approvals, assets,
    auth::{Auth, Operator, PeerCerts},
    live, pages,
};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console TLS: {0}")]
    Tls(String),
    #[error("the console cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the console's action log in {path}: {source}")]
    Actions {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the console listens and with which certificates.
#[derive(Debug, Clone)]
pub struct ConsolePlan {
    pub listen: SocketAddr,
    /// The collector's check of client certificates (the CA, its revocation list), which
    /// operator certificates and the certificates of tokens are held to on every request.
    pub clients: Arc<ClientCheck>,
    /// The collector's certificate and key (the console is the collector's other face).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The collector's data directory (the action log goes in `console/`).
    pub data: PathBuf,
}

pub(crate) struct Console {
    pub source: Arc<dyn Source>,
    pub auth: Auth,
    pub actions: ActionLog,
    pub alerts: Arc<AlertBook>,
    pub live: broadcast::Sender<Live>,
}

pub(crate) type Shared = Arc<Console>;

/// Starts the console; returns the address it listens on. It stops accepting when `stop`
/// turns true.
pub async fn serve(
    plan: ConsolePlan,
    source: Arc<dyn Source>,
    live: broadcast::Sender<Live>,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, ConsoleError> {
    let config = tls_config(&plan)?;
    let actions = ActionLog::open(&plan.data).map_err(|source| ConsoleError::Actions {
        path: plan.data.join("console"),
        source,
    })?;
    let alerts = Arc::new(AlertBook::default());
    alerts.follow(live.subscribe());
    let console = Arc::new(Console {
        source,
        auth: Auth::new(plan.clients.clone()),
        actions,
        alerts,
        live,
    });
    let app = router(console);
    let listener = TcpListener::bind(plan.listen)
        .await
        .map_err(|source| ConsoleError::Listen {
            addr: plan.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen {
            addr: plan.listen,
            source,
        })?;
    let acceptor = TlsAcceptor::from(config);
    let accepting = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "console: TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                let app = app.layer(Extension(PeerCerts(Arc::new(certs))));
                let service = TowerToHyperService::new(app);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "console: connection ended");
                }
            });
        }
    });
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        accepting.abort();
    });
    tracing::info!(%local, "web console listening (HTTPS; operator certificate or token)");
    Ok(local)
}

fn router(console: Shared) -> Router {
    let operators_only = Router::new()
        .route("/", get(pages::sessions))
        .route("/session", get(pages::session))
        .route("/record/{index}", get(api::record))
        .route("/api/sessions", get(api::sessions))
        .route("/api/evidence", get(api::evidence))
        .route("/api/live", get(live::stream))
        .route("/approvals", get(approvals::show))
        .route(
            "/approvals/decide",
            get(async || Redirect::to("/approvals")).post(approvals::decide_form),
        )
        .route("/api/approvals", get(approvals::list))
        .route("/api/approvals/decide", post(approvals::decide_json))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            require_operator,
        ));
    Router::new()
        .merge(operators_only)
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/assets/{name}", get(assets::serve))
        .fallback(not_found)
        .with_state(console)
}

async fn not_found(req: Request) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": format!("no such page: {}", req.uri().path())})),
    )
        .into_response()
}

/// Lets an operator through (and writes the request to the action log); refuses the rest.
async fn require_operator(
    State(console): State<Shared>,
    certs: Option<Extension<PeerCerts>>,
    mut req: Request,
    next: Next,
) -> Response {
    let certs = certs.map(|Extension(c)| c).unwrap_or_default();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let machine = target.starts_with("/api/") || target.starts_with("/record/");
    match console.auth.operator(&certs, req.headers()) {
        Ok(Some(op)) => {
            console
                .actions
                .record(&op.name, op.by, req.method().as_str(), &target);
            req.extensions_mut().insert::<Operator>(op);
            next.run(req).await
        }
        Ok(None) if !machine => {
            Redirect::to(&format!("/login?next={}", pages::encode_query(&target))).into_response()
        }
        Ok(None) => refuse(
            StatusCode::UNAUTHORIZED,
            "operator credentials required: an operator certificate, an operator token \
             (Authorization: Bearer), or a console login",
        ),
        Err(why) => {
            tracing::warn!(%why, target, "console: refused");
            if machine {
                refuse(StatusCode::FORBIDDEN, &why)
            } else {
                (StatusCode::FORBIDDEN, pages::refused(&why)).into_response()
            }
        }
    }
}

pub(crate) fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

/// The console's TLS: a client certificate is optional (browsers log in with a token) and, when
/// one is presented, `Auth` checks it again on every request against the collector's check.
fn tls_config(plan: &ConsolePlan) -> Result<Arc<ServerConfig>, ConsoleError> {
    let err = |e: &dyn std::fmt::Display| ConsoleError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let optional =
        WebPkiClientVerifier::builder_with_provider(plan.clients.roots(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| err(&e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(optional)
        .with_single_cert(
            recorder_api::tls::load_certs(&plan.cert).map_err(|e| err(&e))?,
            recorder_api::tls::load_key(&plan.key).map_err(|e| err(&e))?,
        )
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
