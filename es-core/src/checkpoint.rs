//! Checkpoints: how far a projection has read the store's global order.

use std::future::Future;

use crate::error::Result;

/// Where projections keep their position in `$all`.
///
/// A checkpoint is the position of the last event a projection has fully
/// handled; it resumes from the next one. A store that keeps a read model in
/// the same database saves the checkpoint in the read model's transaction, so
/// each event takes effect exactly once.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The checkpoint of projection `name` (`None`: it has not started).
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn load_checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Records that projection `name` has handled everything up to `position`.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    fn save_checkpoint(&self, name: &str, position: u64)
    -> impl Future<Output = Result<()>> + Send;
}
