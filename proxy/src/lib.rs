//! weft: a programmable proxy for service meshes.

pub mod admin;
pub mod app;
pub mod body;
pub mod build;
pub mod bundle;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod error;
pub mod exchange;
mod h1wire;
pub mod host;
pub mod metrics;
pub mod reload;
pub mod rt;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod upgrade;
pub mod upstream;
