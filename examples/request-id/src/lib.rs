//! A filter you can copy: it gives every request an id and echoes it on the response.
//!
//! - In the request phase it keeps a well-formed id the client sent (unless
//!   `trust_incoming: false`), or makes a random UUID (version 4), and sets it on the
//!   request header the upstream sees.
//! - It asks the proxy to put the same header on the response, whatever answers (the
//!   upstream, another filter, or the proxy on a failure), so the client can quote it
//!   when something goes wrong. That takes no response phase: one call per request.
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
use weft_sdk::metrics::{self, Counter};
use weft_sdk::{random, Action, Filter, InitContext, Reads, Request};

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
        Config {
            header: "x-request-id".to_owned(),
            trust_incoming: true,
            echo: true,
        }
    }
}

/// Gives every request an id.
pub struct RequestId {
    header: String,
    trust_incoming: bool,
    echo: bool,
    generated: Counter,
    incoming: Counter,
}

/// An id from a client is kept only if it is short and plain.
fn well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A random (version 4) UUID in its usual text form. Written by hand rather than with
/// `format!` or 128-bit arithmetic: both are slow in wasm, and this runs per request.
fn uuid_v4() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each of the 32 hex digits goes in `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    const AT: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28,
        29, 30, 31, 32, 33, 34, 35,
    ];
    let hi = (random::u64() & !0xf000) | 0x4000;
    let lo = (random::u64() & !(0b11 << 62)) | (0b10 << 62);
    let mut out = [b'-'; 36];
    for i in 0..16 {
        out[AT[i] as usize] = HEX[((hi >> (60 - 4 * i)) & 0xf) as usize];
        out[AT[16 + i] as usize] = HEX[((lo >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits and dashes only.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[weft_sdk::filter]
impl Filter for RequestId {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        if !well_formed(&config.header) {
            return Err(format!(
                "header: {:?} is not a valid header name",
                config.header
            ));
        }
        metrics::describe(
            "request_ids_total",
            "Request ids by source: generated or incoming.",
            None,
        );
        Ok(RequestId {
            header: config.header.to_ascii_lowercase(),
            trust_incoming: config.trust_incoming,
            echo: config.echo,
            // Resolved once: counting on the request path is then one cheap call.
            generated: Counter::new("request_ids_total", &[("source", "generated")]),
            incoming: Counter::new("request_ids_total", &[("source", "incoming")]),
        })
    }

    /// The id header comes with every call: reading it costs no call into the proxy.
    fn reads(&self) -> Reads {
        Reads::new().request_header(&self.header)
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        let incoming = req
            .header(&self.header)
            .filter(|id| self.trust_incoming && well_formed(id));
        let id = match incoming {
            // Already on the request as the upstream will see it.
            Some(id) => {
                self.incoming.inc();
                id
            }
            None => {
                let id = uuid_v4();
                if let Err(e) = req.set_header(&self.header, &id) {
                    // Cannot happen with a checked name and a generated id; say so if it does.
                    weft_sdk::log::warn(&format!("could not set {}: {e}", self.header));
                }
                self.generated.inc();
                id
            }
        };
        if self.echo {
            req.add_response_header(&self.header, &id).ok();
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest};

    /// Runs the filter on a request; returns it and the id the client's response gets.
    fn exchange(h: &Harness<RequestId>, mut req: TestRequest) -> (TestRequest, Option<String>) {
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        assert!(
            !h.phases().response_headers,
            "echoing takes no response phase"
        );
        let echoed = req
            .response_header_now(&h.filter().header)
            .map(str::to_owned);
        (req, echoed)
    }

    #[test]
    fn generates_a_uuid_and_echoes_it() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (req, echoed) = exchange(&h, TestRequest::get("/"));
        let id = req.header_now("x-request-id").expect("id set upstream");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "version 4 UUID: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "RFC 4122 variant: {id}"
        );
        assert_eq!(id.matches('-').count(), 4);
        for at in [8, 13, 18, 23] {
            assert_eq!(&id[at..at + 1], "-", "8-4-4-4-12 groups: {id}");
        }
        assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
        assert_eq!(echoed, Some(id));
        assert_eq!(
            h.host()
                .metric("request_ids_total", &[("source", "generated")]),
            1.0
        );
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
        let (_, echoed) = exchange(&h, TestRequest::get("/").header("X-Request-Id", "abc-123"));
        assert_eq!(echoed.as_deref(), Some("abc-123"));
        assert_eq!(
            h.host()
                .metric("request_ids_total", &[("source", "incoming")]),
            1.0
        );

        let h = Harness::<RequestId>::new(r#"{"trust_incoming": false}"#).unwrap();
        let (_, echoed) = exchange(&h, TestRequest::get("/").header("x-request-id", "abc-123"));
        assert_ne!(echoed.as_deref(), Some("abc-123"));
    }

    #[test]
    fn replaces_a_malformed_incoming_id() {
        let h = Harness::<RequestId>::new("null").unwrap();
        let (req, _) = exchange(
            &h,
            TestRequest::get("/").header("x-request-id", "no spaces allowed"),
        );
        assert_eq!(req.header_now("x-request-id").unwrap().len(), 36);
    }

    #[test]
    fn custom_header_and_no_echo() {
        let h = Harness::<RequestId>::new(r#"{"header": "X-Trace", "echo": false}"#).unwrap();
        let (req, echoed) = exchange(&h, TestRequest::get("/"));
        assert!(req.header_now("x-trace").is_some());
        assert_eq!(echoed, None);
    }

    #[test]
    fn bad_config_is_refused_with_the_field() {
        let err = Harness::<RequestId>::new(r#"{"header": "bad header"}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("header:"), "{err}");
        let err = Harness::<RequestId>::new(r#"{"hedaer": "x"}"#)
            .err()
            .unwrap();
        assert!(err.contains("unknown field `hedaer`"), "{err}");
    }
}
