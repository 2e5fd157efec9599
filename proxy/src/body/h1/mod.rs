//! Bodies read straight off HTTP/1.1 connections: the client's request body on a
//! connection weft serves, and an upstream's response body on a pooled connection.
//! Both decode with `weft_h1`'s one decoder.

mod client;
mod upstream;

pub use client::{ClientBody, ContinueRelay, Handoff, CONTINUE};
pub use upstream::UpstreamBody;
