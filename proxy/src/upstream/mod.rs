//! Upstreams: clusters of endpoints, the connections to them, and sending one attempt.

pub mod balance;
pub mod breaker;
pub mod cluster;
pub mod connect;
pub mod h1;
pub mod health;
pub mod outlier;
pub mod pool;
mod secure;
pub mod send;

pub use cluster::{Canned, CannedScript, Cluster, Clusters, ECHO_CLUSTER};
pub use send::{send, AttemptError, RequestHead, UpstreamResponse};
