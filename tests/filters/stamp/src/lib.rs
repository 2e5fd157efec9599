//! A filter that marks both directions of an exchange with the stamp it was configured
//! with: `x-stamp-seen` on the request the upstream receives, `x-stamp` on the response.
//! Reload tests use it to tell which configuration served a request, and that both
//! directions were served by the same one. It also adds `stamp` to the request's trace
//! span (tracing tests look for it).

use serde::Deserialize;
use weft_sdk::{Action, Filter, InitContext, Request, Response};

/// The configuration.
#[derive(Deserialize)]
#[serde(default)]
pub struct Config {
    /// The stamp.
    pub stamp: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stamp: "stamp".into(),
        }
    }
}

/// Stamps requests and responses.
pub struct Stamp {
    stamp: String,
}

#[weft_sdk::filter]
impl Filter for Stamp {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        if config.stamp.is_empty() {
            return Err("stamp: must not be empty".into());
        }
        Ok(Stamp {
            stamp: config.stamp,
        })
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        req.set_header("x-stamp-seen", &self.stamp).ok();
        req.span_attribute("stamp", &self.stamp);
        Action::Continue
    }

    fn on_response_headers(&self, _req: &mut Request, resp: &mut Response) -> Action {
        resp.set_header("x-stamp", &self.stamp).ok();
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest, TestResponse};

    #[test]
    fn stamps_both_directions() {
        let h = Harness::<Stamp>::new(r#"{"stamp": "A"}"#).unwrap();
        let mut req = TestRequest::get("/");
        h.on_request_headers(&mut req);
        assert_eq!(req.header_now("x-stamp-seen").as_deref(), Some("A"));
        assert_eq!(
            req.span_attributes_now(),
            &[("stamp".to_owned(), "A".to_owned())]
        );
        let mut resp = TestResponse::new(200);
        h.on_response_headers(&mut req, &mut resp);
        assert_eq!(resp.header_now("x-stamp").as_deref(), Some("A"));
    }

    #[test]
    fn an_empty_stamp_is_refused() {
        assert!(Harness::<Stamp>::new(r#"{"stamp": ""}"#).is_err());
    }
}
