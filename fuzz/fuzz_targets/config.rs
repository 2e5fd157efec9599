//! The configuration loader and checker on arbitrary text: every refusal is an error
//! naming the file, never a panic (host names are not resolved while fuzzing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        weft::fuzz_hooks::config(text);
    }
});
