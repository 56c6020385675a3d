//! One TCP connection, between the socket and hyper. Every request head is read and checked
//! here before hyper sees it, so that whatever a client sends, what it gets back is the
//! documented JSON error:
//!
//! - a head larger than [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers: 431
//!   `headers_too_large`;
//! - a malformed head (request line, header syntax, target), a missing, duplicate or malformed
//!   `Content-Length`, or a `Transfer-Encoding` that is not chunked: 400 `invalid_request`;
//! - a head that has not arrived within the header timeout since its first byte: 408
//!   `request_timeout` (a client trickling headers cannot keep a connection forever).
//!
//! hyper only ever reads heads that passed; after a refusal it reads the end of the stream and
//! closes, and [`Closed::finish`] writes the error. The body bytes that follow each head are
//! passed through unread (their length is tracked, to find the next head), straight into
//! hyper's buffer.
//!
//! Closing is lingering: after the last response the write side is shut and what the client
//! still sends is read and dropped for a bounded time, so a client that is still uploading when
//! it is answered early (503 `busy`, 413) reads that answer instead of a connection reset.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::{ApiError, Code};

/// Largest request line and headers read.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 100;
/// Longest a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// What the bytes after the current head are.
#[derive(Debug, Clone, PartialEq)]
enum Framing {
    /// A request head is being read.
    Head,
    /// This many body bytes, then the next head.
    Length(u64),
    Chunked(Chunked),
    /// Not followed (an upgrade, or chunks the tracker does not understand): hyper decides.
    Passthrough,
}

/// Where a chunked body is: chunk sizes, data, and trailers, as RFC 9112 §7.1 writes them.
#[derive(Debug, Clone, PartialEq)]
enum Chunked {
    Size {
        value: u64,
        digits: usize,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    DataEnd {
        cr: bool,
    },
    Trailer {
        len: usize,
        cr: bool,
    },
}

enum Step {
    /// Bytes consumed, still inside the body.
    More,
    /// Bytes consumed, the body ended.
    Done,
    /// Not a chunked body the tracker understands.
    Lost,
}

impl Chunked {
    fn start() -> Chunked {
        Chunked::Size {
            value: 0,
            digits: 0,
            ext: false,
            cr: false,
        }
    }

    /// Consume bytes of `data`; returns how many and what followed.
    fn advance(&mut self, data: &[u8]) -> (usize, Step) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self {
                Chunked::Size {
                    value,
                    digits,
                    ext,
                    cr,
                } => {
                    i += 1;
                    if *cr {
                        if b != b'\n' || *digits == 0 {
                            return (i, Step::Lost);
                        }
                        *self = if *value == 0 {
                            Chunked::Trailer { len: 0, cr: false }
                        } else {
                            Chunked::Data(*value)
                        };
                    } else if b == b'\r' {
                        *cr = true;
                    } else if *ext {
                        // Chunk extensions are skipped to the end of the line.
                    } else if let Some(d) = (b as char).to_digit(16) {
                        *digits += 1;
                        if *digits > 15 {
                            return (i, Step::Lost);
                        }
                        *value = *value * 16 + d as u64;
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        *ext = true;
                    } else {
                        return (i, Step::Lost);
                    }
                }
                Chunked::Data(left) => {
                    let n = (*left).min((data.len() - i) as u64) as usize;
                    i += n;
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Chunked::DataEnd { cr: false };
                    }
                }
                Chunked::DataEnd { cr } => {
                    i += 1;
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) => *self = Chunked::start(),
                        _ => return (i, Step::Lost),
                    }
                }
                Chunked::Trailer { len, cr } => {
                    i += 1;
                    match b {
                        b'\r' => *cr = true,
                        b'\n' if *cr => {
                            if *len == 0 {
                                return (i, Step::Done);
                            }
                            *len = 0;
                            *cr = false;
                        }
                        _ if *cr => return (i, Step::Lost),
                        _ => {
                            *len += 1;
                            if *len > MAX_HEAD_BYTES {
                                return (i, Step::Lost);
                            }
                        }
                    }
                }
            }
        }
        (i, Step::More)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidRequest, message)
}

/// Check a complete head; the framing of what follows it, or the error to answer.
fn check_head(req: &httparse::Request<'_, '_>) -> Result<Framing, ApiError> {
    let target = req.path.unwrap_or("");
    if target.parse::<axum::http::Uri>().is_err() {
        return Err(invalid(format!(
            "the request target {} is not a valid URI",
            crate::error::excerpt(target)
        )));
    }
    let mut length: Option<u64> = None;
    let mut lengths = 0;
    let mut encodings: Vec<String> = Vec::new();
    let mut upgrade = req.method == Some("CONNECT");
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            if lengths > 1 {
                return Err(invalid(
                    "the request has more than one Content-Length header",
                ));
            }
            let v = h.value;
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(invalid(format!(
                    "Content-Length {} is not a byte count",
                    crate::error::excerpt(&String::from_utf8_lossy(v))
                )));
            }
            length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value);
            encodings.extend(
                v.split(',')
                    .map(|e| e.trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty()),
            );
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if !encodings.is_empty() {
        if lengths > 0 {
            return Err(invalid(
                "the request has both Transfer-Encoding and Content-Length",
            ));
        }
        if req.version == Some(0) {
            return Err(invalid("HTTP/1.0 requests cannot use Transfer-Encoding"));
        }
        if encodings.last().map(String::as_str) != Some("chunked") {
            return Err(invalid(
                "Transfer-Encoding must end in chunked (or send a Content-Length)",
            ));
        }
    }
    Ok(if upgrade {
        Framing::Passthrough
    } else if !encodings.is_empty() {
        Framing::Chunked(Chunked::start())
    } else {
        match length {
            Some(0) | None => Framing::Head,
            Some(n) => Framing::Length(n),
        }
    })
}

enum Parsed {
    /// A head of this many bytes, and what follows it.
    Complete(usize, Framing),
    Partial,
}

fn parse_head(buf: &[u8]) -> Result<Parsed, ApiError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Parsed::Complete(n, check_head(&req)?)),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(ApiError::new(
            Code::HeadersTooLarge,
            format!("the request has more than {MAX_HEADERS} headers"),
        )),
        Err(e) => Err(invalid(format!("malformed request head: {e}"))),
    }
}

/// What is left of a connection once hyper is done with it.
pub struct Closed {
    io: TcpStream,
    /// The error to answer, when a head was refused.
    pub refused: Option<ApiError>,
    /// The client may still be sending (a refusal, or a body left unread): read before closing.
    linger: bool,
}

impl Closed {
    /// A connection answered with `refused` (if any) without reading its request.
    pub fn new(io: TcpStream, refused: Option<ApiError>) -> Closed {
        Closed {
            io,
            refused,
            linger: true,
        }
    }

    /// Write the refusal (if any), shut the write side, and read what the client still sends
    /// (bounded in time and bytes) so that it reads the response rather than a reset.
    pub async fn finish(mut self) {
        if let Some(err) = &self.refused {
            let _ = tokio::time::timeout(LINGER, self.io.write_all(&response_bytes(err))).await;
        }
        let _ = tokio::time::timeout(LINGER, self.io.shutdown()).await;
        if !self.linger {
            return;
        }
        let _ = tokio::time::timeout(LINGER, async {
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            while let Ok(n) = self.io.read(&mut buf).await {
                total += n as u64;
                if n == 0 || total > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    }
}

/// An error as a whole HTTP/1.1 response that closes the connection.
pub fn response_bytes(err: &ApiError) -> Vec<u8> {
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let status = err.status();
    let retry = err
        .retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nx-content-type-options: nosniff\r\n{retry}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The socket as hyper reads it: see the module documentation.
pub struct Guarded {
    io: Option<TcpStream>,
    framing: Framing,
    /// The head being read.
    head: Vec<u8>,
    /// Checked bytes hyper has not read yet, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    head_timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    refused: Option<ApiError>,
    eof: bool,
    scratch: Box<[u8]>,
    back: Option<oneshot::Sender<Closed>>,
}

impl Guarded {
    /// Guard `io`; when hyper drops it, the socket comes back through the returned receiver.
    pub fn new(io: TcpStream, head_timeout: Duration) -> (Guarded, oneshot::Receiver<Closed>) {
        let (tx, rx) = oneshot::channel();
        (
            Guarded {
                io: Some(io),
                framing: Framing::Head,
                head: Vec::new(),
                ready: Vec::new(),
                ready_at: 0,
                head_timeout,
                deadline: None,
                refused: None,
                eof: false,
                scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
                back: Some(tx),
            },
            rx,
        )
    }

    fn refuse(&mut self, err: ApiError) {
        self.refused = Some(err);
        self.head = Vec::new();
        self.deadline = None;
    }

    /// Sort bytes from the socket into heads (held until complete and checked) and the rest.
    fn feed(&mut self, data: &[u8]) {
        // Bytes that followed a head in the same read, carried into the next round.
        let mut carried: Option<Vec<u8>> = None;
        let mut pos = 0;
        loop {
            let buf: &[u8] = carried.as_deref().unwrap_or(data);
            if pos >= buf.len() || self.refused.is_some() {
                return;
            }
            let data = &buf[pos..];
            match &mut self.framing {
                Framing::Head => {
                    let room = MAX_HEAD_BYTES + 1 - self.head.len();
                    let take = room.min(data.len());
                    self.head.extend_from_slice(&data[..take]);
                    pos += take;
                    match parse_head(&self.head) {
                        Ok(Parsed::Complete(n, framing)) => {
                            let mut rest = self.head.split_off(n);
                            self.ready.append(&mut self.head);
                            self.framing = framing;
                            self.deadline = None;
                            if !rest.is_empty() {
                                rest.extend_from_slice(&buf[pos..]);
                                carried = Some(rest);
                                pos = 0;
                            }
                        }
                        Ok(Parsed::Partial) if self.head.len() > MAX_HEAD_BYTES => {
                            self.refuse(ApiError::new(
                                Code::HeadersTooLarge,
                                format!(
                                    "the request line and headers are larger than {MAX_HEAD_BYTES} bytes"
                                ),
                            ));
                        }
                        Ok(Parsed::Partial) => {
                            if self.deadline.is_none() {
                                self.deadline =
                                    Some(Box::pin(tokio::time::sleep(self.head_timeout)));
                            }
                        }
                        Err(e) => self.refuse(e),
                    }
                }
                Framing::Length(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    self.ready.extend_from_slice(&data[..n]);
                    pos += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.framing = Framing::Head;
                    }
                }
                Framing::Chunked(c) => {
                    let (n, step) = c.advance(data);
                    self.ready.extend_from_slice(&data[..n]);
                    pos += n;
                    match step {
                        Step::More => {}
                        Step::Done => self.framing = Framing::Head,
                        Step::Lost => self.framing = Framing::Passthrough,
                    }
                }
                Framing::Passthrough => {
                    self.ready.extend_from_slice(data);
                    pos += data.len();
                }
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.refused.is_some() || this.eof {
                // hyper sees the stream end; the refusal is written by `Closed::finish`.
                return Poll::Ready(Ok(()));
            }
            let Some(io) = this.io.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            // Body bytes go straight into hyper's buffer.
            let body_left = match &this.framing {
                Framing::Length(n) => Some(*n),
                Framing::Passthrough => Some(u64::MAX),
                _ => None,
            };
            if let Some(left) = body_left {
                let limit = (buf.remaining() as u64).min(left) as usize;
                let mut sub = buf.take(limit);
                ready!(Pin::new(io).poll_read(cx, &mut sub))?;
                let n = sub.filled().len();
                // SAFETY: `sub` is the start of `buf`'s unfilled part, and the reader filled
                // (so initialized) its first `n` bytes.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                if n == 0 {
                    this.eof = true;
                } else if let Framing::Length(left) = &mut this.framing {
                    *left -= n as u64;
                    if *left == 0 {
                        this.framing = Framing::Head;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(io).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    if let Some(deadline) = this.deadline.as_mut() {
                        if deadline.as_mut().poll(cx).is_ready() {
                            let secs = this.head_timeout.as_secs();
                            this.refuse(ApiError::new(
                                Code::RequestTimeout,
                                format!("the request headers did not arrive within {secs} s"),
                            ));
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                        continue;
                    }
                    let data = this.scratch[..n].to_vec();
                    this.feed(&data);
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Only flushes: the socket is shut (after any refusal is written) by `Closed::finish`.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let mid_body = !matches!(self.framing, Framing::Head);
            let unread = self.ready_at < self.ready.len();
            let refused = self.refused.take();
            let _ = back.send(Closed {
                io,
                linger: refused.is_some() || mid_body || unread,
                refused,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str) -> Result<Framing, Code> {
        match parse_head(head.as_bytes()) {
            Ok(Parsed::Complete(n, f)) => {
                assert_eq!(n, head.len());
                Ok(f)
            }
            Ok(Parsed::Partial) => panic!("partial: {head:?}"),
            Err(e) => Err(e.code),
        }
    }

    #[test]
    fn heads_are_checked_for_what_hyper_would_refuse_without_a_body() {
        let ok = "POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(framing(ok), Ok(Framing::Length(12)));
        assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Head));
        assert_eq!(framing("\r\nGET / HTTP/1.1\r\n\r\n"), Ok(Framing::Head));
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Framing::Chunked(Chunked::start()))
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert_eq!(framing(bad), Err(Code::InvalidRequest), "{bad:?}");
        }
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(framing(&many), Err(Code::HeadersTooLarge));
    }

    #[test]
    fn chunked_bodies_are_followed_to_their_end() {
        let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in [1, 2, 7, body.len()] {
            let mut c = Chunked::start();
            let mut done_at = None;
            let mut at = 0;
            for p in body.chunks(piece) {
                let (n, step) = c.advance(p);
                at += n;
                if let Step::Done = step {
                    done_at = Some(at);
                    break;
                }
                assert!(matches!(step, Step::More));
            }
            assert_eq!(done_at, Some(body.len()), "pieces of {piece}");
        }
        let (_, step) = Chunked::start().advance(b"zz\r\n");
        assert!(matches!(step, Step::Lost));
    }

    #[test]
    fn a_refusal_is_a_complete_json_response() {
        let bytes = response_bytes(&ApiError::new(Code::HeadersTooLarge, "too big").retry_after(3));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("retry-after: 3"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
    }
}
