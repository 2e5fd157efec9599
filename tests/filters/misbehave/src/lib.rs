//! A filter that misbehaves when a request asks it to, so the proxy's limits and
//! failure policies can be tested:
//!
//! - `x-misbehave: trap` panics (a trap in wasm);
//! - `x-misbehave: loop` never returns (the proxy's deadline must cut it off);
//! - `x-misbehave: oom` grows memory until refused (the proxy's memory cap must stop it);
//! - anything else passes, with `x-misbehave-calls` counting this instance's calls, so a
//!   test can see whether an instance was reused or replaced.
//!
//! `config: {reject: "why"}` makes `init` fail with that reason.

use std::cell::Cell;

use serde::Deserialize;
use weft_sdk::{Action, Filter, InitContext, Request, Response};

/// The configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// When set, `init` fails with this reason.
    pub reject: Option<String>,
}

/// Misbehaves on request.
pub struct Misbehave {
    /// Calls served by this instance. Deliberately instance state, to observe reuse.
    calls: Cell<u64>,
}

#[weft_sdk::filter]
impl Filter for Misbehave {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        match config.reject {
            Some(why) => Err(why),
            None => Ok(Misbehave {
                calls: Cell::new(0),
            }),
        }
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        self.calls.set(self.calls.get() + 1);
        match req.header("x-misbehave").as_deref() {
            Some("trap") => panic!("asked to trap"),
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("oom") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Action::Continue,
        }
    }

    fn on_response_headers(&self, _req: &mut Request, resp: &mut Response) -> Action {
        resp.set_header("x-misbehave-calls", &self.calls.get().to_string())
            .ok();
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest, TestResponse};

    #[test]
    fn passes_plain_requests_and_counts_calls() {
        let h = Harness::<Misbehave>::new("null").unwrap();
        let mut req = TestRequest::get("/");
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        let mut resp = TestResponse::new(200);
        h.on_response_headers(&mut req, &mut resp);
        assert_eq!(resp.header_now("x-misbehave-calls").as_deref(), Some("1"));
    }

    #[test]
    fn rejects_config_on_request() {
        let err = Harness::<Misbehave>::new(r#"{"reject": "no thanks"}"#).err();
        assert_eq!(err.as_deref(), Some("no thanks"));
    }

    #[test]
    #[should_panic(expected = "asked to trap")]
    fn traps_on_request() {
        let h = Harness::<Misbehave>::new("null").unwrap();
        h.on_request_headers(&mut TestRequest::get("/").header("x-misbehave", "trap"));
    }
}
