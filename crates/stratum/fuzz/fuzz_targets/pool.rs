#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check_stratum.rs"]
mod check_stratum;

fuzz_target!(|data: &[u8]| check_stratum::check_pool(data));
