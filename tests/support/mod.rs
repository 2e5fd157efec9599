//! Shared by the end-to-end tests: building the test filters once, starting real
//! upstream servers and the real `weft` binary on ephemeral loopback ports.
#![allow(dead_code)]

pub mod filters;
