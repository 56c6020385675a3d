//! Panics while serving: one structured log line with the request id and route, never the
//! panic's formatted message (it may quote memo text) and no backtrace; and the request gets a
//! 500 `internal` instead of a dropped connection.
//!
//! The request a thread works for is kept in a thread-local: set around each poll of a
//! request's future ([`InRequest`]), around blocking work done for it ([`scope`]), and by the
//! transcription workers around each memo.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};

/// The request a thread is working for.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    /// The route template (`/v1/tag`), or `unmatched`.
    pub route: Arc<str>,
}

thread_local! {
    static CURRENT: RefCell<Option<RequestContext>> = const { RefCell::new(None) };
}

/// The request this thread works for, to hand to blocking work done for it.
pub fn current() -> Option<RequestContext> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Run `f` as work for `ctx` (restored afterwards, also when `f` panics).
pub fn scope<R>(ctx: Option<RequestContext>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<RequestContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(ctx)));
    f()
}

/// A request's future, polled as work for its request, with a panic in it caught.
pub struct InRequest<F> {
    ctx: Option<RequestContext>,
    fut: Pin<Box<F>>,
}

impl<F: Future> InRequest<F> {
    pub fn new(ctx: RequestContext, fut: F) -> InRequest<F> {
        InRequest {
            ctx: Some(ctx),
            fut: Box::pin(fut),
        }
    }
}

/// The future panicked (the panic hook has logged it).
#[derive(Debug)]
pub struct Panicked;

impl<F: Future> Future for InRequest<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let ctx = this.ctx.clone();
        let fut = this.fut.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scope(ctx, || fut.poll(cx))))
        {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}

/// The panic's own text only when it is a literal (`panic!("…")` without arguments): a
/// formatted message can quote the data being processed.
fn safe_message(payload: &(dyn std::any::Any + Send)) -> &'static str {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("(a formatted message, not logged: it may quote request data)")
}

/// One line for a panic: where, for which request, and the message when it is a literal.
pub fn describe(
    info: &std::panic::PanicHookInfo<'_>,
) -> (Option<RequestContext>, String, &'static str) {
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    (current(), location, safe_message(info.payload()))
}

/// Log a panic while serving a request as one structured line (replacing the default hook,
/// which prints the message, which may quote memo text, and a backtrace on request). A panic
/// outside any request (start-up, a test's own assertion) goes to the hook that was installed
/// before. Installed once per process by the server.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let (ctx, location, message) = describe(info);
            let Some(ctx) = ctx else {
                previous(info);
                return;
            };
            let (request_id, route) = (&*ctx.request_id, &*ctx.route);
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("-");
            if tracing::dispatcher::has_been_set() {
                tracing::error!(request_id, route, location, thread, message, "panic");
            } else {
                eprintln!(
                    "panic request_id={request_id} route={route} location={location} thread={thread} message={message:?}"
                );
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_messages_are_withheld_and_literals_kept() {
        let secret = String::from("客户说价格太高");
        let formatted: Box<dyn std::any::Any + Send> = Box::new(format!("bad text {secret}"));
        assert!(!safe_message(&*formatted).contains("客户"));
        let literal: Box<dyn std::any::Any + Send> = Box::new("index out of range");
        assert_eq!(safe_message(&*literal), "index out of range");
    }

    #[test]
    fn the_context_is_scoped_and_restored_after_a_panic() {
        let ctx = RequestContext {
            request_id: "r-1".into(),
            route: "/v1/tag".into(),
        };
        assert!(current().is_none());
        let seen = scope(Some(ctx.clone()), || current().map(|c| c.request_id));
        assert_eq!(seen.as_deref(), Some("r-1"));
        let caught = std::panic::catch_unwind(|| scope(Some(ctx), || panic!("boom")));
        assert!(caught.is_err());
        assert!(current().is_none());
    }
}
