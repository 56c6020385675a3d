//! Serving: the accept loop, each connection through [`conn::Guarded`] into hyper (HTTP/1.1),
//! and the graceful drain.
//!
//! On shutdown the service keeps its listener: `/healthz` still answers and `/readyz` (like
//! every other route) says `not_ready`, until the requests in flight have finished or
//! `server.request_timeout_s` has passed. Then it stops accepting, closes the connections that
//! have no request in flight (clients trickling a request head included: they never hold the
//! drain) and returns once the rest have closed or two seconds have passed.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::conn::{Closed, Guarded, MAX_HEADERS};
use super::error::{ApiError, Code};
use super::{panics, AppState};

/// Longest the last connections get to close after the drain.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serve the API on `listener` until `shutdown` resolves, then drain (see the module docs).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = super::router(state.clone());
    serve_router(listener, state, app, shutdown).await
}

/// [`serve`] with a router built by the caller from [`super::router_with`] (tests add routes).
pub async fn serve_router(
    listener: TcpListener,
    state: Arc<AppState>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    panics::install_hook();
    let cfg = state.cfg.server.clone();
    let limits = Limits {
        head: Duration::from_secs(cfg.header_timeout_s.max(1)),
        idle: Duration::from_secs(cfg.idle_timeout_s.max(1)),
    };
    let open = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut drain_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = &mut shutdown, if drain_until.is_none() => {
                state.shutting_down.store(true, Ordering::SeqCst);
                drain_until = Some(Instant::now() + Duration::from_secs(cfg.request_timeout_s));
                tracing::info!(
                    in_flight = state.requests_in_flight(),
                    "draining: health answers, everything else is not_ready; waiting for the requests in flight"
                );
            }
            _ = tick.tick(), if drain_until.is_some() => {
                if state.requests_in_flight() == 0 || drain_until.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(connection(tcp, app.clone(), state.clone(), limits, drain_rx.clone(), permit));
                    }
                    Err(_) => {
                        tasks.spawn(Closed::new(tcp, Some(too_many_connections(cfg.max_connections))).finish());
                    }
                },
                Err(e) => {
                    // Out of file descriptors, say: do not spin, and keep serving the open ones.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(l) = st.loaded.get() {
            l.pool.shutdown();
            // Every memo answered is written before the process goes.
            if let Some(a) = &l.archive {
                a.close();
            }
        }
    })
    .await;
    Ok(())
}

fn too_many_connections(max: usize) -> ApiError {
    ApiError::new(
        Code::Busy,
        format!("the server has {max} connections open, its limit; retry shortly"),
    )
    .retry_after(1)
}

#[derive(Clone, Copy)]
struct Limits {
    /// From a request head's first byte to its end.
    head: Duration,
    /// hyper's own limit, from the end of a response to the next complete head.
    idle: Duration,
}

async fn connection(
    tcp: TcpStream,
    app: Router,
    state: Arc<AppState>,
    limits: Limits,
    mut drain: watch::Receiver<bool>,
    _open: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let (guarded, closed) = Guarded::new(tcp, limits.head);
    {
        let service =
            TowerToHyperService::new(app.map_request(|req: Request<Incoming>| req.map(Body::new)));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle)
            // Above the guard's limit, which refuses first (with a JSON 431).
            .max_headers(MAX_HEADERS + 28);
        let mut conn = pin!(builder.serve_connection(TokioIo::new(guarded), service));
        let mut draining = *drain.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                changed = drain.changed(), if !draining => {
                    draining = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
    // hyper has dropped the guard: the socket is back, with any refusal to write.
    if let Ok(closed) = closed.await {
        if let Some(err) = &closed.refused {
            state.metrics.refused(err.code);
            tracing::info!(code = %err.code, status = err.status().as_u16(), "request head refused");
        }
        closed.finish().await;
    }
}
