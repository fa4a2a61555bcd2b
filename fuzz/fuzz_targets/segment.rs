//! Any bytes as the newest segment of a partition: opening it (which cuts a torn or
//! damaged tail off) and reading it, committed or not, gives errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    sluice_log::fuzzing::open_and_read_segment(bytes);
});
