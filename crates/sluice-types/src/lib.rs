//! Leaf types shared by every Sluice crate.
//!
//! Nothing here knows about threads, channels or I/O: this crate is the vocabulary
//! (timestamps, records, keys, key groups, errors) the rest of the engine speaks.
#![deny(missing_docs)]

mod error;
mod key;
mod record;
mod time;

pub use error::{Error, ErrorDomain, Result};
pub use key::{hash_key, key_group_for_hash, worker_for_key_group, Data, Key, KeyGroup, DEFAULT_MAX_PARALLELISM};
pub use record::Record;
pub use time::{days, hours, millis, minutes, seconds, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
