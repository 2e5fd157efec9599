//! A phase call's answer (contract 0.3: its decision, its changes to the exchange and
//! its metric updates in one buffer, `weft_abi::answer`), checked as a whole and then
//! applied: metric updates to the filter's series, edits to the lent heads, and the
//! decision handed to the exchange. A refused item (a header the proxy manages, an
//! invalid name or value, a change the phase does not allow, a malformed buffer) fails
//! the call with `invalid_action`, and nothing of the answer applies.

use smallvec::SmallVec;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::StatusCode;
use weft_abi::answer::{self, Edit, Item, Metric};

use super::action::LocalResponse;
use super::call::{RequestCtx, ResponseCtx};
use super::failure::FilterFailure;
use super::imports::header_text::{value_from_slice, NameCache};

/// Most headers the chain may add to the client's response, and most request
/// properties: bounds on what a filter can make the proxy hold per request.
const MAX_CLIENT_HEADERS: usize = 64;
const MAX_PROPERTIES: usize = 256;
/// Longest hash key, property key or value, span attribute.
const MAX_TEXT: usize = 4096;

/// Which phase the edits come from, for what they may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EditPhase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
}

/// An edit, checked: names parsed, values validated.
enum Checked {
    SetRequestHeader(HeaderName, HeaderValue),
    AppendRequestHeader(HeaderName, HeaderValue),
    RemoveRequestHeader(HeaderName),
    SetResponseHeader(HeaderName, HeaderValue),
    AppendResponseHeader(HeaderName, HeaderValue),
    RemoveResponseHeader(HeaderName),
    AddClientResponseHeader(HeaderName, HeaderValue),
    SetStatus(StatusCode),
    SetPath(PathAndQuery),
    SetAuthority(String),
    SetProperty(String, String),
    SetHashKey(Vec<u8>),
    SpanAttribute(String, String),
    SetTimeout(Duration),
    SetTryTimeout(Duration),
    SetReplayLimit(u64),
}

fn refuse(what: impl Into<String>) -> FilterFailure {
    FilterFailure::InvalidAction(what.into())
}

fn valid_authority(a: &str) -> Result<(), FilterFailure> {
    use std::str::FromStr;
    match http::uri::Authority::from_str(a) {
        Ok(parsed) if !a.is_empty() && !a.contains('@') && parsed.as_str() == a => Ok(()),
        _ => Err(refuse(format!("invalid authority {a:?}"))),
    }
}

fn valid_path(path: String) -> Result<PathAndQuery, FilterFailure> {
    match PathAndQuery::from_maybe_shared(bytes::Bytes::from(path.clone())) {
        Ok(p) if path.starts_with('/') && p.as_str() == path => Ok(p),
        _ => Err(refuse(format!(
            "invalid path {path:?}: it must start with / and hold no spaces"
        ))),
    }
}

fn short(text: &str, what: &str) -> Result<(), FilterFailure> {
    if text.len() > MAX_TEXT {
        return Err(refuse(format!("{what} longer than {MAX_TEXT} bytes")));
    }
    Ok(())
}

/// A decision, as the exchange follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Go on (no decision item).
    Continue,
    /// Answer with this response.
    Respond(LocalResponse),
    /// Wait, then go on.
    Delay(Duration),
    /// Send the request to this cluster.
    RouteTo(String),
    /// Send the request again after this backoff.
    Retry(Duration),
    /// Pass these bytes on instead of the body chunk.
    Replace(Vec<u8>),
}

fn header_name(names: &mut NameCache, name: &[u8]) -> Result<HeaderName, FilterFailure> {
    let text = std::str::from_utf8(name).map_err(|_| {
        refuse(format!(
            "invalid header name {:?}",
            String::from_utf8_lossy(name)
        ))
    })?;
    names.for_change(text).map_err(refuse)
}

fn text(b: &str) -> String {
    b.to_owned()
}

/// Checks every item of an answer against `phase`; `Err` refuses them all.
/// The checked items of one answer: a few, kept on the stack.
type CheckedItems = (SmallVec<[Checked; 8]>, SmallVec<[Metric; 8]>, Decision);

fn check(
    buf: &[u8],
    phase: EditPhase,
    names: &mut NameCache,
) -> Result<CheckedItems, FilterFailure> {
    let response_phase = matches!(phase, EditPhase::ResponseHeaders | EditPhase::ResponseBody);
    let headers_phase = matches!(
        phase,
        EditPhase::RequestHeaders | EditPhase::ResponseHeaders
    );
    let head_left = phase == EditPhase::ResponseBody;
    let mut edits = SmallVec::new();
    let mut metrics = SmallVec::new();
    let mut decision = None;
    for item in answer::items(buf) {
        let item = item.map_err(|e| refuse(e.to_string()))?;
        let e = match item {
            Item::Metric(m) => {
                metrics.push(m);
                continue;
            }
            Item::Edit(e) => e,
            decided => {
                if decision.is_some() {
                    return Err(refuse("more than one decision in an answer"));
                }
                decision = Some(match decided {
                    Item::Respond(r) if phase != EditPhase::Log => {
                        Decision::Respond(LocalResponse {
                            status: r.status,
                            headers: r
                                .headers()
                                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                                .collect(),
                            body: r.body.to_vec(),
                        })
                    }
                    Item::Delay(ns) if headers_phase => Decision::Delay(Duration::from_nanos(ns)),
                    Item::RouteTo(c) if phase == EditPhase::RequestHeaders => {
                        Decision::RouteTo(c.to_owned())
                    }
                    Item::Retry(ns) if phase == EditPhase::ResponseHeaders => {
                        Decision::Retry(Duration::from_nanos(ns))
                    }
                    Item::Replace(b) if !headers_phase && phase != EditPhase::Log => {
                        Decision::Replace(b.to_vec())
                    }
                    other => {
                        return Err(refuse(format!(
                            "{} in the {phase:?} phase",
                            decision_name(&other)
                        )))
                    }
                });
                continue;
            }
        };
        if phase == EditPhase::Log {
            return Err(refuse("the log phase cannot change the exchange"));
        }
        let checked = match e {
            Edit::SetRequestHeader(n, v) => Checked::SetRequestHeader(
                header_name(names, n)?,
                value_from_slice(v).map_err(refuse)?,
            ),
            Edit::AppendRequestHeader(n, v) => Checked::AppendRequestHeader(
                header_name(names, n)?,
                value_from_slice(v).map_err(refuse)?,
            ),
            Edit::RemoveRequestHeader(n) => Checked::RemoveRequestHeader(header_name(names, n)?),
            Edit::SetResponseHeader(..)
            | Edit::AppendResponseHeader(..)
            | Edit::RemoveResponseHeader(..)
            | Edit::SetStatus(_)
                if !response_phase || head_left =>
            {
                return Err(refuse(if head_left {
                    "a response-head change after the head was sent"
                } else {
                    "a response-head change outside the response phases"
                }));
            }
            Edit::SetResponseHeader(n, v) => Checked::SetResponseHeader(
                header_name(names, n)?,
                value_from_slice(v).map_err(refuse)?,
            ),
            Edit::AppendResponseHeader(n, v) => Checked::AppendResponseHeader(
                header_name(names, n)?,
                value_from_slice(v).map_err(refuse)?,
            ),
            Edit::RemoveResponseHeader(n) => Checked::RemoveResponseHeader(header_name(names, n)?),
            Edit::SetStatus(s) => match StatusCode::from_u16(s) {
                Ok(s) => Checked::SetStatus(s),
                Err(_) => return Err(refuse(format!("invalid status {s}"))),
            },
            Edit::AddClientResponseHeader(n, v) => Checked::AddClientResponseHeader(
                header_name(names, n)?,
                value_from_slice(v).map_err(refuse)?,
            ),
            Edit::SetPath(p) => Checked::SetPath(valid_path(p.to_owned())?),
            Edit::SetAuthority(a) => {
                valid_authority(a)?;
                Checked::SetAuthority(a.to_owned())
            }
            Edit::SetProperty(k, v) => {
                short(k, "a property key")?;
                short(v, "a property value")?;
                Checked::SetProperty(text(k), text(v))
            }
            Edit::SetHashKey(k) => {
                if k.len() > MAX_TEXT {
                    return Err(refuse(format!("a hash key longer than {MAX_TEXT} bytes")));
                }
                Checked::SetHashKey(k.to_vec())
            }
            Edit::SpanAttribute(k, v) => {
                short(k, "a span attribute")?;
                short(v, "a span attribute")?;
                Checked::SpanAttribute(text(k), text(v))
            }
            Edit::SetTimeout(ns) => Checked::SetTimeout(Duration::from_nanos(ns)),
            Edit::SetTryTimeout(ns) => Checked::SetTryTimeout(Duration::from_nanos(ns)),
            Edit::SetReplayLimit(_) if phase != EditPhase::RequestHeaders => {
                return Err(refuse("a replay limit outside the request-headers phase"));
            }
            Edit::SetReplayLimit(n) => Checked::SetReplayLimit(n),
        };
        edits.push(checked);
    }
    Ok((edits, metrics, decision.unwrap_or(Decision::Continue)))
}

fn decision_name(item: &Item<'_>) -> &'static str {
    match item {
        Item::Respond(_) => "respond",
        Item::Delay(_) => "delay",
        Item::RouteTo(_) => "route-to",
        Item::Retry(_) => "retry",
        Item::Replace(_) => "replace",
        Item::Edit(_) | Item::Metric(_) => "an item",
    }
}

/// Checks a call's answer, then applies it: its metric updates (through `metric`) and
/// its edits in order; returns its decision. Nothing applies if an item is refused.
/// `response` is the lent response head in the response phases.
pub(crate) fn settle(
    buf: &[u8],
    phase: EditPhase,
    names: &mut NameCache,
    request: &mut RequestCtx,
    mut response: Option<&mut ResponseCtx>,
    mut metric: impl FnMut(Metric),
) -> Result<Decision, FilterFailure> {
    if buf.is_empty() {
        return Ok(Decision::Continue);
    }
    let (checked, metrics, decision) = check(buf, phase, names)?;
    // Bounds that depend on the request, checked before anything changes.
    let adds = checked
        .iter()
        .filter(|c| matches!(c, Checked::AddClientResponseHeader(..)))
        .count();
    if request.response_headers.len() + adds > MAX_CLIENT_HEADERS {
        return Err(refuse(format!(
            "more than {MAX_CLIENT_HEADERS} headers added to the client's response"
        )));
    }
    let props = checked
        .iter()
        .filter(|c| matches!(c, Checked::SetProperty(..)))
        .count();
    if request.properties.len() + props > MAX_PROPERTIES {
        return Err(refuse(format!(
            "more than {MAX_PROPERTIES} request properties"
        )));
    }
    for m in metrics {
        metric(m);
    }
    for c in checked {
        match c {
            Checked::SetRequestHeader(n, v) => {
                request.headers.insert(n, v);
            }
            Checked::AppendRequestHeader(n, v) => {
                request.headers.append(n, v);
            }
            Checked::RemoveRequestHeader(n) => {
                request.headers.remove(n);
            }
            Checked::SetResponseHeader(n, v) => {
                if let Some(r) = response.as_deref_mut() {
                    r.head.headers.insert(n, v);
                }
            }
            Checked::AppendResponseHeader(n, v) => {
                if let Some(r) = response.as_deref_mut() {
                    r.head.headers.append(n, v);
                }
            }
            Checked::RemoveResponseHeader(n) => {
                if let Some(r) = response.as_deref_mut() {
                    r.head.headers.remove(n);
                }
            }
            Checked::SetStatus(s) => {
                if let Some(r) = response.as_deref_mut() {
                    r.head.status = s;
                }
            }
            Checked::AddClientResponseHeader(n, v) => request.response_headers.push((n, v)),
            Checked::SetPath(p) => request.path = p,
            Checked::SetAuthority(a) => request.authority = a,
            Checked::SetProperty(k, v) => request.set_property(k, v),
            Checked::SetHashKey(k) => request.hash_key = Some(k),
            Checked::SpanAttribute(k, v) => request.span_attributes.push((k, v)),
            Checked::SetTimeout(d) => request.timeout = Some(d),
            Checked::SetTryTimeout(d) => request.try_timeout = Some(d),
            Checked::SetReplayLimit(n) => {
                request.replay_limit = Some(request.replay_limit.map_or(n, |l| l.max(n)));
            }
        }
    }
    Ok(decision)
}

/// The fuzz target's entry: settles `buf` as a filter's answer in the phase `phase`
/// picks, on a fresh request (and response). An answer is applied whole or not at all:
/// a refused one must leave the request untouched; a panic is a bug.
#[doc(hidden)]
pub fn fuzz(phase: u8, buf: &[u8]) {
    let phase = match phase % 5 {
        0 => EditPhase::RequestHeaders,
        1 => EditPhase::RequestBody,
        2 => EditPhase::ResponseHeaders,
        3 => EditPhase::ResponseBody,
        _ => EditPhase::Log,
    };
    let mut request = RequestCtx::default();
    let (head, ()) = http::Response::new(()).into_parts();
    let mut response = ResponseCtx {
        head,
        upstream_failure: None,
        upstream_addr: None,
    };
    let mut metrics = 0;
    let result = settle(
        buf,
        phase,
        &mut NameCache::default(),
        &mut request,
        Some(&mut response),
        |_| metrics += 1,
    );
    if result.is_err() {
        let fresh = RequestCtx::default();
        assert!(
            metrics == 0
                && request.headers.is_empty()
                && request.path == fresh.path
                && request.authority == fresh.authority
                && request.properties.is_empty()
                && request.response_headers.is_empty()
                && request.hash_key.is_none()
                && request.span_attributes.is_empty()
                && request.timeout.is_none()
                && response.head.headers.is_empty()
                && response.head.status == StatusCode::OK,
            "a refused answer changed the exchange"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_abi::answer::Writer;

    fn response() -> ResponseCtx {
        let (head, ()) = http::Response::new(()).into_parts();
        ResponseCtx {
            head,
            upstream_failure: None,
            upstream_addr: None,
        }
    }

    fn run(
        write: impl FnOnce(&mut Writer),
        phase: EditPhase,
        req: &mut RequestCtx,
        resp: Option<&mut ResponseCtx>,
    ) -> Result<Decision, FilterFailure> {
        let mut w = Writer::new();
        write(&mut w);
        settle(
            w.as_bytes(),
            phase,
            &mut NameCache::default(),
            req,
            resp,
            |_| {},
        )
    }

    #[test]
    fn edits_apply_in_order_and_the_decision_comes_back() {
        let mut req = RequestCtx::default();
        let decision = run(
            |w| {
                w.edit(Edit::SetRequestHeader(b"X-A", b"1"));
                w.edit(Edit::AppendRequestHeader(b"x-a", b"2"));
                w.edit(Edit::SetRequestHeader(b"x-b", b"b"));
                w.edit(Edit::RemoveRequestHeader(b"x-b"));
                w.edit(Edit::AddClientResponseHeader(b"x-id", b"7"));
                w.edit(Edit::SetPath("/v2/x?y=1"));
                w.edit(Edit::SetAuthority("api.internal:8080"));
                w.edit(Edit::SetProperty("jwt.sub", "alice"));
                w.edit(Edit::SetHashKey(b"alice"));
                w.edit(Edit::SetTimeout(2_000_000_000));
                w.edit(Edit::SetReplayLimit(10));
                w.edit(Edit::SetReplayLimit(5));
                w.route_to("canary");
            },
            EditPhase::RequestHeaders,
            &mut req,
            None,
        )
        .unwrap();
        assert_eq!(decision, Decision::RouteTo("canary".into()));
        let a: Vec<_> = req.headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert!(!req.headers.contains_key("x-b"));
        assert_eq!(req.response_headers[0].1, "7");
        assert_eq!(req.path, "/v2/x?y=1");
        assert_eq!(req.authority, "api.internal:8080");
        assert_eq!(req.property("jwt.sub"), Some("alice"));
        assert_eq!(req.hash_key.as_deref(), Some(&b"alice"[..]));
        assert_eq!(req.timeout, Some(Duration::from_secs(2)));
        assert_eq!(req.replay_limit, Some(10), "the largest limit asked for");
    }

    #[test]
    fn one_refused_item_refuses_the_whole_answer() {
        let bad: [fn(&mut Writer); 11] = [
            |w| w.edit(Edit::SetRequestHeader(b"Transfer-Encoding", b"chunked")),
            |w| w.edit(Edit::SetRequestHeader(b"content-length", b"1")),
            |w| w.edit(Edit::SetRequestHeader(b"host", b"elsewhere")),
            |w| w.edit(Edit::SetRequestHeader(b"bad name", b"x")),
            |w| w.edit(Edit::SetRequestHeader(b"x-ok", b"line\nbreak")),
            |w| w.edit(Edit::SetPath("no-slash")),
            |w| w.edit(Edit::SetAuthority("user@example.com")),
            |w| w.edit(Edit::SetStatus(200)),
            |w| w.retry(1),
            |w| {
                w.delay(1);
                w.delay(2);
            },
            |w| w.replace(b"x"),
        ];
        for (i, bad) in bad.into_iter().enumerate() {
            let mut req = RequestCtx::default();
            let mut counted = 0;
            let mut w = Writer::new();
            w.edit(Edit::SetRequestHeader(b"x-first", b"1"));
            w.metric(Metric::CounterAdd(1, 1));
            bad(&mut w);
            let err = settle(
                w.as_bytes(),
                EditPhase::RequestHeaders,
                &mut NameCache::default(),
                &mut req,
                None,
                |_| counted += 1,
            )
            .unwrap_err();
            assert_eq!(err.reason(), "invalid_action", "case {i}");
            assert!(req.headers.is_empty(), "nothing applied: {err}");
            assert_eq!(counted, 0, "no metric either");
        }
        // A buffer that is not an answer at all.
        let mut req = RequestCtx::default();
        assert!(settle(
            &[0x7f, 1, 2],
            EditPhase::RequestHeaders,
            &mut NameCache::default(),
            &mut req,
            None,
            |_| {}
        )
        .is_err());
    }

    #[test]
    fn phases_limit_what_changes() {
        let mut req = RequestCtx::default();
        let mut resp = response();
        let d = run(
            |w| {
                w.edit(Edit::SetStatus(418));
                w.edit(Edit::SetResponseHeader(b"x-r", b"1"));
                w.retry(5);
            },
            EditPhase::ResponseHeaders,
            &mut req,
            Some(&mut resp),
        )
        .unwrap();
        assert_eq!(d, Decision::Retry(Duration::from_nanos(5)));
        assert_eq!(resp.head.status, 418);
        assert_eq!(resp.head.headers["x-r"], "1");
        type Case = (fn(&mut Writer), EditPhase);
        let cases: [Case; 5] = [
            (|w| w.edit(Edit::SetStatus(500)), EditPhase::ResponseBody),
            (
                |w| w.edit(Edit::SetResponseHeader(b"x-r", b"2")),
                EditPhase::RequestHeaders,
            ),
            (
                |w| w.edit(Edit::SetReplayLimit(1)),
                EditPhase::ResponseHeaders,
            ),
            (
                |w| w.edit(Edit::SetRequestHeader(b"x-l", b"1")),
                EditPhase::Log,
            ),
            (|w| w.route_to("x"), EditPhase::ResponseHeaders),
        ];
        for (edit, phase) in cases {
            assert!(
                run(edit, phase, &mut req, Some(&mut resp)).is_err(),
                "{phase:?}"
            );
        }
        let d = run(
            |w| w.replace(b"new"),
            EditPhase::RequestBody,
            &mut req,
            None,
        )
        .unwrap();
        assert_eq!(d, Decision::Replace(b"new".to_vec()));
    }
}
