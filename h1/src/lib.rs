//! weft's HTTP/1.1 wire format, apart from any socket: request heads as a server
//! reads them ([`request`]), response heads as a client reads them ([`response`]),
//! how a body is framed and decoded ([`body`], [`wire`]).
//!
//! A crate of its own so that its tests and fuzz targets build without the proxy (and
//! without wasmtime). Everything here works on byte buffers; reading and writing
//! sockets is the proxy's.

pub mod body;
pub mod request;
pub mod response;
pub mod wire;

pub use body::{BodyDecoder, BodyError, Decoded};
pub use wire::{Framing, RawHeaders, MAX_HEAD, READ_CHUNK};
