//! weft: a programmable proxy for service meshes.

pub mod body;
pub mod config;
pub mod error;
pub mod exchange;
pub mod host;
pub mod metrics;
pub mod build;
pub mod cli;
