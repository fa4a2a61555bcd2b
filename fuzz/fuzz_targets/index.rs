//! Any bytes as a sealed segment's index and producer snapshot, beside a valid
//! segment: opening and reading the partition gives errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    sluice_log::fuzzing::open_with_index(bytes);
});
