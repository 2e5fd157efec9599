//! A filter you can copy: it gives every request an id and echoes it on the response.
//!
//! - In the request phase it keeps a well-formed id the client sent (unless
//!   `trust_incoming: false`), or makes a random UUID (version 4), and sets it on the
//!   request header the upstream sees.
//! - In the response phase it copies the id to the same header on the response, so the
//!   client can quote it when something goes wrong.
//! - It counts generated and reused ids in `weft_filter_request_ids_total{source}`.
//!
//! Configuration (all optional):
//!
//! ```yaml
//! config:
//!   header: x-request-id     # the header to read and write
//!   trust_incoming: true     # keep an id the client sent, if well-formed
//!   echo: true               # copy the id to the response
//! ```

use serde::Deserialize;
use weft_sdk::{metrics, random, Action, Filter, InitContext, Request, Response};

/// The filter's configuration, from the `config:` section of its entry in the proxy's
/// YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The header to read and write.
    pub header: String,
    /// Keep a well-formed id the client sent instead of making a new one.
    pub trust_incoming: bool,
    /// Copy the id to the response.
    pub echo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { header: "x-request-id".to_owned(), trust_incoming: true, echo: true }
    }
}

/// Gives every request an id.
pub struct RequestId {
    header: String,
    trust_incoming: bool,
    echo: bool,
}

/// The property that carries the id from the request phase to the response phase.
const ID_PROPERTY: &str = "request_id";

/// An id from a client is kept only if it is short and plain.
fn well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A random (version 4) UUID in its usual text form.
fn uuid_v4() -> String {
    let mut b = random::bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[weft_sdk::filter]
impl Filter for RequestId {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        if !well_formed(&config.header) {
            return Err(format!("header: {:?} is not a valid header name", config.header));
        }
        metrics::describe("request_ids_total", "Request ids by source: generated or incoming.", None);
        Ok(RequestId {
            header: config.header.to_ascii_lowercase(),
            trust_incoming: config.trust_incoming,
            echo: config.echo,
        })
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        let incoming = req.header(&self.header).filter(|id| self.trust_incoming && well_formed(id));
        let (id, source) = match incoming {
            Some(id) => (id, "incoming"),
            None => (uuid_v4(), "generated"),
        };
        if let Err(e) = req.set_header(&self.header, &id) {
            // Cannot happen with a checked name and a generated id; say so if it does.
            weft_sdk::log::warn(&format!("could not set {}: {e}", self.header));
        }
        req.set_property(ID_PROPERTY, &id);
        metrics::counter_inc("request_ids_total", &[("source", source)]);
        Action::Continue
    }

    fn on_response_headers(&self, req: &mut Request, resp: &mut Response) -> Action {
        if self.echo {
            if let Some(id) = req.property(ID_PROPERTY) {
                resp.set_header(&self.header, &id).ok();
            }
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest, TestResponse};

    fn exchange(h: &Harness<RequestId>, mut req: TestRequest) -> (TestRequest, TestResponse) {
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        let mut resp = TestResponse::new(200);
        assert_eq!(h.on_response_headers(&mut req, &mut resp), Action::Continue);
        (req, resp)
    }

    #[test]
    fn generates_a_uuid_and_echoes_it() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (req, resp) = exchange(&h, TestRequest::get("/"));
        let id = req.header_now("x-request-id").expect("id set upstream");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "version 4 UUID: {id}");
        assert_eq!(resp.header_now("x-request-id"), Some(id));
        assert_eq!(h.host().metric("request_ids_total", &[("source", "generated")]), 1.0);
    }

    #[test]
    fn each_request_gets_its_own_id() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (a, _) = exchange(&h, TestRequest::get("/"));
        let (b, _) = exchange(&h, TestRequest::get("/"));
        assert_ne!(a.header_now("x-request-id"), b.header_now("x-request-id"));
    }

    #[test]
    fn keeps_a_well_formed_incoming_id_unless_told_not_to() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (_, resp) = exchange(&h, TestRequest::get("/").header("X-Request-Id", "abc-123"));
        assert_eq!(resp.header_now("x-request-id").as_deref(), Some("abc-123"));
        assert_eq!(h.host().metric("request_ids_total", &[("source", "incoming")]), 1.0);

        let h = Harness::<RequestId>::new(r#"{"trust_incoming": false}"#).unwrap();
        let (_, resp) = exchange(&h, TestRequest::get("/").header("x-request-id", "abc-123"));
        assert_ne!(resp.header_now("x-request-id").as_deref(), Some("abc-123"));
    }

    #[test]
    fn replaces_a_malformed_incoming_id() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (req, _) = exchange(&h, TestRequest::get("/").header("x-request-id", "no spaces allowed"));
        assert_eq!(req.header_now("x-request-id").unwrap().len(), 36);
    }

    #[test]
    fn custom_header_and_no_echo() {
        let h = Harness::<RequestId>::new(r#"{"header": "X-Trace", "echo": false}"#).unwrap();
        let (req, resp) = exchange(&h, TestRequest::get("/"));
        assert!(req.header_now("x-trace").is_some());
        assert_eq!(resp.header_now("x-trace"), None);
    }

    #[test]
    fn bad_config_is_refused_with_the_field() {
        let err = Harness::<RequestId>::new(r#"{"header": "bad header"}"#).err().unwrap();
        assert!(err.starts_with("header:"), "{err}");
        let err = Harness::<RequestId>::new(r#"{"hedaer": "x"}"#).err().unwrap();
        assert!(err.contains("unknown field `hedaer`"), "{err}");
    }
}
