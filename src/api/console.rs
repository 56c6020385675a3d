//! The web console for analysts and reps, compiled into the binary (no CDN, no build step).
//! Setting `NEEDTAG_CONSOLE_DIR` serves the files from that directory instead, for working on
//! the console without rebuilding.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Code};

const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("console/app.css"),
    ),
];

/// The console loads only its own files: no inline script, no other origin, no framing. Styles
/// set through the DOM (`el.style.x = …`) are not inline styles and stay allowed; recordings are
/// played from `blob:` URLs; the favicon is `data:,`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn serve(file: &str) -> Response {
    let Some((name, ct, embedded)) = FILES.iter().find(|(name, _, _)| *name == file) else {
        return ApiError::new(Code::NotFound, format!("no console file {file:?}")).into_response();
    };
    let body = match std::env::var_os("NEEDTAG_CONSOLE_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .unwrap_or_else(|_| embedded.to_string()),
        None => embedded.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, *ct),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}
