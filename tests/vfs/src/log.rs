//! What the VFS recorded, and the files a power cut would leave.

use std::path::{Path, PathBuf};

/// The unit a write can be torn at, in bytes: a disk sector. Finer than the
/// 4,096 bytes SQLite's unix VFS reports, so tears fall inside SQLite's
/// pages too.
pub const SECTOR: u64 = 512;

/// One operation on a recorded file, in the order the VFS saw them (across
/// all files and connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `data` written at `offset`.
    Write {
        /// The file (an index into [`Log::files`]).
        file: usize,
        /// Where.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The file cut (or extended with zeros) to `size` bytes.
    Truncate {
        /// The file.
        file: usize,
        /// Its new length.
        size: u64,
    },
    /// A sync that succeeded: every earlier write and truncation of the file
    /// is on disk.
    Sync {
        /// The file.
        file: usize,
    },
    /// A sync that failed (an injected fault). The writes and truncations
    /// of the file since its last sync are lost for good: a later sync that
    /// succeeds does not bring them back, as Linux marks the pages clean
    /// after a failed `fsync` (the PostgreSQL 2018 "fsyncgate" behaviour).
    FailedSync {
        /// The file.
        file: usize,
    },
    /// The file deleted; taken as on disk at once.
    Delete {
        /// The file.
        file: usize,
    },
    /// The file was there, with `data`, when the VFS first opened it: made
    /// outside its view (by another VFS, or written under another name and
    /// moved into place, as a new store is), so taken as on disk as found.
    Existing {
        /// The file.
        file: usize,
        /// Its content then.
        data: Vec<u8>,
    },
}

impl Op {
    /// The file the operation is on.
    pub fn file(&self) -> usize {
        match self {
            Op::Write { file, .. }
            | Op::Truncate { file, .. }
            | Op::Sync { file }
            | Op::FailedSync { file }
            | Op::Delete { file }
            | Op::Existing { file, .. } => *file,
        }
    }
}

/// What became of the writes after each file's last sync, at a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// None reached the disk.
    Dropped,
    /// All reached the disk (as after a process crash).
    Kept,
    /// Each one, independently: dropped, kept, or torn (each of its
    /// [`SECTOR`]s dropped or kept), chosen by a generator seeded with the
    /// seed. Bytes outside a write are never changed by it (SQLite's
    /// "powersafe overwrite", which its unix VFS reports).
    Random(u64),
}

/// Every operation the VFS recorded on the files of a store (its database,
/// write-ahead log and rollback journal), as [`TestVfs::log`](crate::TestVfs::log)
/// returns them.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) ops: Vec<Op>,
}

impl Log {
    /// The recorded files, by index.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The indices of the syncs that succeeded: a cut at one of them is a
    /// power cut just before that sync completed.
    pub fn syncs(&self) -> Vec<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Sync { .. }))
            .map(|(i, _)| i)
            .collect()
    }

    /// A replay of the log, to make images at increasing cuts cheaply.
    pub fn replay(&self) -> Replay<'_> {
        Replay {
            log: self,
            next: 0,
            durable: vec![None; self.files.len()],
            pending: vec![Vec::new(); self.files.len()],
        }
    }

    /// The files a power cut after the first `cut` operations leaves (see
    /// [`Replay::image`]).
    pub fn image(&self, cut: usize, unsynced: Unsynced) -> Image {
        self.replay().image(cut, unsynced)
    }
}

/// Walks a [`Log`] forward, keeping each file's content as of its last sync.
#[derive(Debug)]
pub struct Replay<'a> {
    log: &'a Log,
    /// The first operation not yet replayed.
    next: usize,
    /// Each file's content on disk after its last sync (`None`: absent).
    durable: Vec<Option<Vec<u8>>>,
    /// Each file's operations since its last sync, by index.
    pending: Vec<Vec<usize>>,
}

impl Replay<'_> {
    /// The files a power cut leaves after the first `cut` operations (all of
    /// them when `cut` is past the end): what each file's syncs put on disk,
    /// then its operations since its last sync as `unsynced` says. A file
    /// never written, or deleted, is absent.
    ///
    /// Cuts should come in increasing order: an earlier cut than the last
    /// one replays the log from its start again.
    pub fn image(&mut self, cut: usize, unsynced: Unsynced) -> Image {
        let cut = cut.min(self.log.ops.len());
        if cut < self.next {
            *self = self.log.replay();
        }
        while self.next < cut {
            self.step();
        }
        let mut rng = match unsynced {
            Unsynced::Random(seed) => Some(Rng::new(seed)),
            Unsynced::Dropped | Unsynced::Kept => None,
        };
        let mut files = Vec::new();
        for (file, path) in self.log.files.iter().enumerate() {
            let mut content = self.durable[file].clone();
            for &i in &self.pending[file] {
                let op = &self.log.ops[i];
                match (&mut rng, unsynced) {
                    (_, Unsynced::Dropped) => {}
                    (Some(rng), _) => match rng.below(3) {
                        0 => {}
                        1 => apply(&mut content, op, None),
                        _ => apply(&mut content, op, Some(rng)),
                    },
                    (None, _) => apply(&mut content, op, None),
                }
            }
            if let Some(content) = content {
                files.push((path.clone(), content));
            }
        }
        Image { files }
    }

    fn step(&mut self) {
        let i = self.next;
        self.next += 1;
        let op = &self.log.ops[i];
        let file = op.file();
        match op {
            Op::Write { .. } | Op::Truncate { .. } => self.pending[file].push(i),
            Op::Sync { .. } => {
                for j in std::mem::take(&mut self.pending[file]) {
                    apply(&mut self.durable[file], &self.log.ops[j], None);
                }
            }
            Op::FailedSync { .. } => self.pending[file].clear(),
            Op::Delete { .. } => {
                self.durable[file] = None;
                self.pending[file].clear();
            }
            Op::Existing { data, .. } => {
                self.durable[file] = Some(data.clone());
                self.pending[file].clear();
            }
        }
    }
}

/// Applies a write or truncation to a file's content; torn (each sector
/// kept or not by `tear`) when `tear` is given.
fn apply(content: &mut Option<Vec<u8>>, op: &Op, tear: Option<&mut Rng>) {
    match op {
        Op::Write { offset, data, .. } => {
            let bytes = content.get_or_insert_with(Vec::new);
            let Some(tear) = tear else {
                write_at(bytes, *offset, data);
                return;
            };
            let mut at = *offset;
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                let room = usize::try_from(SECTOR - at % SECTOR).unwrap_or(usize::MAX);
                let (sector, after) = rest.split_at(room.min(rest.len()));
                if tear.below(2) == 0 {
                    write_at(bytes, at, sector);
                }
                at += sector.len() as u64;
                rest = after;
            }
        }
        Op::Truncate { size, .. } => {
            if tear.is_some_and(|rng| rng.below(2) == 0) {
                return;
            }
            let size = usize::try_from(*size).unwrap_or(usize::MAX);
            content.get_or_insert_with(Vec::new).resize(size, 0);
        }
        Op::Sync { .. } | Op::FailedSync { .. } | Op::Delete { .. } | Op::Existing { .. } => {}
    }
}

fn write_at(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(data.len());
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

/// The files a power cut leaves: each recorded file's path and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Each file present, with its content.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

impl Image {
    /// The content of the file named `name` (its last path component).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(path, _)| path.file_name().is_some_and(|n| n == name))
            .map(|(_, content)| content.as_slice())
    }

    /// Writes every file into `dir` under its own name (its last path
    /// component); `dir` should be empty.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (path, content) in &self.files {
            let name = path.file_name().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "a file without a name")
            })?;
            std::fs::write(dir.join(name), content)?;
        }
        Ok(())
    }
}

/// A small seeded generator (xorshift64*).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ops: Vec<Op>) -> Log {
        Log {
            files: vec![PathBuf::from("/d/a.db"), PathBuf::from("/d/a.db-wal")],
            ops,
        }
    }

    fn write(file: usize, offset: u64, data: &[u8]) -> Op {
        Op::Write {
            file,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_drops_or_keeps_the_rest() {
        let log = log(vec![
            write(0, 0, b"abcd"),
            Op::Sync { file: 0 },
            write(0, 2, b"XY"),
            write(1, 0, b"wal"),
            Op::Sync { file: 1 },
            write(0, 4, b"zz"),
        ]);
        let mut replay = log.replay();
        assert_eq!(replay.image(0, Unsynced::Kept).files, vec![]);
        assert_eq!(replay.image(1, Unsynced::Dropped).files, vec![]);
        assert_eq!(
            replay.image(2, Unsynced::Dropped).file("a.db"),
            Some(&b"abcd"[..])
        );
        assert_eq!(
            replay.image(4, Unsynced::Kept).file("a.db"),
            Some(&b"abXY"[..])
        );
        assert_eq!(replay.image(4, Unsynced::Dropped).file("a.db-wal"), None);
        let end = replay.image(usize::MAX, Unsynced::Dropped);
        assert_eq!(end.file("a.db"), Some(&b"abcd"[..]));
        assert_eq!(end.file("a.db-wal"), Some(&b"wal"[..]));
        // Earlier again: replayed from the start.
        assert_eq!(
            replay.image(3, Unsynced::Kept).file("a.db"),
            Some(&b"abXY"[..])
        );
        assert_eq!(log.syncs(), vec![1, 4]);
    }

    #[test]
    fn a_failed_sync_loses_its_writes_for_good() {
        let log = log(vec![
            write(0, 0, b"old!"),
            Op::Sync { file: 0 },
            write(0, 0, b"new"),
            Op::FailedSync { file: 0 },
            Op::Sync { file: 0 },
        ]);
        assert_eq!(
            log.image(5, Unsynced::Kept).file("a.db"),
            Some(&b"old!"[..])
        );
    }

    #[test]
    fn tears_fall_on_sector_boundaries_inside_the_write() {
        let old = vec![1u8; 4 * 512];
        let new = vec![2u8; 3 * 512];
        let log = log(vec![
            write(0, 0, &old),
            Op::Sync { file: 0 },
            write(0, 256, &new),
        ]);
        let mut shapes = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let image = log.image(3, Unsynced::Random(seed));
            let bytes = image.file("a.db").unwrap_or_default();
            assert_eq!(bytes.len(), old.len());
            assert!(bytes[..256].iter().all(|b| *b == 1), "before the write");
            assert!(bytes[256 + new.len()..].iter().all(|b| *b == 1), "after it");
            // Each piece between sector boundaries is all old or all new.
            let mut pieces = Vec::new();
            for (start, end) in [(256, 512), (512, 1024), (1024, 1536), (1536, 1792)] {
                let piece = &bytes[start..end];
                assert!(
                    piece.iter().all(|b| *b == piece[0]),
                    "{start}..{end} is whole"
                );
                pieces.push(piece[0]);
            }
            shapes.insert(pieces);
        }
        assert!(shapes.contains(&vec![1, 1, 1, 1]), "dropped");
        assert!(shapes.contains(&vec![2, 2, 2, 2]), "kept");
        assert!(shapes.len() > 4, "torn in several ways: {shapes:?}");
    }

    #[test]
    fn a_delete_removes_the_file() {
        let log = log(vec![
            write(1, 0, b"wal"),
            Op::Sync { file: 1 },
            Op::Delete { file: 1 },
            write(1, 0, b"w2"),
        ]);
        assert_eq!(log.image(3, Unsynced::Kept).file("a.db-wal"), None);
        assert_eq!(
            log.image(4, Unsynced::Kept).file("a.db-wal"),
            Some(&b"w2"[..])
        );
        assert_eq!(log.image(4, Unsynced::Dropped).file("a.db-wal"), None);
    }
}
