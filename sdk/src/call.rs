//! One phase call's state: what the proxy handed over with the call (a view), and the
//! answer the filter builds as it goes (its edits and metric updates, then its
//! decision), which goes back in one buffer (`weft_abi::answer`; contract 0.3: one
//! crossing per call, not one per read and write). Reads see the filter's own edits
//! made earlier in the same call. Shared by both backends, so a filter behaves the same
//! natively and in the proxy.

use std::cell::RefCell;

use weft_abi::answer::{self, Edit, Item, Writer};

use crate::{Error, UpstreamFailure};

thread_local! {
    /// The answer of the call in progress (a filter instance runs one call at a time).
    static ANSWER: RefCell<Writer> = const { RefCell::new(Writer::new()) };
    /// Whether a phase call is in progress (metric updates then go with its answer).
    static IN_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts a call's answer.
pub(crate) fn begin() {
    ANSWER.with(|a| *a.borrow_mut() = Writer::new());
    IN_CALL.with(|c| c.set(true));
}

/// The call's answer so far, leaving an empty one; the call is over.
pub(crate) fn take() -> Writer {
    IN_CALL.with(|c| c.set(false));
    ANSWER.with(|a| std::mem::take(&mut *a.borrow_mut()))
}

/// Whether a phase call is in progress.
#[cfg_attr(
    not(target_arch = "wasm32"),
    allow(dead_code, reason = "wasm backend only")
)]
pub(crate) fn in_call() -> bool {
    IN_CALL.with(std::cell::Cell::get)
}

/// Adds an item to the call's answer.
pub(crate) fn write(f: impl FnOnce(&mut Writer)) {
    ANSWER.with(|a| f(&mut a.borrow_mut()));
}

/// The call's edits so far, for reads that must see them.
fn edits<R>(f: impl FnOnce(&mut dyn Iterator<Item = Edit<'_>>) -> R) -> R {
    ANSWER.with(|a| {
        let a = a.borrow();
        let mut it = answer::items(a.as_bytes()).filter_map(|i| match i {
            Ok(Item::Edit(e)) => Some(e),
            _ => None,
        });
        f(&mut it)
    })
}

/// Whether the call changed anything yet (reads skip looking when not).
pub(crate) fn unchanged() -> bool {
    ANSWER.with(|a| a.borrow().is_empty())
}

/// Which phase a call is, for what it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
}

/// What a filter declared it reads ([`crate::Reads`]), kept for the filter's lifetime
/// to decode the views the proxy hands over.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    pub method: bool,
    pub path: bool,
    pub authority: bool,
    pub client_address: bool,
    pub attempt: bool,
    pub request_headers: Vec<String>,
    pub response_headers: Vec<String>,
}

/// Nothing declared (helpers that build a request outside a call).
pub(crate) static NOTHING: Declared = Declared {
    method: false,
    path: false,
    authority: false,
    client_address: false,
    attempt: false,
    request_headers: Vec::new(),
    response_headers: Vec::new(),
};

impl Declared {
    /// How many request parts come before the headers in a request view.
    fn parts(&self) -> usize {
        usize::from(self.method)
            + usize::from(self.path)
            + usize::from(self.authority)
            + usize::from(self.client_address)
            + usize::from(self.attempt)
    }

    /// The position of a header among a request view's items.
    fn request_header_slot(&self, name: &str) -> Option<usize> {
        let parts = self.parts();
        self.request_headers
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| parts + i)
    }
}

/// Marks an absent item in a view buffer.
const ABSENT: u32 = u32::MAX;

/// A view buffer as the proxy hands it over (`types.view`): each item a 4-byte
/// little-endian length and its bytes, `0xffffffff` for an absent item. Items are found
/// by walking the buffer when read (a filter declares a few), so taking a view costs
/// nothing beyond the buffer the call brought.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    buf: Option<Vec<u8>>,
}

impl View {
    /// A view of `buf` (`None`: nothing handed over).
    pub fn decode(buf: Option<Vec<u8>>) -> View {
        View { buf }
    }

    /// Encodes items as the proxy does (the native harness hands filters the same
    /// buffers). `None` for no items.
    #[cfg_attr(
        target_arch = "wasm32",
        allow(dead_code, reason = "native harness only")
    )]
    pub fn encode<'a>(items: impl IntoIterator<Item = Option<&'a [u8]>>) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut any = false;
        for item in items {
            any = true;
            match item {
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.extend_from_slice(&ABSENT.to_le_bytes()),
            }
        }
        any.then_some(out)
    }

    /// Item `i`: `None` when the view has no such item (nothing handed over, or a
    /// malformed buffer, which the proxy never sends: reads then ask the proxy),
    /// `Some(None)` when the item is absent from the message.
    pub fn item(&self, i: usize) -> Option<Option<&[u8]>> {
        let buf = self.buf.as_deref()?;
        let mut at = 0;
        let mut n = 0;
        loop {
            let len = buf.get(at..at + 4)?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            let item = if len == ABSENT {
                None
            } else {
                let end = at.checked_add(len as usize)?;
                let bytes = buf.get(at..end)?;
                at = end;
                Some(bytes)
            };
            if n == i {
                return Some(item);
            }
            n += 1;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the proxy handed over of the request.
#[derive(Debug)]
pub(crate) struct RequestView {
    pub view: View,
    pub declared: &'static Declared,
}

impl RequestView {
    /// A view of `buf` for a filter that declared `declared`.
    pub fn new(buf: Option<Vec<u8>>, declared: &'static Declared) -> Self {
        RequestView {
            view: View::decode(buf),
            declared,
        }
    }

    /// Nothing handed over.
    #[cfg_attr(
        target_arch = "wasm32",
        allow(dead_code, reason = "native harness only")
    )]
    pub fn empty() -> Self {
        RequestView {
            view: View::default(),
            declared: &NOTHING,
        }
    }

    fn part(&self, declared: bool, slot: usize) -> Option<String> {
        if !declared {
            return None;
        }
        self.view.item(slot)?.map(text)
    }

    /// The method, if declared.
    pub fn method(&self) -> Option<String> {
        self.part(self.declared.method, 0)
    }

    /// The path, if declared.
    pub fn path(&self) -> Option<String> {
        self.part(self.declared.path, usize::from(self.declared.method))
    }

    /// The authority, if declared.
    pub fn authority(&self) -> Option<String> {
        let slot = usize::from(self.declared.method) + usize::from(self.declared.path);
        self.part(self.declared.authority, slot)
    }

    /// The client's address, if declared.
    pub fn client_address(&self) -> Option<String> {
        let d = self.declared;
        let slot = usize::from(d.method) + usize::from(d.path) + usize::from(d.authority);
        self.part(d.client_address, slot)
    }

    /// The attempt number, if declared.
    pub fn attempt(&self) -> Option<u32> {
        let d = self.declared;
        if !d.attempt {
            return None;
        }
        let slot = usize::from(d.method)
            + usize::from(d.path)
            + usize::from(d.authority)
            + usize::from(d.client_address);
        let bytes: [u8; 4] = self.view.item(slot)??.try_into().ok()?;
        Some(u32::from_le_bytes(bytes))
    }

    /// A header's first value: `None` when not declared (ask the proxy), `Some(None)`
    /// when the request does not carry it.
    pub fn header(&self, name: &str) -> Option<Option<Vec<u8>>> {
        Some(self.header_ref(name)?.map(<[u8]>::to_vec))
    }

    /// [`RequestView::header`], borrowed.
    pub fn header_ref(&self, name: &str) -> Option<Option<&[u8]>> {
        let slot = self.declared.request_header_slot(name)?;
        self.view.item(slot)
    }
}

/// What the proxy handed over of the response.
#[derive(Debug)]
pub(crate) struct ResponseView {
    pub status: u16,
    pub failure: Option<UpstreamFailure>,
    pub view: View,
    pub declared: &'static Declared,
}

impl ResponseView {
    /// A view of a response head for a filter that declared `declared`.
    pub fn new(
        status: u16,
        failure: Option<UpstreamFailure>,
        buf: Option<Vec<u8>>,
        declared: &'static Declared,
    ) -> Self {
        ResponseView {
            status,
            failure,
            view: View::decode(buf),
            declared,
        }
    }

    /// A header's first value: `None` when not declared, `Some(None)` when absent.
    pub fn header(&self, name: &str) -> Option<Option<Vec<u8>>> {
        let slot = self
            .declared
            .response_headers
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))?;
        Some(self.view.item(slot)?.map(<[u8]>::to_vec))
    }
}

/// The request side of a call.
#[derive(Debug)]
pub(crate) struct RequestCall {
    pub phase: PhaseKind,
    pub view: RequestView,
}

/// The response side of a call (response phases only).
#[derive(Debug)]
pub(crate) struct ResponseCall {
    pub phase: PhaseKind,
    pub view: ResponseView,
}

/// How a call's own edits left a header, relative to what it was before the call.
enum Seen {
    /// Untouched: as before the call.
    Before,
    /// Replaced (set or removed): exactly these values.
    Values(Vec<Vec<u8>>),
    /// Kept, with these values appended.
    BeforeThen(Vec<Vec<u8>>),
}

/// What one edit does to the header `name` of one side (request or response).
enum Touch<'e> {
    Set(&'e [u8]),
    Append(&'e [u8]),
    Remove,
}

fn touch<'e>(e: &Edit<'e>, name: &str, request_side: bool) -> Option<Touch<'e>> {
    let is = |n: &[u8]| n.eq_ignore_ascii_case(name.as_bytes());
    Some(match (*e, request_side) {
        (Edit::SetRequestHeader(n, v), true) | (Edit::SetResponseHeader(n, v), false) if is(n) => {
            Touch::Set(v)
        }
        (Edit::AppendRequestHeader(n, v), true) | (Edit::AppendResponseHeader(n, v), false)
            if is(n) =>
        {
            Touch::Append(v)
        }
        (Edit::RemoveRequestHeader(n), true) | (Edit::RemoveResponseHeader(n), false) if is(n) => {
            Touch::Remove
        }
        _ => return None,
    })
}

/// Folds the call's edits touching `name` into [`Seen`].
fn seen(name: &str, request_side: bool) -> Seen {
    if unchanged() {
        return Seen::Before;
    }
    edits(|all| {
        let mut state = Seen::Before;
        for e in all {
            let Some(t) = touch(&e, name, request_side) else {
                continue;
            };
            state = match (t, state) {
                (Touch::Set(v), _) => Seen::Values(vec![v.to_vec()]),
                (Touch::Remove, _) => Seen::Values(Vec::new()),
                (Touch::Append(v), Seen::Values(mut vs)) => {
                    vs.push(v.to_vec());
                    Seen::Values(vs)
                }
                (Touch::Append(v), Seen::BeforeThen(mut vs)) => {
                    vs.push(v.to_vec());
                    Seen::BeforeThen(vs)
                }
                (Touch::Append(v), Seen::Before) => Seen::BeforeThen(vec![v.to_vec()]),
            };
        }
        state
    })
}

/// The first value of a header, given its first value before the call.
pub(crate) fn first_value(
    name: &str,
    request_side: bool,
    before: impl FnOnce() -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    match seen(name, request_side) {
        Seen::Before => before(),
        Seen::Values(vs) => vs.into_iter().next(),
        Seen::BeforeThen(vs) => before().or_else(|| vs.into_iter().next()),
    }
}

/// Every value of a header, given its values before the call.
pub(crate) fn all_values(
    name: &str,
    request_side: bool,
    before: impl FnOnce() -> Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    match seen(name, request_side) {
        Seen::Before => before(),
        Seen::Values(vs) => vs,
        Seen::BeforeThen(vs) => {
            let mut all = before();
            all.extend(vs);
            all
        }
    }
}

/// Every header, given every header before the call: the call's edits applied in
/// order.
pub(crate) fn all_headers(
    request_side: bool,
    mut headers: Vec<(String, Vec<u8>)>,
) -> Vec<(String, Vec<u8>)> {
    if unchanged() {
        return headers;
    }
    edits(|all| {
        for e in all {
            let (n, t) =
                match (e, request_side) {
                    (Edit::SetRequestHeader(n, v), true)
                    | (Edit::SetResponseHeader(n, v), false) => (n, Touch::Set(v)),
                    (Edit::AppendRequestHeader(n, v), true)
                    | (Edit::AppendResponseHeader(n, v), false) => (n, Touch::Append(v)),
                    (Edit::RemoveRequestHeader(n), true)
                    | (Edit::RemoveResponseHeader(n), false) => (n, Touch::Remove),
                    _ => continue,
                };
            let n = String::from_utf8_lossy(n).into_owned();
            match t {
                Touch::Set(v) => {
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&n));
                    headers.push((n, v.to_vec()));
                }
                Touch::Append(v) => headers.push((n, v.to_vec())),
                Touch::Remove => headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&n)),
            }
        }
        headers
    })
}

/// The last edit of a kind the call made, if any.
pub(crate) fn last<T>(pick: impl Fn(&Edit<'_>) -> Option<T>) -> Option<T> {
    if unchanged() {
        return None;
    }
    edits(|all| all.filter_map(|e| pick(&e)).last())
}

/// Headers the proxy manages itself: a filter cannot set, add or remove them (it frames
/// messages and routes by the authority). `host` is changed with `set_authority`.
pub(crate) static MANAGED: [&str; 9] = [
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Which bytes an RFC 9110 token (a header name) may hold. A `static`, so that a
/// lookup reads it in place (a `const` array may be copied to the stack per use).
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Whether `name` is one the proxy manages (any case).
fn managed(name: &str) -> bool {
    MANAGED
        .iter()
        .any(|m| m.len() == name.len() && m.eq_ignore_ascii_case(name))
}

/// Checks a header name (an RFC 9110 token, not one the proxy manages) and returns it
/// in lower case, as the proxy would (lowering only when it has to).
pub(crate) fn header_name(name: &str) -> Result<std::borrow::Cow<'_, str>, Error> {
    let mut upper = false;
    for &b in name.as_bytes() {
        if !TCHAR[b as usize] {
            return Err(Error(format!("invalid header name {name:?}")));
        }
        upper |= b.is_ascii_uppercase();
    }
    if name.is_empty() {
        return Err(Error("an empty header name".into()));
    }
    if managed(name) {
        return Err(Error(format!(
            "{} is managed by the proxy and cannot be changed by a filter",
            name.to_ascii_lowercase()
        )));
    }
    Ok(if upper {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    })
}

/// Checks a header value: visible bytes, obs-text, spaces and tabs; no line breaks,
/// other control bytes or DEL (what the proxy accepts).
pub(crate) fn header_value(value: &[u8]) -> Result<(), Error> {
    if valid_value(value) {
        Ok(())
    } else {
        Err(Error(format!(
            "invalid header value {:?}",
            String::from_utf8_lossy(value)
        )))
    }
}

/// Whether `b` may be in a header value.
fn value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Whether every byte may be in a header value, eight at a time (as the proxy checks
/// them): a word with no byte below 0x20 and no DEL passes at once; one with (a tab,
/// say) is checked byte by byte.
fn valid_value(v: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, rest) = v.as_chunks::<8>();
    for word in words {
        let x = u64::from_le_bytes(*word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let y = x ^ (ONES * 0x7f);
        let del = y.wrapping_sub(ONES) & !y & HIGH;
        if control | del != 0 && !word.iter().all(|&b| value_byte(b)) {
            return false;
        }
    }
    rest.iter().all(|&b| value_byte(b))
}

/// Checks a path for `set_path`.
pub(crate) fn path(path: &str) -> Result<(), Error> {
    if !path.starts_with('/')
        || path
            .bytes()
            .any(|b| b <= b' ' || b == b'#' || b == 0x7f || b >= 0x80)
    {
        return Err(Error(format!(
            "invalid path {path:?}: it must start with / and hold no spaces, control characters or fragment"
        )));
    }
    Ok(())
}

/// Checks an authority for `set_authority`: host and optional port, nothing else.
pub(crate) fn authority(a: &str) -> Result<(), Error> {
    let ok = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error(format!("invalid authority {a:?}")))
    }
}

impl RequestCall {
    /// A call in `phase` that was handed `view`.
    pub fn new(phase: PhaseKind, view: RequestView) -> Self {
        RequestCall { phase, view }
    }

    /// Refuses a change the phase does not allow.
    pub fn writable(&self) -> Result<(), Error> {
        if self.phase == PhaseKind::Log {
            return Err(Error("the log phase cannot change the request".into()));
        }
        Ok(())
    }
}

impl ResponseCall {
    /// A response-phase call that was handed `view`.
    pub fn new(phase: PhaseKind, view: ResponseView) -> Self {
        ResponseCall { phase, view }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_calls_own_edits() {
        begin();
        write(|w| {
            w.edit(Edit::AppendRequestHeader(b"x-a", b"2"));
            w.edit(Edit::SetRequestHeader(b"x-b", b"b"));
            w.edit(Edit::RemoveRequestHeader(b"x-c"));
            w.edit(Edit::SetResponseHeader(b"x-a", b"resp"));
        });
        fn before(v: &'static str) -> impl FnOnce() -> Option<Vec<u8>> {
            move || Some(v.as_bytes().to_vec())
        }
        assert_eq!(first_value("x-a", true, before("1")), Some(b"1".to_vec()));
        assert_eq!(first_value("X-A", true, || None), Some(b"2".to_vec()));
        assert_eq!(first_value("x-b", true, before("old")), Some(b"b".to_vec()));
        assert_eq!(first_value("x-c", true, before("gone")), None);
        assert_eq!(
            first_value("x-d", true, before("kept")),
            Some(b"kept".to_vec())
        );
        assert_eq!(
            all_values("x-a", true, || vec![b"1".to_vec()]),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        assert_eq!(first_value("x-a", false, || None), Some(b"resp".to_vec()));
        let all = all_headers(
            true,
            vec![
                ("x-c".into(), b"c".to_vec()),
                ("x-b".into(), b"old".to_vec()),
            ],
        );
        assert_eq!(
            all,
            vec![
                ("x-a".to_owned(), b"2".to_vec()),
                ("x-b".to_owned(), b"b".to_vec())
            ]
        );
        assert!(!take().is_empty());
        assert_eq!(
            first_value("x-b", true, before("old")),
            Some(b"old".to_vec())
        );
    }

    #[test]
    fn views_decode_what_the_proxy_encodes() {
        let buf = View::encode([Some(&b"GET"[..]), None, Some(b""), Some(b"abc")]);
        let v = View::decode(buf);
        assert_eq!(v.item(0), Some(Some(&b"GET"[..])));
        assert_eq!(v.item(1), Some(None));
        assert_eq!(v.item(2), Some(Some(&b""[..])));
        assert_eq!(v.item(3), Some(Some(&b"abc"[..])));
        assert_eq!(v.item(4), None);
        // Short or malformed buffers read as nothing handed over.
        assert_eq!(View::decode(Some(vec![3, 0, 0, 0, b'a'])).item(0), None);
        assert_eq!(View::decode(None).item(0), None);
        assert_eq!(View::encode([]), None);
        let declared: &'static Declared = Box::leak(Box::new(Declared {
            method: true,
            authority: true,
            request_headers: vec!["x-a".into()],
            ..Declared::default()
        }));
        let r = RequestView::new(
            View::encode([Some(&b"POST"[..]), Some(b"api"), None]),
            declared,
        );
        assert_eq!(r.method().as_deref(), Some("POST"));
        assert_eq!(r.path(), None, "not declared");
        assert_eq!(r.authority().as_deref(), Some("api"));
        assert_eq!(r.header("x-a"), Some(None), "declared, absent");
        assert_eq!(r.header("x-b"), None, "not declared");
    }

    #[test]
    fn values_are_checked_word_by_word_as_byte_by_byte() {
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut v = vec![b'a'; 19];
                v[at] = b;
                assert_eq!(valid_value(&v), value_byte(b), "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn names_and_values_are_checked_as_the_proxy_checks_them() {
        assert_eq!(header_name("X-Ok").unwrap(), "x-ok");
        assert!(header_name("bad name").is_err());
        assert!(header_name("Content-Length")
            .unwrap_err()
            .message()
            .contains("managed by the proxy"));
        assert!(header_value(b"a\tb \x80").is_ok());
        assert!(header_value(b"line\nbreak").is_err());
        assert!(header_value(b"del\x7f").is_err());
        assert!(path("/a?b=1").is_ok());
        assert!(path("a").is_err());
        assert!(path("/a b").is_err());
        assert!(authority("api.internal:8080").is_ok());
        assert!(authority("user@host").is_err());
    }
}
