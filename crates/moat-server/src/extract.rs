//! `RawBody`: a request body read up to the configured limit; a larger one is a 413 in
//! OpenAI's error shape rather than axum's plain-text answer. The body is parsed by
//! moat-openai, whatever the `Content-Type` says, as OpenAI's own API does.
//!
//! Every body moat reads goes through [`IdleBody`]: a client that stops sending its body
//! halfway gets 408 after `ServerConfig::body_idle_timeout` instead of holding the request
//! open forever.
//!
//! [`run_noting_body`] marks an answer sent before its body was read with `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::{ApiError, AppState};

pub struct RawBody(pub Bytes);

/// A route's path parameters; one that cannot be read (invalid UTF-8 after percent-decoding,
/// say) is a 400 in OpenAI's error shape, not axum's plain text.
pub struct PathParams<T>(pub T);

impl<T> FromRequestParts<AppState> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params)),
            Err(rejection) => Err(ApiError::invalid_request(format!(
                "the request path cannot be read: {}",
                rejection.body_text()
            ))),
        }
    }
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (request, idle) = with_idle_timeout(request, state);
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(_) if idle.timed_out() => Err(idle.error()),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large(state.config().body_limit_bytes))
            }
            Err(rejection) => Err(ApiError::invalid_request(format!(
                "could not read the request body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Whether a body wrapped by [`with_idle_timeout`] gave up waiting.
pub(crate) struct IdleWatch {
    fired: Arc<AtomicBool>,
    after: Duration,
}

impl IdleWatch {
    pub(crate) fn timed_out(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }

    /// The 408 for a body that stopped arriving.
    pub(crate) fn error(&self) -> ApiError {
        ApiError::request_timeout(self.after)
    }
}

/// `request` with a body that fails once no byte of it arrives for the configured time.
pub(crate) fn with_idle_timeout(request: Request, state: &AppState) -> (Request, IdleWatch) {
    let after = state.config().body_idle_timeout;
    let watch = IdleWatch {
        fired: Arc::new(AtomicBool::new(false)),
        after,
    };
    let (parts, body) = request.into_parts();
    let body = Body::new(IdleBody {
        inner: body,
        after,
        sleep: Box::pin(tokio::time::sleep(after)),
        fired: Arc::clone(&watch.fired),
    });
    (Request::from_parts(parts, body), watch)
}

/// A body whose every frame must come within `after` of the one before (or of the start).
struct IdleBody {
    inner: Body,
    after: Duration,
    sleep: Pin<Box<Sleep>>,
    fired: Arc<AtomicBool>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + this.after);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.fired.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new(format!(
                        "no byte of the request body arrived for {} s",
                        this.after.as_secs_f64()
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs the rest of the app on `request`; an answer that goes out before its body was read (a
/// 401 from the key check, a 404 for an unknown route, a 413) says `Connection: close`. hyper
/// cannot keep such a connection (the rest of the body is still coming) and closes it after the
/// answer; without the header a keep-alive client would send its next request on it and see
/// the connection drop without an answer.
pub(crate) async fn run_noting_body(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = Body::new(ReadToEnd {
        inner: body,
        read: Arc::clone(&read),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !read.load(Ordering::Relaxed) {
        closing(&mut response);
    }
    response
}

/// `response`, answered without reading `request`'s body: `Connection: close` when it has one.
pub(crate) fn answer_unread(
    request: &Request,
    mut response: axum::response::Response,
) -> axum::response::Response {
    use http_body::Body as _;
    if !request.body().is_end_stream() {
        closing(&mut response);
    }
    response
}

fn closing(response: &mut axum::response::Response) {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
}

/// A body that records when it was read to its end.
struct ReadToEnd {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for ReadToEnd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
