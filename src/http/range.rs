//! Single byte ranges of a response body (RFC 9110 §14): `Range: bytes=FIRST-LAST`,
//! `bytes=FIRST-` and `bytes=-SUFFIX`.
//!
//! Only one range is served. A header that does not parse, names another unit or several
//! ranges is ignored (the whole body is sent with 200, as RFC 9110 allows); a range that
//! starts at or beyond the end is unsatisfiable (416 with `Content-Range: bytes */SIZE`).

/// What a `Range` header asks of a body of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Send the whole body (no header, or one this server ignores).
    Whole,
    /// Send `len` bytes from `start` (206).
    Part {
        /// First byte.
        start: u64,
        /// Byte count, at least 1.
        len: u64,
    },
    /// Nothing of the body is in the range (416).
    Unsatisfiable,
}

impl ByteRange {
    /// Interprets a `Range` header value for a body of `size` bytes.
    pub fn parse(header: Option<&str>, size: u64) -> ByteRange {
        let Some(spec) = header.map(str::trim) else {
            return ByteRange::Whole;
        };
        let Some((unit, set)) = spec.split_once('=') else {
            return ByteRange::Whole;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
            return ByteRange::Whole;
        }
        let Some((first, last)) = set.trim().split_once('-') else {
            return ByteRange::Whole;
        };
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (first.trim().is_empty(), number(first), number(last)) {
            // bytes=-N: the last N bytes.
            (true, _, Some(suffix)) => {
                if suffix == 0 || size == 0 {
                    ByteRange::Unsatisfiable
                } else {
                    let len = suffix.min(size);
                    ByteRange::Part {
                        start: size - len,
                        len,
                    }
                }
            }
            (false, Some(start), end) => {
                if !last.trim().is_empty() && end.is_none() {
                    return ByteRange::Whole; // bytes=5-x
                }
                if end.is_some_and(|e| e < start) {
                    return ByteRange::Whole; // invalid: ignored
                }
                if start >= size {
                    return ByteRange::Unsatisfiable;
                }
                let last = end.map_or(size - 1, |e| e.min(size - 1));
                ByteRange::Part {
                    start,
                    len: last - start + 1,
                }
            }
            _ => ByteRange::Whole,
        }
    }

    /// The `Content-Range` value of a 206 or 416 answer for a body of `size` bytes.
    pub fn content_range(self, size: u64) -> String {
        match self {
            ByteRange::Part { start, len } => {
                format!("bytes {start}-{}/{size}", start + len - 1)
            }
            _ => format!("bytes */{size}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, Part, Unsatisfiable, Whole};

    fn p(h: &str, size: u64) -> ByteRange {
        ByteRange::parse(Some(h), size)
    }

    #[test]
    fn forms() {
        assert_eq!(ByteRange::parse(None, 10), Whole);
        assert_eq!(p("bytes=0-3", 10), Part { start: 0, len: 4 });
        assert_eq!(p("bytes=2-", 10), Part { start: 2, len: 8 });
        assert_eq!(p("bytes=-3", 10), Part { start: 7, len: 3 });
        assert_eq!(p("bytes=-30", 10), Part { start: 0, len: 10 });
        assert_eq!(p("bytes=5-100", 10), Part { start: 5, len: 5 });
        assert_eq!(p(" Bytes = 9 - 9 ", 10), Part { start: 9, len: 1 });
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(p("bytes=10-", 10), Unsatisfiable);
        assert_eq!(p("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(p("bytes=-0", 10), Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Unsatisfiable);
        assert_eq!(p("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn ignored() {
        for h in [
            "",
            "bytes",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=x-1",
            "bytes=1-x",
            "bytes=5-2",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(p(h, 10), Whole, "{h}");
        }
    }

    #[test]
    fn content_range() {
        assert_eq!(Part { start: 2, len: 3 }.content_range(10), "bytes 2-4/10");
        assert_eq!(Unsatisfiable.content_range(10), "bytes */10");
    }
}
