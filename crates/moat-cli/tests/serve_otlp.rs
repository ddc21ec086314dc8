//! `moat serve`'s traces through the real binary: a bad collector URL from the flag, the
//! environment or moat.toml is a usage error (exit 2) before anything starts; a good one gets
//! the request spans of a running server, the last ones sent at graceful shutdown. The
//! collector is a loopback stub that stores the bodies it is sent.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::*;

const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[test]
fn a_bad_otlp_endpoint_on_the_command_line_exits_2() {
    let home = TempHome::new();
    let output = moat(home.path())
        .env_remove(ENDPOINT_ENV)
        .args(["serve", "--otlp-endpoint", "ftp://collector:4318"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("--otlp-endpoint"), "{message}");
    assert!(message.contains("http or https"), "{message}");
}

#[test]
fn a_bad_otlp_endpoint_in_the_environment_or_moat_toml_exits_2() {
    let home = TempHome::new();
    let output = moat(home.path())
        .env(ENDPOINT_ENV, "collector:4318")
        .args(["serve"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(ENDPOINT_ENV),
        "{}",
        stderr(&output)
    );

    let config = home.path().join("moat.toml");
    std::fs::write(&config, "[observability]\notlp_endpoint = \"not a url\"\n").unwrap();
    let output = moat(home.path())
        .env_remove(ENDPOINT_ENV)
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("[observability] otlp_endpoint"),
        "{}",
        stderr(&output)
    );
}

/// A collector stub on 127.0.0.1: stores each request's body and answers 200, closing the
/// connection.
fn start_collector() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0u8; length];
            if length == 0 || reader.read_exact(&mut body).is_err() {
                continue;
            }
            store.lock().unwrap().push(String::from_utf8(body).unwrap());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (format!("http://{address}"), bodies)
}

/// The server process; killed (by its id) if the test fails before it exits.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn serve_sends_request_spans_and_flushes_them_at_shutdown() {
    let home = TempHome::new();
    // A pure gateway (no local model to load): its alias points at a closed port.
    let config = home.path().join("moat.toml");
    std::fs::write(
        &config,
        "[[aliases.fast.targets]]\ntype = \"upstream\"\nurl = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n\
         [routing]\nhealth_interval_secs = 0\n",
    )
    .unwrap();
    let (endpoint, bodies) = start_collector();
    let mut server = Server(
        moat(home.path())
            .env_remove(ENDPOINT_ENV)
            .env("OTEL_SERVICE_NAME", "cli-test")
            .args(["serve", "--port", "0", "--config", config.to_str().unwrap()])
            .args(["--otlp-endpoint", &endpoint])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut server.0;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("moat serve ended before it listened")
            .unwrap();
        // "moat: OpenAI-compatible API on http://ADDRESS/v1 (health: /health)"
        if let Some(rest) = line.split("API on http://").nth(1) {
            break rest.split("/v1").next().unwrap().to_owned();
        }
    };
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .write_all(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: cli-trace\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Graceful shutdown: SIGTERM to the server we started, by its id.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    // The process has exited: whatever it queued was sent before it did.
    let bodies = bodies.lock().unwrap().clone();
    let span = bodies
        .iter()
        .map(|body| serde_json::from_str::<serde_json::Value>(body).unwrap())
        .flat_map(|body| {
            let resource = body["resourceSpans"][0].clone();
            assert_eq!(
                resource["resource"]["attributes"][0]["value"]["stringValue"],
                "cli-test"
            );
            resource["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .clone()
        })
        .find(|span| span["name"] == "GET /v1/models")
        .unwrap_or_else(|| panic!("no span for the request in {bodies:?}"));
    assert_eq!(span["kind"], 2);
    assert!(span.to_string().contains("cli-trace"), "{span}");
}
