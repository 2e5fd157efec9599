//! A filter that takes part in both header phases and changes nothing: what the proxy
//! pays for a filter call itself.

use weft_sdk::{Action, Filter, InitContext, Request, Response};

/// Does nothing, in both header phases.
pub struct Noop;

#[weft_sdk::filter]
impl Filter for Noop {
    type Config = ();

    fn new(_config: (), _ctx: &InitContext) -> Result<Self, String> {
        Ok(Noop)
    }

    fn on_request_headers(&self, _req: &mut Request) -> Action {
        Action::Continue
    }

    fn on_response_headers(&self, _req: &mut Request, _resp: &mut Response) -> Action {
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest, TestResponse};

    #[test]
    fn changes_nothing() {
        let h = Harness::<Noop>::new("null").unwrap();
        let mut req = TestRequest::get("/a").header("x", "1");
        let before = req.headers_now().to_vec();
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        assert_eq!(
            h.on_response_headers(&mut req, &mut TestResponse::new(200)),
            Action::Continue
        );
        assert_eq!(req.headers_now(), &before[..]);
        assert!(h.phases().request_headers && h.phases().response_headers && !h.phases().log);
    }
}
