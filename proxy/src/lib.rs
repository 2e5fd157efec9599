//! weft: a programmable proxy for service meshes.

pub mod body;
pub mod config;
pub mod error;
pub mod exchange;
pub mod host;
pub mod metrics;
pub mod build;
pub mod cli;
pub mod upstream;
pub mod snapshot;
pub mod server;
pub mod admin;
pub mod app;
