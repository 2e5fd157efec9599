//! The host side of each `weft:filter` import, one file per interface, all implemented
//! on [`HostState`](super::state::HostState).

mod clock;
mod global_kv;
pub mod header_text;
mod http_client;
mod log;
mod metrics;
mod random;
mod shared_state;
mod types;

pub(crate) use types::address_v4;
