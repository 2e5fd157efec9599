//! The body type of every request and response the proxy handles: one enum, so the
//! common cases (passing a body through, answering with a short text) cost no
//! allocation and no dynamic dispatch.

mod channel;
pub mod h1;
mod observed;
mod progress;
mod replay;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pub use channel::{channel, sized_channel, BodySender, ChannelBody};
pub use observed::{BodyEnd, Observe, ObservedBody};
pub use progress::{BodyState, Progress, ProgressBody};
pub use replay::{ReplayBody, ReplaySource};

/// A body error of any origin.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
pub enum ProxyBody {
    /// No body.
    Empty,
    /// A body held whole.
    Full(Option<Bytes>),
    /// A body streaming from a peer (the client's request, the upstream's response).
    Incoming(Incoming),
    /// An upstream HTTP/1.1 response body, read from its connection, which goes back
    /// to the pool at the body's end.
    Upstream(h1::UpstreamBody),
    /// A request body read from a client's HTTP/1.1 connection served by weft.
    Client(h1::ClientBody),
    /// A body produced by a task (a filter processing chunks).
    Channel(ChannelBody),
    /// A request body that is recorded while it streams, so it can be sent again.
    Replay(ReplayBody),
    /// A body whose end is observed (bytes counted, the log phase run).
    Observed(Box<dyn Observe>),
    /// A request body whose progress the exchange watches.
    Progress(Box<ProgressBody>),
}

impl ProxyBody {
    /// A body held whole; empty bytes make an empty body.
    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        let b = bytes.into();
        if b.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(b))
        }
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ProxyBody::Empty => "empty",
            ProxyBody::Full(_) => "full",
            ProxyBody::Incoming(_) => "incoming",
            ProxyBody::Upstream(_) => "upstream-h1",
            ProxyBody::Client(_) => "client-h1",
            ProxyBody::Channel(_) => "channel",
            ProxyBody::Replay(_) => "replay",
            ProxyBody::Observed(_) => "observed",
            ProxyBody::Progress(_) => "progress",
        };
        write!(f, "ProxyBody({kind})")
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Client(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Channel(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Replay(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Observed(b) => Pin::new(b.as_mut()).poll_frame(cx),
            ProxyBody::Progress(b) => Pin::new(b.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Incoming(b) => b.is_end_stream(),
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Client(b) => b.is_end_stream(),
            ProxyBody::Channel(b) => b.is_end_stream(),
            ProxyBody::Replay(b) => b.is_end_stream(),
            ProxyBody::Observed(b) => b.is_end_stream(),
            ProxyBody::Progress(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Incoming(b) => b.size_hint(),
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Client(b) => b.size_hint(),
            ProxyBody::Channel(b) => b.size_hint(),
            ProxyBody::Replay(b) => b.size_hint(),
            ProxyBody::Observed(b) => b.size_hint(),
            ProxyBody::Progress(b) => b.size_hint(),
        }
    }
}
