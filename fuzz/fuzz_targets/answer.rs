//! A filter's answer buffer (contract 0.3) on arbitrary bytes, in every phase: it never
//! panics, and a refused answer leaves the exchange untouched (all or nothing).
//! Input: the phase byte, then the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((phase, buf)) = data.split_first() {
        weft::fuzz_hooks::answer(*phase, buf);
    }
});
