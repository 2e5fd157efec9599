//! weft's HTTP/1.1 response head parser (both as a header map and as raw lines passed
//! through) on arbitrary bytes: it never panics, and both modes agree on the status,
//! the framing and how much they consume.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_h1::response::parse_head;

fuzz_target!(|data: &[u8]| {
    let mut a = BytesMut::from(data);
    let mut b = BytesMut::from(data);
    let mapped = parse_head(&mut a, false);
    let raw = parse_head(&mut b, true);
    match (mapped, raw) {
        (Ok(Some((pa, fa, ra))), Ok(Some((pb, fb, rb)))) => {
            assert_eq!(pa.status, pb.status);
            assert_eq!(fa, fb);
            assert_eq!(ra, rb);
            assert_eq!(a.len(), b.len(), "both consumed the same head");
        }
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (x, y) => panic!(
            "modes disagree: {:?} / {:?}",
            x.map(|o| o.is_some()),
            y.map(|o| o.is_some())
        ),
    }
});
