//! Serving with a graceful shutdown: when the caller's shutdown future completes the server
//! stops admitting (new requests get 503 and the listener closes), lets requests in flight
//! finish, and gives up on them after `ServerConfig::shutdown_grace`. Which signals trigger
//! it is the caller's business (the CLI listens for SIGTERM and Ctrl-C).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{app, AppState};

/// How `serve` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every request in flight finished within the grace period.
    Drained,
    /// The grace period passed with requests still in flight; they were dropped (which cancels
    /// their generations).
    DeadlinePassed,
}

/// Serves `state` on `listener` until `shutdown` completes, then drains.
///
/// Each connection is HTTP/1.1 with a deadline for a request's head
/// (`ServerConfig::header_read_timeout`): a client that opens a connection and never finishes
/// its headers (slowloris) is dropped instead of holding a socket forever. An idle keep-alive
/// connection counts as waiting for a head too.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<ShutdownOutcome> {
    let grace = state.config().shutdown_grace;
    let header_timeout = state.config().header_read_timeout;
    let router = app(state.clone());
    let connections = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Per-connection failures (reset before accept) are nobody's business; others
                // (out of file descriptors) pass with time, so wait instead of spinning.
                if !is_connection_error(&error) {
                    eprintln!("moat: accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        // Small writes go out at once: an SSE chunk must not wait for the previous one's ACK
        // (Nagle's algorithm against delayed ACKs holds each for up to 40 ms).
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("moat: cannot set TCP_NODELAY on a connection: {error}");
        }
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|request: hyper::Request<Incoming>| request.map(Body::new)),
        );
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends only its own connection.
            let _ = connection.await;
        });
    }
    // New requests get 503 from here on; the listener closes; keep-alive connections close
    // once their request in flight is answered.
    state.begin_draining();
    drop(listener);
    match tokio::time::timeout(grace, connections.shutdown()).await {
        Ok(()) => Ok(ShutdownOutcome::Drained),
        Err(_) => Ok(ShutdownOutcome::DeadlinePassed),
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
