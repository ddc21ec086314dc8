//! Serving with a graceful shutdown: when the caller's shutdown future completes the server
//! stops admitting (new requests get 503 and the listener closes), lets requests in flight
//! finish, and gives up on them after `ServerConfig::shutdown_grace`. Which signals trigger
//! it is the caller's business (the CLI listens for SIGTERM and Ctrl-C).

use std::future::{Future, IntoFuture};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<ShutdownOutcome> {
    let grace = state.config().shutdown_grace;
    let (began_tx, began_rx) = oneshot::channel::<()>();
    let draining = state.clone();
    let signal = async move {
        shutdown.await;
        draining.begin_draining();
        let _ = began_tx.send(());
    };
    // Small writes go out at once: an SSE chunk must not wait for the previous one's ACK
    // (Nagle's algorithm against delayed ACKs holds each for up to 40 ms).
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("moat: cannot set TCP_NODELAY on a connection: {error}");
        }
    });
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signal);
    let mut server = tokio::spawn(server.into_future());
    tokio::select! {
        finished = &mut server => {
            // The server stopped by itself (an accept error), before any shutdown signal.
            return finished
                .map_err(std::io::Error::other)?
                .map(|()| ShutdownOutcome::Drained);
        }
        _ = began_rx => {}
    }
    match tokio::time::timeout(grace, &mut server).await {
        Ok(finished) => {
            finished.map_err(std::io::Error::other)??;
            Ok(ShutdownOutcome::Drained)
        }
        Err(_) => {
            server.abort();
            Ok(ShutdownOutcome::DeadlinePassed)
        }
    }
}
