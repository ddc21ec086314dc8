//! Graceful shutdown over a real socket: after the signal the server takes no new requests,
//! lets a stream in flight finish, and gives up on it once the grace period has passed. And the
//! connection deadlines: a request head or body that stops arriving does not hold a
//! connection forever.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_engine::{FakeConfig, FakeEngine, FakeReply};
use moat_openai::ModelLimits;
use moat_server::{serve, AppState, ServedModel, ServerConfig, ShutdownOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    address: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<ShutdownOutcome>>,
}

async fn start(grace: Duration) -> Running {
    start_with(ServerConfig {
        shutdown_grace: grace,
        ..ServerConfig::default()
    })
    .await
}

async fn start_with(config: ServerConfig) -> Running {
    let engine = FakeEngine::new(FakeConfig {
        reply: FakeReply::Repeat("ab".into()),
        step_delay: Duration::from_millis(4),
        ..FakeConfig::default()
    })
    .unwrap();
    let state = AppState::new(config);
    state.add_model(
        "fake",
        ServedModel::new(Arc::new(engine), ModelLimits::default()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop,
        server,
    }
}

/// Sends a streamed chat request and returns the connection once the headers are in.
async fn open_stream(address: std::net::SocketAddr, max_tokens: u32) -> (TcpStream, String) {
    let body = format!(
        r#"{{"model":"fake","messages":[{{"role":"user","content":"hi"}}],"stream":true,"max_tokens":{max_tokens}}}"#
    );
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (stream, head)
}

async fn read_to_end(mut stream: TcpStream) -> String {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    String::from_utf8_lossy(&rest).into_owned()
}

/// A new request after the signal is refused: the listener is closed, or the answer is 503.
async fn new_request_is_refused(address: std::net::SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return;
    };
    let request = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let answer = read_to_end(stream).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_streams_finish_after_the_signal() {
    let running = start(Duration::from_secs(30)).await;
    let (stream, head) = open_stream(running.address, 60).await;
    running.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    new_request_is_refused(running.address).await;
    let rest = read_to_end(stream).await;
    assert!(
        format!("{head}{rest}").contains("data: [DONE]"),
        "{head}{rest}"
    );
    let outcome = running.server.await.unwrap().unwrap();
    assert_eq!(outcome, ShutdownOutcome::Drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_the_wait() {
    let running = start(Duration::from_millis(300)).await;
    let (_stream, _) = open_stream(running.address, 900).await;
    let signalled = Instant::now();
    running.stop.send(()).unwrap();
    let outcome = running.server.await.unwrap().unwrap();
    assert_eq!(outcome, ShutdownOutcome::DeadlinePassed);
    assert!(signalled.elapsed() < Duration::from_secs(3));
}

/// What the server sends on `stream` until it closes it, or `None` if it is still open after
/// `limit`.
async fn answer_before_close(mut stream: TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_or_body_that_stops_arriving_does_not_hold_the_connection() {
    let running = start_with(ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        body_idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;

    // Half a head (slowloris): the connection is closed.
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = answer_before_close(stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "a half head held the connection for 10 s");

    // Half a body: 408 in OpenAI's error shape.
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"model\":",
        )
        .await
        .unwrap();
    let answer = answer_before_close(stream, Duration::from_secs(10))
        .await
        .expect("a half body held the connection for 10 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");

    // A whole request on a fresh connection is served as usual.
    let (stream, head) = open_stream(running.address, 4).await;
    let rest = read_to_end_or_done(stream).await;
    assert!(
        format!("{head}{rest}").contains("data: [DONE]"),
        "{head}{rest}"
    );
    running.stop.send(()).unwrap();
    running.server.await.unwrap().unwrap();
}

/// Reads a streamed answer until its `[DONE]` (the connection stays open for keep-alive).
async fn read_to_end_or_done(mut stream: TcpStream) -> String {
    let mut all = Vec::new();
    let mut buffer = vec![0; 4096];
    while !String::from_utf8_lossy(&all).contains("data: [DONE]") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => all.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads one answer whose head and body arrive in one piece (a small error or health answer).
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_sent_before_the_body_was_read_closes_the_connection_and_says_so() {
    let running = start(Duration::from_secs(30)).await;

    // An unknown route answers before the body arrives: hyper cannot reuse the connection,
    // and the answer must say so, or a keep-alive client would send its next request into it.
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(b"POST /v1/no-such-route HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // An error after the whole body was read keeps the connection for the next request.
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{not json",
        )
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    running.stop.send(()).unwrap();
    running.server.await.unwrap().unwrap();
}
