//! The web page: one HTML document and its script and style, built into the binary.
//! The document needs the token (as `?token=`, from the printed URL); its script and
//! style hold nothing secret and are served to anyone. The script calls the API with
//! the token in a header.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// Who may load what, and from where: only this server, nothing inline, no frames.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page (behind the token).
pub fn router() -> Router {
    Router::new().route("/", get(index))
}

/// The page's script and style (open).
pub fn assets() -> Router {
    Router::new()
        .route("/assets/app.js", get(script))
        .route("/assets/style.css", get(style))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        INDEX,
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
