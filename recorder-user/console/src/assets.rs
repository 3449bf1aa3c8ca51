//! The console's static files, built into the binary (nothing comes from elsewhere: the
//! console works offline). Only these names are served.
use axum::{
    extract::Path,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};

pub(crate) const STYLE: &str = include_str!("../assets/style.css");
/// The checks of evidence in the browser (WebCrypto).
pub(crate) const VERIFY_JS: &str = include_str!("../assets/verify.js");
/// One session rendered from its evidence: console page and bundle alike.
pub(crate) const SESSION_JS: &str = include_str!("../assets/session.js");

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "verify.js" => (VERIFY_JS, "text/javascript; charset=utf-8"),
        "session.js" => (SESSION_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
