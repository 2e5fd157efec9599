//! weft's HTTP/1.1 request head parser on arbitrary bytes: it never panics, a head it
//! accepts is consumed exactly (what follows stays in the buffer), and fed in two
//! pieces it decides as it does whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_h1::request::parse;

fuzz_target!(|data: &[u8]| {
    let mut whole = BytesMut::from(data);
    let once = parse(&mut whole);
    if let Ok(Some(head)) = &once {
        // The head's bytes were taken, the rest left.
        assert!(whole.len() < data.len());
        assert!(data.ends_with(&whole));
        let _ = (&head.parts.uri, head.framing, head.keep_alive);
    }
    // The first piece alone is never a different complete head.
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut part = BytesMut::from(&data[..cut]);
    if let Ok(Some(_)) = parse(&mut part) {
        assert!(
            matches!(once, Ok(Some(_))),
            "a prefix parsed but the whole did not"
        );
    }
});
