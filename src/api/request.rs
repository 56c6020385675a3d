//! What happens around every request: an id (`X-Request-Id`, the client's when it is a sane
//! token), the overall time limit, a panic turned into a 500 `internal` logged with that id,
//! every error as the documented JSON (extractor rejections included), security headers,
//! metrics by route and status, and one log line without customer data.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Code};
use super::metrics;
use super::panics::{InRequest, Panicked, RequestContext};
use super::AppState;

/// A request body that notes whether it was read to its end.
struct Tracked {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Routes that answer at once and do not hold a graceful shutdown.
const OPERATIONAL: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The client's `X-Request-Id` when it is 1–64 characters of `A-Z a-z 0-9 . _ : -`, else a new
/// one.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().simple().to_string()))
}

/// The code of an error response something other than our handlers wrote (an extractor's
/// rejection is text/plain).
fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidRequest,
        401 => Code::Unauthorized,
        403 => Code::Forbidden,
        404 => Code::NotFound,
        405 => Code::MethodNotAllowed,
        408 => Code::RequestTimeout,
        413 => Code::PayloadTooLarge,
        415 => Code::UnsupportedMediaType,
        422 => Code::InvalidInput,
        429 => Code::TooManyRequests,
        431 => Code::HeadersTooLarge,
        503 => Code::NotReady,
        _ => Code::Internal,
    }
}

/// An error response that is not JSON, rewritten as the documented error with its text as the
/// message.
async fn as_json_error(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let mut fixed = ApiError::new(code_for(status), text).into_response();
    if let Some(retry) = parts.headers.get(header::RETRY_AFTER) {
        fixed
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    fixed
}

pub(super) async fn observe(
    State((state, timeout)): State<(Arc<AppState>, Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route: Option<Arc<str>> = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Arc::from(p.as_str()));
    let label: Arc<str> = route.clone().unwrap_or_else(|| Arc::from("unmatched"));
    let request_id = request_id(req.headers());
    let _counted = (!OPERATIONAL.contains(&&*label)).then(|| state.count_request());
    let ctx = RequestContext {
        request_id: request_id.clone(),
        route: label.clone(),
    };
    // A response sent before its request's body was read (a refusal, a 413) closes the
    // connection: the unread rest must not be taken for the next request, and a client must
    // not send its next request on a connection the server is closing.
    let (parts, body) = req.into_parts();
    let ended = Arc::new(AtomicBool::new(hyper::body::Body::is_end_stream(&body)));
    let req = Request::from_parts(
        parts,
        Body::new(Tracked {
            inner: body,
            ended: ended.clone(),
        }),
    );
    let resp = match tokio::time::timeout(timeout, InRequest::new(ctx, next.run(req))).await {
        Ok(Ok(r)) => r,
        Ok(Err(Panicked)) => ApiError::new(
            Code::Internal,
            format!("the server failed on this request; it is logged with request id {request_id}"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            Code::RequestTimeout,
            format!("the request took longer than {} s", timeout.as_secs()),
        )
        .into_response(),
    };
    let mut resp = as_json_error(resp).await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !ended.load(Ordering::SeqCst) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state
        .metrics
        .request(&method, route.as_deref(), status, secs);
    tracing::info!(
        request_id = &*request_id,
        method = metrics::method_label(&method),
        route = &*label,
        status,
        ms = (secs * 1000.0).round(),
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_request_id_is_kept_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("crm-42.a_b:c"));
        assert_eq!(&*request_id(&h), "crm-42.a_b:c");
        for bad in ["has space", "<script>", ""] {
            h.insert("x-request-id", HeaderValue::from_str(bad).unwrap());
            let id = request_id(&h);
            assert_eq!(id.len(), 32, "{bad:?} → {id}");
        }
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(65)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
    }

    #[tokio::test]
    async fn plain_text_errors_become_json_and_the_rest_is_left_alone() {
        let plain = (
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string",
        )
            .into_response();
        let fixed = as_json_error(plain).await;
        assert_eq!(fixed.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(fixed.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["message"], "Failed to deserialize query string");
        let empty = StatusCode::PAYLOAD_TOO_LARGE.into_response();
        let v: serde_json::Value = serde_json::from_slice(
            &axum::body::to_bytes(as_json_error(empty).await.into_body(), 1 << 16)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["error"]["code"], "payload_too_large");
        let page = (StatusCode::OK, "<html>").into_response();
        assert_eq!(
            as_json_error(page)
                .await
                .headers()
                .get(header::CONTENT_TYPE)
                .unwrap(),
            "text/plain; charset=utf-8"
        );
    }
}
