//! What `weft filter test` replays: with `WEFT_FILTER_RECORD` set to a directory, every
//! [`Harness`](crate::testing::Harness) writes the calls a test makes (the request and
//! response as the filter got them, the clock, and what the filter answered) to a file
//! of JSON lines there. `weft filter test` then sends the same requests through the
//! real host, with the component, and reports any call answered differently.
//!
//! Recorded: the request-headers, response-headers and response-body phases, and what
//! each mocked cluster answered the filter's calls during them, which the replay's
//! clusters answer again.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::http::{CallError, OutboundResponse};
use crate::testing::{TestHost, TestRequest, TestResponse};

/// A mocked cluster's answer to a filter's call, with the cluster.
pub(crate) type Answer = (String, Result<OutboundResponse, CallError>);
use crate::{Action, BodyAction, LocalResponse};

/// The variable naming the directory recordings go to.
pub const RECORD_ENV: &str = "WEFT_FILTER_RECORD";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// One harness's recording.
pub(crate) struct Recorder {
    file: RefCell<File>,
}

impl Recorder {
    /// A recorder when `WEFT_FILTER_RECORD` asks for one.
    pub(crate) fn start(
        config_json: &str,
        name: &str,
        files: bool,
        host: &TestHost,
    ) -> Option<Recorder> {
        let dir = std::env::var_os(RECORD_ENV)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(&dir).join(format!("{}-{n}.jsonl", std::process::id()));
        let file = File::create(path).ok()?;
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let r = Recorder {
            file: RefCell::new(file),
        };
        r.line(json!({
            "kind": "harness",
            "test": test,
            "config": config_json,
            "name": name,
            "files": files,
            "start_ms": host.now_ms.get(),
            "host": host.id,
        }));
        Some(r)
    }

    fn line(&self, v: Value) {
        let _ = writeln!(self.file.borrow_mut(), "{v}");
    }

    /// The filter refused its configuration.
    pub(crate) fn rejected(&self, message: &str) {
        self.line(json!({ "kind": "rejected", "message": message }));
    }

    /// A request-headers call.
    pub(crate) fn request_headers(
        &self,
        now_ms: u64,
        before: &TestRequest,
        action: &Action,
        after: &TestRequest,
        outbound: &[Answer],
        random: bool,
    ) {
        self.line(json!({
            "kind": "request_headers",
            "now_ms": now_ms,
            "request": request(before),
            "action": action_json(action),
            "after": request(after),
            "outbound": answers(outbound),
            "random": random,
        }));
    }

    /// A response-headers call.
    #[allow(
        clippy::too_many_arguments,
        reason = "one line of the recording, field by field"
    )]
    pub(crate) fn response_headers(
        &self,
        now_ms: u64,
        req: &TestRequest,
        before: &TestResponse,
        action: &Action,
        after: &TestResponse,
        outbound: &[Answer],
        random: bool,
    ) {
        self.line(json!({
            "kind": "response_headers",
            "now_ms": now_ms,
            "request": request(req),
            "response": response(before),
            "action": action_json(action),
            "after": response(after),
            "outbound": answers(outbound),
            "random": random,
        }));
    }

    /// A response-body call.
    #[allow(
        clippy::too_many_arguments,
        reason = "one line of the recording, field by field"
    )]
    pub(crate) fn response_body(
        &self,
        now_ms: u64,
        req: &TestRequest,
        resp: &TestResponse,
        body: &[u8],
        end_of_stream: bool,
        buffered: bool,
        action: &BodyAction,
        outbound: &[Answer],
        random: bool,
    ) {
        let action = match action {
            BodyAction::Continue => json!("continue"),
            BodyAction::Replace(b) => json!({ "replace": b }),
            BodyAction::Respond(r) => json!({ "respond": local(r) }),
        };
        self.line(json!({
            "kind": "response_body",
            "now_ms": now_ms,
            "request": request(req),
            "response": response(resp),
            "body": body,
            "end_of_stream": end_of_stream,
            "buffered": buffered,
            "action": action,
            "outbound": answers(outbound),
            "random": random,
        }));
    }
}

/// The answers the filter's calls got, which the replay's clusters give again:
/// `{cluster, response: {status, headers, body}}`, `{cluster, failure}` (an upstream
/// failure's name) or `{cluster, error}` (not replayable).
fn answers(list: &[Answer]) -> Value {
    let items: Vec<Value> = list
        .iter()
        .map(|(cluster, result)| match result {
            Ok(r) => json!({
                "cluster": cluster,
                "response": { "status": r.status, "headers": r.headers, "body": r.body },
            }),
            Err(CallError::Failed(f)) => json!({ "cluster": cluster, "failure": f.as_str() }),
            Err(e) => json!({ "cluster": cluster, "error": e.to_string() }),
        })
        .collect();
    Value::Array(items)
}

fn request(r: &TestRequest) -> Value {
    json!({
        "method": r.method,
        "path": r.path,
        "authority": r.authority,
        "headers": r.headers,
        "client_address": r.client_address,
        "attempt": r.attempt,
        "properties": r.properties,
        "body_replayable": r.body_replayable,
        "peer_identity": r.peer_identity,
        "response_headers": r.response_headers,
    })
}

fn response(r: &TestResponse) -> Value {
    json!({ "status": r.status, "headers": r.headers })
}

fn local(r: &LocalResponse) -> Value {
    json!({ "status": r.status, "headers": r.headers, "body": r.body })
}

fn action_json(a: &Action) -> Value {
    match a {
        Action::Continue => json!("continue"),
        Action::Respond(r) => json!({ "respond": local(r) }),
        Action::Delay(d) => json!({ "delay_ms": d.as_millis() as u64 }),
        Action::RouteTo(c) => json!({ "route_to": c }),
        Action::Retry { backoff } => json!({ "retry_ms": backoff.as_millis() as u64 }),
    }
}
