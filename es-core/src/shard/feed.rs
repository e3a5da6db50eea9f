//! [`ShardCheckpoints`]: how far a projection has read each shard.

use crate::checkpoint::CheckpointStore;
use crate::error::{Error, Result};

use super::split_position;

/// How far a projection (or a [`reshard`](super::reshard)) has read each
/// shard of a [`ShardedStore`](super::ShardedStore): for each shard, the
/// position *in that shard* of the last event handled (0: none).
///
/// One checkpoint per shard is what makes the merged feed safe to resume:
/// each shard's own `$all` has no late-filled positions, while the merge of
/// several has (see the [module docs](super)).
///
/// Saved through any [`CheckpointStore`] (the sharded store itself keeps
/// them in shard 0; a read model may keep them in its own database, in the
/// transaction of its changes) under the names `"{name}@shard-{i}"`, one
/// per shard, and `"{name}@shards"`, the number of shards: a stored
/// format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheckpoints {
    positions: Vec<u64>,
}

impl ShardCheckpoints {
    /// Checkpoints of `shards` shards, none read yet.
    pub fn new(shards: usize) -> Self {
        ShardCheckpoints {
            positions: vec![0; shards],
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.positions.len()
    }

    /// The position in shard `shard` of the last event handled (0: none);
    /// `None` for a shard out of range.
    pub fn local(&self, shard: usize) -> Option<u64> {
        self.positions.get(shard).copied()
    }

    /// Every shard's position, in shard order.
    pub fn as_slice(&self) -> &[u64] {
        &self.positions
    }

    /// Records that shard `shard` is handled up to its position `local`;
    /// `false` (and nothing changes) for a shard out of range.
    pub fn set(&mut self, shard: usize, local: u64) -> bool {
        match self.positions.get_mut(shard) {
            Some(p) => {
                *p = local;
                true
            }
            None => false,
        }
    }

    /// Records that the event at `position` of the sharded store (an
    /// encoded position, as the merged feed gives it) is handled; returns
    /// its (shard, position in the shard). `None` for position 0.
    pub fn advance(&mut self, position: u64) -> Option<(usize, u64)> {
        let (shard, local) = split_position(position, self.positions.len())?;
        let p = self.positions.get_mut(shard)?;
        *p = (*p).max(local);
        Some((shard, local))
    }

    /// The checkpoint name of shard `shard` of the projection `name`:
    /// `"{name}@shard-{shard}"`.
    pub fn name_of(name: &str, shard: usize) -> String {
        format!("{name}@shard-{shard}")
    }

    /// The checkpoint name holding the number of shards of the projection
    /// `name`: `"{name}@shards"`.
    pub fn count_name(name: &str) -> String {
        format!("{name}@shards")
    }

    /// The saved checkpoints of the projection `name` over `shards`
    /// shards; 0 for each shard never saved.
    ///
    /// # Errors
    ///
    /// [`Error::ShardCheckpoints`] when they were saved for another number
    /// of shards; the store's errors.
    pub async fn load(
        store: &impl CheckpointStore,
        name: &str,
        shards: usize,
    ) -> Result<ShardCheckpoints> {
        if let Some(found) = store.load_checkpoint(&Self::count_name(name)).await?
            && u64::try_from(shards).ok() != Some(found)
        {
            return Err(Error::ShardCheckpoints {
                name: Some(name.to_owned()),
                found,
                shards,
            });
        }
        let mut positions = Vec::with_capacity(shards);
        for shard in 0..shards {
            let saved = store.load_checkpoint(&Self::name_of(name, shard)).await?;
            positions.push(saved.unwrap_or(0));
        }
        Ok(ShardCheckpoints { positions })
    }

    /// Saves every shard's checkpoint, and the number of shards, as the
    /// projection `name`.
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn save(&self, store: &impl CheckpointStore, name: &str) -> Result<()> {
        store
            .save_checkpoint(&Self::count_name(name), self.positions.len() as u64)
            .await?;
        for (shard, &position) in self.positions.iter().enumerate() {
            store
                .save_checkpoint(&Self::name_of(name, shard), position)
                .await?;
        }
        Ok(())
    }

    /// Saves the checkpoint of one shard (after [`advance`](Self::advance)
    /// handled an event of it), and the number of shards, as the
    /// projection `name`: two small writes, fewer than [`save`](Self::save)
    /// makes for many shards.
    ///
    /// # Errors
    ///
    /// The store's; nothing for a shard out of range.
    pub async fn save_shard(
        &self,
        store: &impl CheckpointStore,
        name: &str,
        shard: usize,
    ) -> Result<()> {
        let Some(&position) = self.positions.get(shard) else {
            return Ok(());
        };
        store
            .save_checkpoint(&Self::count_name(name), self.positions.len() as u64)
            .await?;
        store
            .save_checkpoint(&Self::name_of(name, shard), position)
            .await
    }
}
