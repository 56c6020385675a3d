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
