//! A filter that answers every request itself from the `global` shared state, so the
//! Redis tests can see what a filter sees:
//!
//! - `/count`: adds 1 to the global counter `hits` (a 60 s window) and answers its value;
//! - `/read`: answers the counter's value without adding;
//! - `/kv/set/<value>`: stores `<value>` under the global key `k` (`global-kv`);
//! - `/kv/get`: answers the value under `k`, or `absent`.
//!
//! A `global-kv` call that fails answers 503 `unavailable`.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::state::{self, global, Scope};
use weft_sdk::{Action, Filter, InitContext, Reads, Request};

/// No settings.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Answers from the global state.
pub struct Tally;

#[weft_sdk::filter]
impl Filter for Tally {
    type Config = Config;

    fn new(_config: Config, _ctx: &InitContext) -> Result<Self, String> {
        Ok(Tally)
    }

    fn reads(&self) -> Reads {
        Reads::new().path()
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        let path = req.path();
        let answer = match path.as_str() {
            "/count" => {
                Ok(
                    state::counter_add_in(Scope::Global, "hits", 1, Some(Duration::from_secs(60)))
                        .value
                        .to_string(),
                )
            }
            "/read" => Ok(state::counter_get_in(Scope::Global, "hits")
                .value
                .to_string()),
            "/kv/get" => global::get("k").map(|v| {
                v.map_or_else(
                    || "absent".to_owned(),
                    |v| String::from_utf8_lossy(&v).into(),
                )
            }),
            p => match p.strip_prefix("/kv/set/") {
                Some(v) => global::set("k", v.as_bytes(), None).map(|()| "stored".to_owned()),
                None => return Action::respond(404, "no such tally path"),
            },
        };
        match answer {
            Ok(text) => Action::respond(200, text),
            Err(e) => Action::respond(503, format!("unavailable: {e}")),
        }
    }
}
