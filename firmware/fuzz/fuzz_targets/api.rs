#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check_api.rs"]
mod check_api;

fuzz_target!(|data: &[u8]| check_api::check_api(data));
