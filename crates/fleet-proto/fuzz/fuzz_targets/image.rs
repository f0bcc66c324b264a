#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check_fleet.rs"]
mod check_fleet;

fuzz_target!(|data: &[u8]| check_fleet::check_image(data));
