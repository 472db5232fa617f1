//! The rescue log, `NAME.rescue` beside the image `NAME` while `image --rescue` writes it:
//! what a rescue that died (power loss, SIGKILL, a crash) has safely written, so that
//! `--resume` goes on from there without reading the disk again.
//!
//! It is append-only, little-endian, checksummed piece by piece:
//!
//! ```text
//! "LBRESCUE" | u32 version = 1 | u32 0 | the image header (4096 bytes) | u32 crc32 of all before
//! then checkpoints, each:
//! "LBCHKPT\0" | u64 bytes of the image written | u32 pass | u32 0
//!   | u64 n | n × 64-byte index records pushed since the last checkpoint (file offsets filled in)
//!   | u64 m | m × (u64 start, u64 end, u8 state, 7 × 0): the whole rescue map
//!   | u32 crc32 of the checkpoint
//! ```
//!
//! A checkpoint is appended only after the image's partial files are fsynced up to the byte
//! count it gives, and is fsynced itself; a reader keeps the checkpoints whose checksums hold
//! and stops at the first that is cut short or damaged (the one being written when the
//! process died). The records of all good checkpoints, in order, are the image's records;
//! the map of the last is the state of every byte to read (states as in [`AreaState`]:
//! 0 not tried, 1 not trimmed, 2 not scraped, 3 bad, 4 finished).
//!
//! The log is removed when the image is sealed and verified.

use super::rescue::{AreaState, RescueMap};
use crate::error::{Error, Result};
use crate::image::format::{Header, Record, HEADER_LEN, RECORD_LEN};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"LBRESCUE";
const CHECKPOINT: [u8; 8] = *b"LBCHKPT\0";
const VERSION: u32 = 1;
/// Bytes of the log's head: magic, version, reserved, header, crc.
const HEAD_LEN: usize = 8 + 4 + 4 + HEADER_LEN + 4;
/// The most records or map areas one checkpoint may claim (a damaged count is refused, not
/// allocated).
const MAX_ITEMS: u64 = 1 << 28;

/// `NAME.rescue` beside the image `NAME`.
pub fn log_path(image: &Path) -> PathBuf {
    let mut name = image
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".rescue");
    image.with_file_name(name)
}

/// An open rescue log, appended to at each checkpoint.
#[derive(Debug)]
pub struct RescueLog {
    file: File,
    path: PathBuf,
}

/// What a log says a rescue had written when it stopped.
#[derive(Debug, Clone)]
pub struct LogState {
    /// The image's header.
    pub header: Header,
    /// Every record written, in the order written.
    pub records: Vec<Record>,
    /// Bytes of the image's partial files that hold them.
    pub written: u64,
    /// The state of every byte to read.
    pub map: RescueMap,
    /// The pass it was in.
    pub pass: u32,
    /// Good checkpoints read.
    pub checkpoints: u32,
    /// Bytes of the log that are good (a torn checkpoint after them is cut off).
    pub good_len: u64,
}

fn bad(path: &Path, offset: u64, reason: String) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        source: crate::image::FormatError::Invalid {
            what: "rescue log",
            offset,
            reason,
        },
    }
}

impl RescueLog {
    /// Creates the log of an image being written under `header`; refuses if it exists.
    pub fn create(path: &Path, header: &Header) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        let mut head = Vec::with_capacity(HEAD_LEN);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(&header.encode());
        let crc = crc32fast::hash(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        file.write_all(&head)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("writing", path, e))?;
        let dir = crate::image::volumes::parent_dir(path);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("syncing directory", &dir, e))?;
        Ok(RescueLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing log to append to, cutting off what follows its last good
    /// checkpoint (`good_len`, from [`read`]).
    pub fn reopen(path: &Path, good_len: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io("opening", path, e))?;
        file.set_len(good_len)
            .map_err(|e| Error::io("truncating", path, e))?;
        Ok(RescueLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends a checkpoint: the image's partial files hold `written` bytes (already
    /// fsynced), `records` are those pushed since the last checkpoint, `map` is the whole
    /// map. Fsyncs the log.
    pub fn append(
        &mut self,
        written: u64,
        pass: u32,
        records: &[Record],
        map: &RescueMap,
    ) -> Result<()> {
        let areas: Vec<(u64, u64, AreaState)> = map.iter().collect();
        let mut b = Vec::with_capacity(48 + records.len() * RECORD_LEN + areas.len() * 24);
        b.extend_from_slice(&CHECKPOINT);
        b.extend_from_slice(&written.to_le_bytes());
        b.extend_from_slice(&pass.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(records.len() as u64).to_le_bytes());
        for r in records {
            r.encode(&mut b);
        }
        b.extend_from_slice(&(areas.len() as u64).to_le_bytes());
        for (s, e, st) in areas {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
            b.push(st as u8);
            b.extend_from_slice(&[0u8; 7]);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        self.file
            .write_all(&b)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("writing", &self.path, e))
    }

    /// Removes the log (the image is sealed).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a log: its header and the state after its last good checkpoint.
pub fn read(path: &Path) -> Result<LogState> {
    let data = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    if data.len() < HEAD_LEN || data[..8] != MAGIC {
        return Err(bad(path, 0, "not a Lifeboat rescue log".into()));
    }
    let crc = crate::units::le_u32(&data, HEAD_LEN - 4);
    if crc != crc32fast::hash(&data[..HEAD_LEN - 4]) {
        return Err(bad(path, 0, "its head is damaged (checksum)".into()));
    }
    let version = crate::units::le_u32(&data, 8);
    if version != VERSION {
        return Err(bad(path, 8, format!("version {version} is not known")));
    }
    let header = Header::decode(&data[16..16 + HEADER_LEN]).map_err(|source| Error::Image {
        path: path.to_path_buf(),
        source,
    })?;
    let mut st = LogState {
        header,
        records: Vec::new(),
        written: HEADER_LEN as u64,
        map: RescueMap::default(),
        pass: 0,
        checkpoints: 0,
        good_len: HEAD_LEN as u64,
    };
    let mut at = HEAD_LEN;
    // each checkpoint is checked whole before any of it is used
    while let Some(cp) = checkpoint(&data, at) {
        let (written, pass, records, map, end) = cp;
        st.records.extend(records);
        st.written = written;
        st.pass = pass;
        st.map = map;
        st.checkpoints += 1;
        st.good_len = end as u64;
        at = end;
    }
    Ok(st)
}

/// A checkpoint: (written, pass, records, map, end), or `None` where the log is cut short
/// or damaged.
type Checkpoint = (u64, u32, Vec<Record>, RescueMap, usize);

fn checkpoint(data: &[u8], at: usize) -> Option<Checkpoint> {
    let get = |from: usize, len: usize| data.get(from..from.checked_add(len)?);
    if get(at, 8)? != CHECKPOINT {
        return None;
    }
    let written = crate::units::le_u64(get(at + 8, 8)?, 0);
    let pass = crate::units::le_u32(get(at + 16, 4)?, 0);
    let n = crate::units::le_u64(get(at + 24, 8)?, 0);
    if n > MAX_ITEMS {
        return None;
    }
    let recs_at = at + 32;
    let recs = get(recs_at, n as usize * RECORD_LEN)?;
    let m_at = recs_at + recs.len();
    let m = crate::units::le_u64(get(m_at, 8)?, 0);
    if m > MAX_ITEMS {
        return None;
    }
    let areas = get(m_at + 8, m as usize * 24)?;
    let end = m_at + 8 + areas.len();
    let crc = crate::units::le_u32(get(end, 4)?, 0);
    if crc != crc32fast::hash(get(at, end - at)?) {
        return None;
    }
    let mut records = Vec::with_capacity(n as usize);
    for (i, rb) in recs.chunks_exact(RECORD_LEN).enumerate() {
        records.push(Record::decode(rb, i as u64, (recs_at + i * RECORD_LEN) as u64).ok()?);
    }
    let mut list = Vec::with_capacity(m as usize);
    for a in areas.chunks_exact(24) {
        let state = AreaState::from_u8(a[16])?;
        list.push((
            crate::units::le_u64(a, 0),
            crate::units::le_u64(a, 8),
            state,
        ));
    }
    Some((
        written,
        pass,
        records,
        RescueMap::from_areas(list)?,
        end + 4,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(off: u64) -> Record {
        Record {
            disk_offset: off,
            raw_len: 4096,
            stored_len: 100,
            file_offset: 4096 + off,
            codec: crate::image::Codec::Zstd,
            frame_offset: 0,
            hash: [off as u8; 32],
        }
    }

    #[test]
    fn checkpoints_round_trip_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(&dir.path().join("x.lbi"));
        assert!(path.ends_with("x.lbi.rescue"));
        let h = crate::image::format::sample_header();
        let mut log = RescueLog::create(&path, &h).unwrap();
        assert!(
            RescueLog::create(&path, &h).is_err(),
            "an existing log is refused"
        );
        let mut map = RescueMap::new([(0, 1 << 20)]);
        map.set(0, 8192, AreaState::Finished);
        log.append(9000, 1, &[rec(0), rec(4096)], &map).unwrap();
        let after1 = std::fs::metadata(&path).unwrap().len() as usize;
        map.set(8192, 12288, AreaState::Bad);
        log.append(9500, 3, &[], &map).unwrap();
        let st = read(&path).unwrap();
        assert_eq!(st.header, h);
        assert_eq!(st.records, vec![rec(0), rec(4096)]);
        assert_eq!((st.written, st.pass, st.checkpoints), (9500, 3, 2));
        assert_eq!(st.map, map);

        // a third checkpoint cut short (the process died while writing it)
        let good = st.good_len;
        let mut log = RescueLog::reopen(&path, good).unwrap();
        log.append(9900, 4, &[rec(8192)], &map).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let st = read(&path).unwrap();
        assert_eq!((st.written, st.checkpoints, st.good_len), (9500, 2, good));
        assert_eq!(st.records.len(), 2);

        // a flipped byte in the second checkpoint leaves only the first
        let mut data = std::fs::read(&path).unwrap();
        data[after1 + 10] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let st = read(&path).unwrap();
        assert_eq!((st.checkpoints, st.written), (1, 9000));

        std::fs::write(&path, b"LBRESCUE garbage").unwrap();
        assert!(read(&path).is_err());
    }
}
