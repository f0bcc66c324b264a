#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check_decoder.rs"]
mod check_decoder;

fuzz_target!(|data: &[u8]| check_decoder::check(data));
