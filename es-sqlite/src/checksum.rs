//! The per-event checksum: SQLite checks its b-trees, not the bytes of a
//! payload, so a flipped bit inside an event would read back as a different,
//! valid-looking event. Every row carries a CRC-32 of what it says, checked
//! on every read.

/// The columns of one stored event, as the checksum covers them.
pub(crate) struct Row<'a> {
    pub(crate) stream_pk: i64,
    pub(crate) version: i64,
    pub(crate) event_id: &'a [u8],
    pub(crate) recorded_at: i64,
    pub(crate) name: &'a [u8],
    pub(crate) schema_version: i64,
    pub(crate) payload: &'a [u8],
    pub(crate) metadata: Option<&'a [u8]>,
}

impl Row<'_> {
    /// The checksum, as stored (a `u32` in an SQLite integer).
    pub(crate) fn checksum(&self) -> i64 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.stream_pk.to_le_bytes());
        crc.update(&self.version.to_le_bytes());
        crc.update(self.event_id);
        crc.update(&self.recorded_at.to_le_bytes());
        crc.update(&self.schema_version.to_le_bytes());
        // Lengths first, so no shift of bytes between fields keeps the sum.
        for field in [self.name, self.payload, self.metadata.unwrap_or_default()] {
            crc.update(&(field.len() as u64).to_le_bytes());
            crc.update(field);
        }
        crc.update(&[u8::from(self.metadata.is_some())]);
        i64::from(crc.finalize())
    }
}
