//! The control plane: bundles and the rules that assign them to proxies, served to
//! every proxy over one long-lived HTTP/2 stream each.
//!
//! The stream follows xDS's aggregated discovery service: a proxy opens
//! `POST /weft.control.v1.Control/Stream` (gRPC framing, JSON messages), says who it is
//! ([`Hello`]: name, labels, service, the version it runs), and the control plane
//! pushes the bundle assigned to it ([`Push`]) now and whenever the assignment
//! changes. The proxy answers each push with an ACK, or a NACK with the reason
//! ([`Reply`]); the control plane records both and shows them in `GET /v1/status`.
//! Blobs (modules, files) are fetched by digest with `GET /v1/blobs/<sha256>`, and only
//! those a proxy does not already have.

pub mod agent;
pub mod client;
pub mod etcd;
pub mod grpc;
pub mod rules;
pub mod service;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::Signature;

/// The path of the stream.
pub const STREAM_PATH: &str = "/weft.control.v1.Control/Stream";

/// A proxy's first message on its stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Hello {
    /// Its name, unique among proxies.
    pub name: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The service it fronts.
    #[serde(default)]
    pub service: Option<String>,
    /// The bundle version it runs, if any.
    #[serde(default)]
    pub version: Option<String>,
}

/// A bundle assigned to a proxy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Push {
    /// The bundle's version (the sha256 of its manifest).
    pub version: String,
    /// Numbers pushes on a stream; replies name the push they answer.
    pub nonce: u64,
    /// The manifest, exactly as signed.
    pub manifest: String,
    /// Its signature, if it was signed.
    pub signature: Option<Signature>,
}

/// A proxy's answer to a push.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    /// The push answered.
    pub nonce: u64,
    /// Its version.
    pub version: String,
    /// `None`: applied (ACK). `Some`: refused, and why (NACK).
    #[serde(default)]
    pub error: Option<String>,
}

/// The version of the bundle this proxy runs from the control plane, for the admin
/// endpoint (none until one is applied or found on disk).
pub fn bundle_version() -> Option<String> {
    BUNDLE.lock().clone()
}

static BUNDLE: parking_lot::Mutex<Option<String>> = parking_lot::Mutex::new(None);

fn set_bundle_version(version: &str) {
    *BUNDLE.lock() = Some(version.to_owned());
}
