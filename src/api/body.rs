//! Reading request bodies within limits:
//!
//! - a `Content-Length` above the limit is refused at once with 413, before a byte is read;
//! - after a grace period the body must keep arriving at `server.min_body_rate` bytes per
//!   second on average, or the request ends with 408: a client trickling a body cannot hold
//!   what it occupies (an upload slot, its key's in-flight count) for the whole request time;
//! - the body is read into one buffer, sized from `Content-Length` once the first 256 KiB have
//!   arrived (a buffer that doubles as it grows leaves the upload in a larger, fragmented
//!   allocation; one sized up front would let a client that declares 32 MB and sends nothing
//!   hold 32 MB).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;

use super::error::{ApiError, Code};

/// Buffer allocated before the body shows it is as large as it says.
const FIRST_ALLOCATION: usize = 256 * 1024;

/// How fast a body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Bytes per second, averaged from the start of the body; 0 turns the check off.
    pub min_rate: u64,
    /// Time before the rate counts.
    pub grace: Duration,
}

/// The declared `Content-Length` (the connection layer has checked its syntax).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Refuse a body whose declared length is over `limit` before reading any of it.
pub fn refuse_declared(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    match declared_length(headers) {
        Some(n) if n > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("the body is larger than {limit} bytes, the limit"),
    )
}

/// Set when a [`Paced`] body ended for arriving too slowly.
#[derive(Debug, Clone, Default)]
pub struct TooSlow(Arc<AtomicBool>);

impl TooSlow {
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn error(pace: &Pace) -> ApiError {
        ApiError::new(
            Code::RequestTimeout,
            format!(
                "the body arrived at less than {} bytes per second",
                pace.min_rate
            ),
        )
    }
}

#[derive(Debug)]
struct SlowBody;

impl std::fmt::Display for SlowBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body arrived too slowly")
    }
}

impl std::error::Error for SlowBody {}

/// A body that fails once it falls behind its [`Pace`].
pub struct Paced {
    inner: Body,
    pace: Pace,
    start: Instant,
    received: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    slow: TooSlow,
}

impl Paced {
    pub fn wrap(inner: Body, pace: Pace) -> (Body, TooSlow) {
        let slow = TooSlow::default();
        let start = Instant::now();
        let paced = Paced {
            inner,
            pace,
            start,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(
                (start + Self::allowed(pace, 1)).into(),
            )),
            slow: slow.clone(),
        };
        (Body::new(paced), slow)
    }

    /// How long the first `bytes` may take.
    fn allowed(pace: Pace, bytes: u64) -> Duration {
        if pace.min_rate == 0 {
            return Duration::from_secs(365 * 24 * 3600);
        }
        pace.grace + Duration::from_secs_f64(bytes as f64 / pace.min_rate as f64)
    }
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let next = this.start + Self::allowed(this.pace, this.received + 1);
                    this.deadline.as_mut().reset(next.into());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.slow.0.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(axum::Error::new(SlowBody))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A growing buffer for a body of `declared` bytes (at most `limit`).
pub struct Buffer {
    buf: Vec<u8>,
    declared: Option<usize>,
    limit: usize,
}

impl Buffer {
    pub fn new(declared: Option<u64>, limit: usize) -> Buffer {
        let declared = declared.map(|d| (d.min(limit as u64)) as usize);
        Buffer {
            buf: Vec::with_capacity(declared.unwrap_or(0).min(FIRST_ALLOCATION)),
            declared,
            limit,
        }
    }

    /// Append; false when the body would be over the limit.
    pub fn push(&mut self, data: &[u8]) -> bool {
        let need = self.buf.len() + data.len();
        if need > self.limit {
            return false;
        }
        if need > self.buf.capacity() {
            // Past the first allocation: reserve the declared size once (it is exact, and
            // the client has shown it is sending), else grow as vectors do.
            match self.declared {
                Some(d) if d >= need => self.buf.reserve_exact(d - self.buf.len()),
                _ => self.buf.reserve(data.len()),
            }
        }
        self.buf.extend_from_slice(data);
        true
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

/// Read a whole body of at most `limit` bytes at `pace`.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    pace: Pace,
) -> Result<Bytes, ApiError> {
    refuse_declared(headers, limit)?;
    let (mut body, slow) = Paced::wrap(body, pace);
    let mut buf = Buffer::new(declared_length(headers), limit);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if slow.happened() {
                TooSlow::error(&pace)
            } else {
                ApiError::new(
                    Code::InvalidRequest,
                    format!("could not read the body: {e}"),
                )
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if !buf.push(&data) {
                return Err(too_large(limit));
            }
        }
    }
    Ok(buf.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_sized_from_the_declaration_only_once_the_body_shows_up() {
        let mut b = Buffer::new(Some(10_000_000), 20_000_000);
        assert!(b.buf.capacity() <= FIRST_ALLOCATION);
        assert!(b.push(&vec![1u8; FIRST_ALLOCATION]));
        assert!(b.push(&[1u8; 10]));
        assert_eq!(b.buf.capacity(), 10_000_000);
        let mut small = Buffer::new(None, 100);
        assert!(small.push(&[0u8; 100]));
        assert!(!small.push(&[0u8; 1]));
    }

    #[tokio::test]
    async fn a_trickling_body_fails_after_the_grace_a_steady_one_does_not() {
        let pace = Pace {
            min_rate: 1000,
            grace: Duration::from_millis(200),
        };
        let trickle = Trickle(tokio::time::interval(Duration::from_millis(100)));
        let (mut body, slow) = Paced::wrap(Body::new(trickle), pace);
        let started = Instant::now();
        let mut failed = false;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed && slow.happened());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// One byte every tick, forever.
    struct Trickle(tokio::time::Interval);

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_tick(cx)
                .map(|_| Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"x")))))
        }
    }
}
