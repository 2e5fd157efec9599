//! The bundle reader on arbitrary manifests and signatures: it never panics, and with
//! one trusted key only the manifest that key signed verifies (the corpus starts from
//! it, so mutations near a valid signature are tried).
//! Input: the manifest, a 0xFF byte, then `manifest.sig`'s bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (manifest, sig) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    weft::fuzz_hooks::bundle(manifest, sig);
});
