//! Shared by the end-to-end tests: building the test filters once, starting real
//! upstream servers and the real `weft` binary on ephemeral loopback ports, and real
//! HTTP clients.

pub mod client;
pub mod filters;
pub mod proxy;
pub mod redis;
pub mod sick;
pub mod upstream;
