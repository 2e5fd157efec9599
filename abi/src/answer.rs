//! Answers: what a phase call hands back, as a sequence of tagged items.
//!
//! | tag | item | payload |
//! |---|---|---|
//! | `0x01` | respond | `u16` status, `u32` header count, that many (name, value) byte strings, body byte string |
//! | `0x02` | delay | `u64` nanoseconds |
//! | `0x03` | route to | cluster byte string (UTF-8) |
//! | `0x04` | retry | `u64` nanoseconds of backoff |
//! | `0x05` | replace (body phases) | byte string |
//! | `0x10` / `0x11` / `0x12` | set / append / remove a request header | name, value (remove: name) |
//! | `0x13` / `0x14` / `0x15` | set / append / remove a response header | as above |
//! | `0x16` | add a header to the client's response | name, value |
//! | `0x17` | set the response status | `u16` |
//! | `0x18` / `0x19` | set the path / the authority | byte string (UTF-8) |
//! | `0x1a` | set a request property | key, value (UTF-8) |
//! | `0x1b` | set the load-balancing hash key | byte string |
//! | `0x1c` | add a trace-span attribute | key, value (UTF-8) |
//! | `0x1d` / `0x1e` | set the request / per-attempt timeout | `u64` nanoseconds |
//! | `0x1f` | set the replay limit | `u64` bytes |
//! | `0x30` / `0x31` / `0x32` / `0x33` | counter add / gauge set / gauge add / histogram record | `u32` series, then `u64` (counter) or `f64` bits |
//!
//! Edits apply in order; at most one decision item (`0x01`-`0x05`) may appear, and
//! without one the decision is "continue". The empty buffer is "continue, nothing
//! changed".

use alloc::vec::Vec;

use super::{put_bytes, Cursor};

const RESPOND: u8 = 0x01;
const DELAY: u8 = 0x02;
const ROUTE_TO: u8 = 0x03;
const RETRY: u8 = 0x04;
const REPLACE: u8 = 0x05;
const SET_REQUEST_HEADER: u8 = 0x10;
const APPEND_REQUEST_HEADER: u8 = 0x11;
const REMOVE_REQUEST_HEADER: u8 = 0x12;
const SET_RESPONSE_HEADER: u8 = 0x13;
const APPEND_RESPONSE_HEADER: u8 = 0x14;
const REMOVE_RESPONSE_HEADER: u8 = 0x15;
const ADD_CLIENT_RESPONSE_HEADER: u8 = 0x16;
const SET_STATUS: u8 = 0x17;
const SET_PATH: u8 = 0x18;
const SET_AUTHORITY: u8 = 0x19;
const SET_PROPERTY: u8 = 0x1a;
const SET_HASH_KEY: u8 = 0x1b;
const SPAN_ATTRIBUTE: u8 = 0x1c;
const SET_TIMEOUT: u8 = 0x1d;
const SET_TRY_TIMEOUT: u8 = 0x1e;
const SET_REPLAY_LIMIT: u8 = 0x1f;
const COUNTER_ADD: u8 = 0x30;
const GAUGE_SET: u8 = 0x31;
const GAUGE_ADD: u8 = 0x32;
const HISTOGRAM_RECORD: u8 = 0x33;

/// A change to the exchange, borrowed from an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Edit<'a> {
    /// Sets a request header, replacing all its values.
    SetRequestHeader(&'a [u8], &'a [u8]),
    /// Adds a value to a request header.
    AppendRequestHeader(&'a [u8], &'a [u8]),
    /// Removes a request header.
    RemoveRequestHeader(&'a [u8]),
    /// Sets a response header.
    SetResponseHeader(&'a [u8], &'a [u8]),
    /// Adds a value to a response header.
    AppendResponseHeader(&'a [u8], &'a [u8]),
    /// Removes a response header.
    RemoveResponseHeader(&'a [u8]),
    /// Adds a header to the response the client receives, whatever answers.
    AddClientResponseHeader(&'a [u8], &'a [u8]),
    /// Replaces the response's status.
    SetStatus(u16),
    /// Replaces the path (and query) sent upstream.
    SetPath(&'a str),
    /// Replaces the authority sent upstream.
    SetAuthority(&'a str),
    /// Sets a request property.
    SetProperty(&'a str, &'a str),
    /// The key a consistent-hash load balancer uses for this request.
    SetHashKey(&'a [u8]),
    /// An attribute on the request's trace span.
    SpanAttribute(&'a str, &'a str),
    /// Overrides the route's timeout (nanoseconds).
    SetTimeout(u64),
    /// A timeout for each attempt (nanoseconds).
    SetTryTimeout(u64),
    /// Keeps this many bytes of the request body for replay.
    SetReplayLimit(u64),
}

/// A metric update, by series handle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Adds to a counter.
    CounterAdd(u32, u64),
    /// Sets a gauge.
    GaugeSet(u32, f64),
    /// Adds to a gauge.
    GaugeAdd(u32, f64),
    /// Records one observation in a histogram.
    HistogramRecord(u32, f64),
}

/// A local response, borrowed from an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Respond<'a> {
    /// The status.
    pub status: u16,
    /// The headers, encoded: iterate with [`Respond::headers`].
    headers: &'a [u8],
    count: u32,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Respond<'a> {
    /// The headers, in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut c = Cursor { buf: self.headers };
        (0..self.count).map_while(move |_| Some((c.bytes()?, c.bytes()?)))
    }
}

/// A decision and what came with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    /// Answer with this response.
    Respond(Respond<'a>),
    /// Wait this many nanoseconds, then go on.
    Delay(u64),
    /// Send the request to this cluster.
    RouteTo(&'a str),
    /// Send the request again after this many nanoseconds.
    Retry(u64),
    /// Pass these bytes on instead of the body chunk.
    Replace(&'a [u8]),
    /// A change to the exchange.
    Edit(Edit<'a>),
    /// A metric update.
    Metric(Metric),
}

/// Why an answer could not be read: where (the byte offset) it stopped making sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub usize);

impl core::fmt::Display for Malformed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a malformed answer buffer (at byte {})", self.0)
    }
}

/// Reads an answer's items in order; a malformed buffer yields one error and stops.
pub fn items(buf: &[u8]) -> Items<'_> {
    Items {
        c: Cursor { buf },
        len: buf.len(),
        failed: false,
    }
}

/// The iterator [`items`] returns.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    c: Cursor<'a>,
    len: usize,
    failed: bool,
}

impl<'a> Items<'a> {
    fn next_item(&mut self) -> Option<Item<'a>> {
        let c = &mut self.c;
        let tag = c.u8()?;
        Some(match tag {
            RESPOND => {
                let status = c.u16()?;
                let count = c.u32()?;
                let start = c.buf;
                for _ in 0..count {
                    c.bytes()?;
                    c.bytes()?;
                }
                let headers = &start[..start.len() - c.buf.len()];
                let body = c.bytes()?;
                Item::Respond(Respond {
                    status,
                    headers,
                    count,
                    body,
                })
            }
            DELAY => Item::Delay(c.u64()?),
            ROUTE_TO => Item::RouteTo(c.str()?),
            RETRY => Item::Retry(c.u64()?),
            REPLACE => Item::Replace(c.bytes()?),
            SET_REQUEST_HEADER => Item::Edit(Edit::SetRequestHeader(c.bytes()?, c.bytes()?)),
            APPEND_REQUEST_HEADER => Item::Edit(Edit::AppendRequestHeader(c.bytes()?, c.bytes()?)),
            REMOVE_REQUEST_HEADER => Item::Edit(Edit::RemoveRequestHeader(c.bytes()?)),
            SET_RESPONSE_HEADER => Item::Edit(Edit::SetResponseHeader(c.bytes()?, c.bytes()?)),
            APPEND_RESPONSE_HEADER => {
                Item::Edit(Edit::AppendResponseHeader(c.bytes()?, c.bytes()?))
            }
            REMOVE_RESPONSE_HEADER => Item::Edit(Edit::RemoveResponseHeader(c.bytes()?)),
            ADD_CLIENT_RESPONSE_HEADER => {
                Item::Edit(Edit::AddClientResponseHeader(c.bytes()?, c.bytes()?))
            }
            SET_STATUS => Item::Edit(Edit::SetStatus(c.u16()?)),
            SET_PATH => Item::Edit(Edit::SetPath(c.str()?)),
            SET_AUTHORITY => Item::Edit(Edit::SetAuthority(c.str()?)),
            SET_PROPERTY => Item::Edit(Edit::SetProperty(c.str()?, c.str()?)),
            SET_HASH_KEY => Item::Edit(Edit::SetHashKey(c.bytes()?)),
            SPAN_ATTRIBUTE => Item::Edit(Edit::SpanAttribute(c.str()?, c.str()?)),
            SET_TIMEOUT => Item::Edit(Edit::SetTimeout(c.u64()?)),
            SET_TRY_TIMEOUT => Item::Edit(Edit::SetTryTimeout(c.u64()?)),
            SET_REPLAY_LIMIT => Item::Edit(Edit::SetReplayLimit(c.u64()?)),
            COUNTER_ADD => Item::Metric(Metric::CounterAdd(c.u32()?, c.u64()?)),
            GAUGE_SET => Item::Metric(Metric::GaugeSet(c.u32()?, f64::from_bits(c.u64()?))),
            GAUGE_ADD => Item::Metric(Metric::GaugeAdd(c.u32()?, f64::from_bits(c.u64()?))),
            HISTOGRAM_RECORD => {
                Item::Metric(Metric::HistogramRecord(c.u32()?, f64::from_bits(c.u64()?)))
            }
            _ => return None,
        })
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Item<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.c.buf.is_empty() {
            return None;
        }
        let at = self.len - self.c.buf.len();
        match self.next_item() {
            Some(item) => Some(Ok(item)),
            None => {
                self.failed = true;
                Some(Err(Malformed(at)))
            }
        }
    }
}

/// Writes an answer. Starts empty ("continue, nothing changed") and allocates on the
/// first item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty answer.
    pub const fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded answer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The encoded answer so far (to read back the edits made).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn tag(&mut self, tag: u8) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            // Most answers fit: one allocation instead of a few reallocations.
            self.buf.reserve(128);
        }
        self.buf.push(tag);
        &mut self.buf
    }

    /// A local response.
    pub fn respond<'h>(
        &mut self,
        status: u16,
        headers: impl ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
        body: &[u8],
    ) {
        let b = self.tag(RESPOND);
        b.extend_from_slice(&status.to_le_bytes());
        b.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (n, v) in headers {
            put_bytes(b, n);
            put_bytes(b, v);
        }
        put_bytes(b, body);
    }

    /// Wait, then go on.
    pub fn delay(&mut self, nanos: u64) {
        self.tag(DELAY).extend_from_slice(&nanos.to_le_bytes());
    }

    /// Route to a cluster.
    pub fn route_to(&mut self, cluster: &str) {
        let b = self.tag(ROUTE_TO);
        put_bytes(b, cluster.as_bytes());
    }

    /// Retry after a backoff.
    pub fn retry(&mut self, nanos: u64) {
        self.tag(RETRY).extend_from_slice(&nanos.to_le_bytes());
    }

    /// Replace a body chunk.
    pub fn replace(&mut self, bytes: &[u8]) {
        let b = self.tag(REPLACE);
        put_bytes(b, bytes);
    }

    /// An edit.
    pub fn edit(&mut self, edit: Edit<'_>) {
        match edit {
            Edit::SetRequestHeader(n, v) => self.pair(SET_REQUEST_HEADER, n, v),
            Edit::AppendRequestHeader(n, v) => self.pair(APPEND_REQUEST_HEADER, n, v),
            Edit::RemoveRequestHeader(n) => self.one(REMOVE_REQUEST_HEADER, n),
            Edit::SetResponseHeader(n, v) => self.pair(SET_RESPONSE_HEADER, n, v),
            Edit::AppendResponseHeader(n, v) => self.pair(APPEND_RESPONSE_HEADER, n, v),
            Edit::RemoveResponseHeader(n) => self.one(REMOVE_RESPONSE_HEADER, n),
            Edit::AddClientResponseHeader(n, v) => self.pair(ADD_CLIENT_RESPONSE_HEADER, n, v),
            Edit::SetStatus(s) => self.tag(SET_STATUS).extend_from_slice(&s.to_le_bytes()),
            Edit::SetPath(p) => self.one(SET_PATH, p.as_bytes()),
            Edit::SetAuthority(a) => self.one(SET_AUTHORITY, a.as_bytes()),
            Edit::SetProperty(k, v) => self.pair(SET_PROPERTY, k.as_bytes(), v.as_bytes()),
            Edit::SetHashKey(k) => self.one(SET_HASH_KEY, k),
            Edit::SpanAttribute(k, v) => self.pair(SPAN_ATTRIBUTE, k.as_bytes(), v.as_bytes()),
            Edit::SetTimeout(ns) => self.tag(SET_TIMEOUT).extend_from_slice(&ns.to_le_bytes()),
            Edit::SetTryTimeout(ns) => self
                .tag(SET_TRY_TIMEOUT)
                .extend_from_slice(&ns.to_le_bytes()),
            Edit::SetReplayLimit(n) => self
                .tag(SET_REPLAY_LIMIT)
                .extend_from_slice(&n.to_le_bytes()),
        }
    }

    /// A metric update.
    pub fn metric(&mut self, m: Metric) {
        let (tag, series, bits) = match m {
            Metric::CounterAdd(s, v) => (COUNTER_ADD, s, v),
            Metric::GaugeSet(s, v) => (GAUGE_SET, s, v.to_bits()),
            Metric::GaugeAdd(s, v) => (GAUGE_ADD, s, v.to_bits()),
            Metric::HistogramRecord(s, v) => (HISTOGRAM_RECORD, s, v.to_bits()),
        };
        let b = self.tag(tag);
        b.extend_from_slice(&series.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
    }

    fn one(&mut self, tag: u8, a: &[u8]) {
        let b = self.tag(tag);
        put_bytes(b, a);
    }

    fn pair(&mut self, tag: u8, a: &[u8], v: &[u8]) {
        let b = self.tag(tag);
        put_bytes(b, a);
        put_bytes(b, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn every_item_reads_back_as_written() {
        let edits = [
            Edit::SetRequestHeader(b"x-a", b"1"),
            Edit::AppendRequestHeader(b"x-a", b"2"),
            Edit::RemoveRequestHeader(b"x-b"),
            Edit::SetResponseHeader(b"x-r", b"r"),
            Edit::AppendResponseHeader(b"x-r", b"s"),
            Edit::RemoveResponseHeader(b"x-q"),
            Edit::AddClientResponseHeader(b"x-id", b"7"),
            Edit::SetStatus(418),
            Edit::SetPath("/v2?x=1"),
            Edit::SetAuthority("api:8080"),
            Edit::SetProperty("jwt.sub", "alice"),
            Edit::SetHashKey(b"alice"),
            Edit::SpanAttribute("tenant", "a"),
            Edit::SetTimeout(1),
            Edit::SetTryTimeout(2),
            Edit::SetReplayLimit(3),
        ];
        let metrics = [
            Metric::CounterAdd(1, 2),
            Metric::GaugeSet(2, 1.5),
            Metric::GaugeAdd(3, -0.5),
            Metric::HistogramRecord(4, 0.25),
        ];
        let mut w = Writer::new();
        for e in edits {
            w.edit(e);
        }
        for m in metrics {
            w.metric(m);
        }
        let headers: [(&[u8], &[u8]); 2] = [(b"content-type", b"text/plain"), (b"x-b", b"")];
        w.respond(403, headers.into_iter(), b"no");
        w.delay(9);
        w.route_to("canary");
        w.retry(10);
        w.replace(b"new");
        let buf = w.into_bytes();
        let got: Vec<Item<'_>> = items(&buf).map(Result::unwrap).collect();
        let mut want: Vec<Item<'_>> = edits.iter().map(|e| Item::Edit(*e)).collect();
        want.extend(metrics.iter().map(|m| Item::Metric(*m)));
        assert_eq!(&got[..want.len()], &want[..]);
        let Item::Respond(r) = &got[want.len()] else {
            panic!("{:?}", got[want.len()])
        };
        assert_eq!(r.status, 403);
        assert_eq!(r.body, b"no");
        assert_eq!(r.headers().collect::<Vec<_>>(), headers.to_vec());
        assert_eq!(
            &got[want.len() + 1..],
            &[
                Item::Delay(9),
                Item::RouteTo("canary"),
                Item::Retry(10),
                Item::Replace(b"new")
            ]
        );
    }

    #[test]
    fn nothing_is_continue_and_garbage_is_refused_where_it_starts() {
        assert_eq!(items(&[]).count(), 0);
        let mut w = Writer::new();
        w.edit(Edit::SetStatus(200));
        let mut buf = w.into_bytes();
        buf.push(0x7f);
        let got: Vec<_> = items(&buf).collect();
        assert_eq!(
            got,
            vec![Ok(Item::Edit(Edit::SetStatus(200))), Err(Malformed(3))]
        );
        // Lengths past the end, a bad UTF-8 path, a short number.
        for bad in [
            &[0x10, 9, 0, 0, 0, b'x'][..],
            &[0x18, 1, 0, 0, 0, 0xff],
            &[0x1d, 1, 2],
        ] {
            assert_eq!(
                items(bad).collect::<Vec<_>>(),
                vec![Err(Malformed(0))],
                "{bad:?}"
            );
        }
    }
}
