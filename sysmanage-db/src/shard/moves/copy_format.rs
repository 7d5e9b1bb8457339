//! Counting the rows of a binary `COPY` stream as it passes, for progress
//! reports, without decoding any value.
//!
//! The format: an 11-byte signature, a 32-bit flags field, a 32-bit header
//! extension length and that many bytes; then per tuple a 16-bit field
//! count followed, per field, by a 32-bit length (-1 for NULL) and the
//! bytes; a field count of -1 ends the data.

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the 19 fixed header bytes.
    Header,
    /// Skipping `n` header extension bytes.
    Extension(u64),
    /// Collecting a tuple's 2-byte field count.
    FieldCount,
    /// Collecting a field's 4-byte length; fields left in the tuple.
    FieldLen(u16),
    /// Skipping a field's bytes; bytes left, then fields left.
    FieldData(u64, u16),
    /// The trailer was seen.
    Done,
    /// The stream is not binary COPY data.
    Invalid,
}

/// Counts tuples in a binary `COPY` stream fed in arbitrary chunks.
#[derive(Debug, Clone)]
pub(crate) struct CopyRowCounter {
    state: State,
    buf: Vec<u8>,
    rows: u64,
}

impl Default for CopyRowCounter {
    fn default() -> Self {
        CopyRowCounter {
            state: State::Header,
            buf: Vec::with_capacity(19),
            rows: 0,
        }
    }
}

impl CopyRowCounter {
    /// Tuples seen so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the trailer has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the data did not look like binary COPY.
    #[cfg(test)]
    pub(crate) fn is_invalid(&self) -> bool {
        self.state == State::Invalid
    }

    /// Feeds the next chunk.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Done | State::Invalid => return,
                State::Header => {
                    if !self.fill(&mut data, 19) {
                        return;
                    }
                    if &self.buf[..11] != SIGNATURE {
                        self.state = State::Invalid;
                        return;
                    }
                    let ext = u32::from_be_bytes([
                        self.buf[15],
                        self.buf[16],
                        self.buf[17],
                        self.buf[18],
                    ]);
                    self.buf.clear();
                    self.state = if ext == 0 {
                        State::FieldCount
                    } else {
                        State::Extension(u64::from(ext))
                    };
                }
                State::Extension(left) | State::FieldData(left, _) => {
                    let take = left.min(data.len() as u64);
                    data = &data[take as usize..];
                    let left = left - take;
                    self.state = match (self.state, left) {
                        (State::Extension(_), 0) => State::FieldCount,
                        (State::Extension(_), l) => State::Extension(l),
                        (State::FieldData(_, 0), 0) => State::FieldCount,
                        (State::FieldData(_, f), 0) => State::FieldLen(f),
                        (State::FieldData(_, f), l) => State::FieldData(l, f),
                        (s, _) => s,
                    };
                }
                State::FieldCount => {
                    if !self.fill(&mut data, 2) {
                        return;
                    }
                    let n = i16::from_be_bytes([self.buf[0], self.buf[1]]);
                    self.buf.clear();
                    self.state = match n {
                        -1 => State::Done,
                        0 => {
                            self.rows += 1;
                            State::FieldCount
                        }
                        n if n > 0 => {
                            self.rows += 1;
                            State::FieldLen(n as u16)
                        }
                        _ => State::Invalid,
                    };
                }
                State::FieldLen(fields) => {
                    if !self.fill(&mut data, 4) {
                        return;
                    }
                    let len =
                        i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    self.buf.clear();
                    let rest = fields - 1;
                    self.state = match len {
                        -1 | 0 if rest == 0 => State::FieldCount,
                        -1 | 0 => State::FieldLen(rest),
                        l if l > 0 => State::FieldData(l as u64, rest),
                        _ => State::Invalid,
                    };
                }
            }
        }
    }

    /// Moves bytes into `buf` until it holds `n`; true when it does.
    fn fill(&mut self, data: &mut &[u8], n: usize) -> bool {
        let take = (n - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        *data = &data[take..];
        self.buf.len() == n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary COPY of `rows` tuples (int8 id, text or NULL note) with a
    /// 3-byte header extension.
    fn stream(rows: u64) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0_u32.to_be_bytes());
        out.extend_from_slice(&3_u32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for i in 0..rows {
            out.extend_from_slice(&2_i16.to_be_bytes());
            out.extend_from_slice(&8_i32.to_be_bytes());
            out.extend_from_slice(&(i as i64).to_be_bytes());
            if i % 3 == 0 {
                out.extend_from_slice(&(-1_i32).to_be_bytes());
            } else {
                let note = format!("note {i}");
                out.extend_from_slice(&(note.len() as i32).to_be_bytes());
                out.extend_from_slice(note.as_bytes());
            }
        }
        out.extend_from_slice(&(-1_i16).to_be_bytes());
        out
    }

    #[test]
    fn counts_rows_whatever_the_chunking() {
        let data = stream(1000);
        for chunk in [1, 2, 3, 7, 64, 4096, data.len()] {
            let mut c = CopyRowCounter::default();
            for part in data.chunks(chunk) {
                c.feed(part);
            }
            assert_eq!(c.rows(), 1000, "chunk {chunk}");
            assert!(c.is_done());
        }
    }

    #[test]
    fn text_data_is_flagged_not_counted() {
        let mut c = CopyRowCounter::default();
        c.feed(b"1\thello\n2\tworld\n and some more text");
        assert!(c.is_invalid());
        assert_eq!(c.rows(), 0);
    }

    #[test]
    fn an_empty_table_has_zero_rows() {
        let mut c = CopyRowCounter::default();
        c.feed(&stream(0));
        assert!(c.is_done());
        assert_eq!(c.rows(), 0);
    }
}
