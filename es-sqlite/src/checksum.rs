//! The per-event checksum: SQLite checks its b-trees, not the bytes of a
//! payload, so a flipped bit inside an event would read back as a different,
//! valid-looking event. Every row carries a CRC-32 of what it says, checked
//! on every read.
//!
//! The sum covers, in order: an 80-byte header (stream key, version,
//! recorded-at, schema version, the lengths of name, payload and metadata,
//! and a flags word, each as a little-endian `i64`, then the 16-byte event
//! id); then, when the row has an occurred-at time, its 8 bytes; then the
//! name, the payload and the metadata bytes. Lengths come first, so no shift
//! of bytes between fields keeps the sum.
//!
//! Flags: bit 0, the row has metadata; bit 1, it has an occurred-at time.
//! Rows written by schema 1 have neither an occurred-at time nor bit 1, so
//! their sums are the same under both schemas.

/// The columns of one stored event, as the checksum covers them.
pub(crate) struct Row<'a> {
    pub(crate) stream_pk: i64,
    pub(crate) version: i64,
    pub(crate) event_id: &'a [u8],
    pub(crate) recorded_at: i64,
    pub(crate) occurred_at: Option<i64>,
    pub(crate) name: &'a [u8],
    pub(crate) schema_version: i64,
    pub(crate) payload: &'a [u8],
    pub(crate) metadata: Option<&'a [u8]>,
}

impl Row<'_> {
    /// The checksum, as stored (a `u32` in an SQLite integer).
    pub(crate) fn checksum(&self) -> i64 {
        let metadata = self.metadata.unwrap_or_default();
        let flags = i64::from(self.metadata.is_some()) | i64::from(self.occurred_at.is_some()) << 1;
        let fields = [
            self.stream_pk,
            self.version,
            self.recorded_at,
            self.schema_version,
            len(self.name),
            len(self.payload),
            len(metadata),
            flags,
        ];
        // One contiguous header lets the hasher take its fast path.
        let mut header = [0u8; 80];
        for (slot, field) in header.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&field.to_le_bytes());
        }
        let id_len = self.event_id.len().min(16);
        header[64..64 + id_len].copy_from_slice(&self.event_id[..id_len]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        if let Some(occurred_at) = self.occurred_at {
            crc.update(&occurred_at.to_le_bytes());
        }
        crc.update(self.name);
        crc.update(self.payload);
        crc.update(metadata);
        i64::from(crc.finalize())
    }
}

fn len(bytes: &[u8]) -> i64 {
    i64::try_from(bytes.len()).unwrap_or(i64::MAX)
}
