//! State descriptors and the typed handles a user function keeps.

use crate::StateTtl;
use std::marker::PhantomData;

/// Declares a piece of keyed state: its name and, optionally, its time to live.
#[derive(Clone, Debug)]
pub struct StateDescriptor {
    /// The state's name, unique within its operator.
    pub name: String,
    /// Its time to live, if any.
    pub ttl: Option<StateTtl>,
}

impl StateDescriptor {
    /// A state without time to live.
    pub fn new(name: impl Into<String>) -> Self {
        StateDescriptor { name: name.into(), ttl: None }
    }

    /// Gives the state a time to live.
    pub fn with_ttl(mut self, ttl: StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident<$($param:ident),+>) => {
        $(#[$doc])*
        pub struct $name<$($param),+> {
            pub(crate) index: usize,
            _types: PhantomData<fn() -> ($($param,)+)>,
        }

        impl<$($param),+> $name<$($param),+> {
            pub(crate) fn new(index: usize) -> Self {
                $name { index, _types: PhantomData }
            }
        }

        impl<$($param),+> Clone for $name<$($param),+> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<$($param),+> Copy for $name<$($param),+> {}

        /// A placeholder until the state is declared in `open`; using it panics.
        impl<$($param),+> Default for $name<$($param),+> {
            fn default() -> Self {
                $name::new(usize::MAX)
            }
        }

        impl<$($param),+> std::fmt::Debug for $name<$($param),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.index)
            }
        }
    };
}

handle!(
    /// A handle to one value per key, returned when the state is declared.
    ValueState<V>
);
handle!(
    /// A handle to a list per key.
    ListState<V>
);
handle!(
    /// A handle to a map per key.
    MapState<UK, UV>
);
