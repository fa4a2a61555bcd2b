//! Keyed state for Sluice operators.
//!
//! A keyed operator owns one [`KeyedStateStore`] per worker. User functions declare
//! their state when they open, with [`StateDescriptor`]s, and get back small typed
//! handles ([`ValueState`], [`ListState`], [`MapState`]) that read and write the
//! store for the current key. Each state may have a time to live ([`StateTtl`]):
//! expired values are never returned and are cleaned up in the background.
//!
//! Tables live behind the [`ValueTable`], [`ListTable`] and [`MapTable`] traits; the
//! heap backend ([`heap`]) keeps objects in hash maps. The on-disk backend (an LSM
//! store, for state larger than memory) will implement the same traits.

mod descriptor;
pub mod disk;
mod health;
pub mod heap;
mod store;
mod table;
mod timers;
mod ttl;
mod values;

pub use descriptor::{ListState, MapState, StateDescriptor, ValueState};
pub use disk::DiskBackend;
pub use health::Health;
pub use store::{KeyedStateStore, StateBackendKind};
pub use table::{ListTable, MapTable, StateTable, ValueTable};
pub use timers::{KeyedTimers, HEAD_CAPACITY};
pub use ttl::{StateTtl, TtlClock, TtlUpdate};
pub use values::KeyedValues;
