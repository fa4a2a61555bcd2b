//! What moves between operators.

/// A batch of records moved as one unit between operators.
///
/// The typed API moves `Vec<Record<T>>`; the SQL layer will move Arrow record batches.
/// The runtime needs only the row count (for counters) and to move the batch between
/// threads.
pub trait Batch: Send + 'static {
    /// The number of records in the batch.
    fn len(&self) -> usize;

    /// Whether the batch holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Send + 'static> Batch for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}
