//! A filter that takes part in the request-headers phase only and does nothing: the
//! floor of one filter call, what the proxy pays for the call itself.

use weft_sdk::{Action, Filter, InitContext, Request};

/// Does nothing, once per request.
pub struct Empty;

#[weft_sdk::filter]
impl Filter for Empty {
    type Config = ();

    fn new(_config: (), _ctx: &InitContext) -> Result<Self, String> {
        Ok(Empty)
    }

    fn on_request_headers(&self, _req: &mut Request) -> Action {
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest};

    #[test]
    fn one_phase_and_nothing_changed() {
        let h = Harness::<Empty>::new("null").unwrap();
        let mut req = TestRequest::get("/a").header("x", "1");
        let before = req.headers_now().to_vec();
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        assert_eq!(req.headers_now(), &before[..]);
        let p = h.phases();
        assert!(p.request_headers && !p.response_headers && !p.request_body && !p.log);
    }
}
