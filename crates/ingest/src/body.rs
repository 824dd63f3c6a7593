//! The request body on the wire: content type and encoding, reading it with
//! a size limit, and decompressing it with another.
//!
//! Reading stops as soon as the body passes `INGEST_MAX_BODY`, and
//! decompression as soon as the output passes `INGEST_MAX_DECODED_BODY`, so
//! neither a large upload nor a small gzip bomb can take the memory.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http_body_util::BodyExt;

use crate::budget::{Budget, Room};
use crate::error::ApiError;
use crate::parse::Format;

/// `Content-Encoding` of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped; raw deflate, which some clients
    /// send, is accepted too.
    Deflate,
}

/// The framing from `Content-Type`; none means JSON.
pub fn format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let value = value.to_str().map_err(|_| ApiError::UnsupportedMediaType)?;
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    for param in parts {
        if let Some((name, charset)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let charset = charset.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
    }
    match mime.as_str() {
        "application/json" | "text/json" => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Format::Ndjson),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(Format::Json),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// The `Content-Encoding`: none, `identity`, `gzip` (`x-gzip`) or `deflate`.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::CONTENT_ENCODING) {
            Err(ApiError::UnsupportedEncoding)
        } else {
            Ok(Encoding::Identity)
        };
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding)?
        .trim()
        .to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        _ => Err(ApiError::UnsupportedEncoding),
    }
}

/// `Content-Length`, when given and numeric.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the whole body, refusing it once it passes `limit` bytes, with its
/// bytes' room taken from `budget` into `room` first: all of a known length
/// at once (waiting), frame by frame otherwise (`Err(None)`: no room now).
/// A compressed body is inflated as it arrives, keeping only the count: one
/// over `max_decoded` is refused at once, before the rest of it is read (a
/// gzip bomb costs a few dozen KiB). Returns the body and, when compressed,
/// its inflated size (`None` when the stream is broken: decoding says so).
pub async fn read(
    mut body: Body,
    limit: usize,
    expected: Option<u64>,
    encoding: Encoding,
    max_decoded: usize,
    budget: &Budget,
    room: &mut Room,
) -> Result<(Vec<u8>, Option<u64>), Option<ApiError>> {
    let known = expected.map(|n| n.min(limit as u64) as usize);
    if let Some(n) = known {
        budget.wait(n, room).await;
    }
    let mut out = Vec::with_capacity(known.unwrap_or(8 * 1024));
    let mut held = known.unwrap_or(0);
    let mut inflater = Inflater::new(encoding);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::BodyRead)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Some(ApiError::BodyTooLarge { limit }));
            }
            let needed = out.len() + data.len();
            if needed > held {
                // Room for what is held, grown a little ahead of need.
                let more = (needed - held).max(64 * 1024);
                if !budget.try_take(more, room) {
                    return Err(None);
                }
                held += more;
            }
            // Only a compressed body is inflated; handing the worker over
            // for a plain one costs a thread switch per frame for nothing.
            if inflater.inflates()
                && inflate_off_the_workers(|| inflater.feed(&out, &data)) > max_decoded as u64
            {
                return Err(Some(ApiError::DecodedTooLarge { limit: max_decoded }));
            }
            out.extend_from_slice(&data);
        }
    }
    let size = inflater.finish(&out);
    if size.is_some_and(|n| n > max_decoded as u64) {
        return Err(Some(ApiError::DecodedTooLarge { limit: max_decoded }));
    }
    Ok((out, size))
}

/// Runs CPU work (inflating a frame: a gzip bomb's 64 KiB are 64 MiB out)
/// so that the runtime's other tasks, `/healthz` among them, move to another
/// thread meanwhile; inline on a single-threaded runtime, which cannot.
fn inflate_off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Inflates a compressed body as it arrives, counting the output.
enum Inflater {
    None,
    /// Not yet known whether `deflate` is zlib-wrapped (two bytes needed).
    Undecided,
    Gzip(Box<flate2::write::MultiGzDecoder<CountingSink>>),
    Zlib(Box<flate2::write::ZlibDecoder<CountingSink>>),
    Raw(Box<flate2::write::DeflateDecoder<CountingSink>>),
    Broken,
}

impl Inflater {
    fn new(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Identity => Inflater::None,
            Encoding::Gzip => Inflater::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                CountingSink(0),
            ))),
            Encoding::Deflate => Inflater::Undecided,
        }
    }

    /// Whether there is anything to inflate (a compressed, unbroken body).
    fn inflates(&self) -> bool {
        !matches!(self, Inflater::None | Inflater::Broken)
    }

    /// Feeds `data`, which follows `before`; returns the count so far.
    fn feed(&mut self, before: &[u8], data: &[u8]) -> u64 {
        use std::io::Write;
        if let Inflater::Undecided = self {
            let mut head = before.to_vec();
            head.extend_from_slice(&data[..data.len().min(2)]);
            if head.len() < 2 {
                return 0;
            }
            let mut decided = if is_zlib(&head) {
                Inflater::Zlib(Box::new(flate2::write::ZlibDecoder::new(CountingSink(0))))
            } else {
                Inflater::Raw(Box::new(flate2::write::DeflateDecoder::new(CountingSink(
                    0,
                ))))
            };
            decided.feed(&[], before);
            *self = decided;
        }
        let result = match self {
            Inflater::Gzip(d) => d.write_all(data).map(|()| d.get_ref().0),
            Inflater::Zlib(d) => d.write_all(data).map(|()| d.get_ref().0),
            Inflater::Raw(d) => d.write_all(data).map(|()| d.get_ref().0),
            Inflater::None | Inflater::Undecided | Inflater::Broken => return 0,
        };
        result.unwrap_or_else(|_| {
            *self = Inflater::Broken;
            0
        })
    }

    /// The whole inflated size; `None` when not compressed or broken.
    fn finish(self, body: &[u8]) -> Option<u64> {
        let mut this = self;
        if let Inflater::Undecided = this {
            // A body of fewer than two bytes.
            this = Inflater::Raw(Box::new(flate2::write::DeflateDecoder::new(CountingSink(
                0,
            ))));
            this.feed(&[], body);
        }
        match this {
            Inflater::Gzip(d) => d.finish().ok().map(|s| s.0),
            Inflater::Zlib(d) => d.finish().ok().map(|s| s.0),
            Inflater::Raw(d) => d.finish().ok().map(|s| s.0),
            Inflater::None | Inflater::Undecided | Inflater::Broken => None,
        }
    }
}

/// Decompresses `raw` as [`decode`] does, with the output's room taken from
/// `budget` before it is allocated: a first pass only measures it, so a body
/// over `limit` is refused having allocated nothing (`Err(None)`: no room
/// now). CPU work: call it off the async threads.
pub fn decode_within(
    raw: Vec<u8>,
    encoding: Encoding,
    limit: usize,
    known_size: Option<u64>,
    budget: &Budget,
    room: &mut Room,
) -> Result<Vec<u8>, Option<ApiError>> {
    if encoding == Encoding::Identity {
        return Ok(decode(raw, encoding, limit)?);
    }
    let size = if let Some(size) = known_size {
        size
    } else {
        let mut counted = CountingSink(0);
        let (reader, name) = reader(&raw, encoding);
        std::io::copy(&mut reader.take(limit as u64 + 1), &mut counted)
            .map_err(|_| ApiError::BrokenEncoding(name))?;
        counted.0
    };
    if size > limit as u64 {
        return Err(Some(ApiError::DecodedTooLarge { limit }));
    }
    if !budget.try_take(size as usize, room) {
        return Err(None);
    }
    let (reader, name) = reader(&raw, encoding);
    let mut out = Vec::with_capacity(size as usize);
    reader
        .take(size)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::BrokenEncoding(name))?;
    Ok(out)
}

/// Counts what is written to it and keeps nothing.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The decompressing reader for a compressed `encoding`, and its name.
fn reader(raw: &[u8], encoding: Encoding) -> (Box<dyn Read + '_>, &'static str) {
    match encoding {
        Encoding::Gzip => (Box::new(MultiGzDecoder::new(raw)), "gzip"),
        Encoding::Deflate if is_zlib(raw) => (Box::new(ZlibDecoder::new(raw)), "deflate"),
        Encoding::Deflate | Encoding::Identity => (Box::new(DeflateDecoder::new(raw)), "deflate"),
    }
}

/// Decompresses `raw` (CPU work: call it off the async threads).
pub fn decode(raw: Vec<u8>, encoding: Encoding, limit: usize) -> Result<Vec<u8>, ApiError> {
    match encoding {
        Encoding::Identity if raw.len() > limit => Err(ApiError::DecodedTooLarge { limit }),
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => inflate(MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        Encoding::Deflate if is_zlib(&raw) => inflate(ZlibDecoder::new(&raw[..]), limit, "deflate"),
        Encoding::Deflate => inflate(DeflateDecoder::new(&raw[..]), limit, "deflate"),
    }
}

/// A zlib header: deflate method, a window of at most 32 KiB, and a check
/// value that makes the first two bytes a multiple of 31.
fn is_zlib(raw: &[u8]) -> bool {
    match raw {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

fn inflate(reader: impl Read, limit: usize, name: &'static str) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::BrokenEncoding(name))?;
    if out.len() > limit {
        return Err(ApiError::DecodedTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_types() {
        let ct = |v: &str| format(&headers(&[(header::CONTENT_TYPE, v)]));
        assert_eq!(format(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(ct("application/json").unwrap(), Format::Json);
        assert_eq!(ct("Application/JSON; charset=UTF-8").unwrap(), Format::Json);
        assert_eq!(ct("application/vnd.tune+json").unwrap(), Format::Json);
        assert_eq!(ct("application/x-ndjson").unwrap(), Format::Ndjson);
        assert_eq!(ct("application/jsonl").unwrap(), Format::Ndjson);
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin1",
            "multipart/form-data",
        ] {
            assert!(ct(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_encodings() {
        let ce = |v: &[&str]| {
            encoding(&headers(
                &v.iter()
                    .map(|v| (header::CONTENT_ENCODING, *v))
                    .collect::<Vec<_>>(),
            ))
        };
        assert_eq!(ce(&[]).unwrap(), Encoding::Identity);
        assert_eq!(ce(&["identity"]).unwrap(), Encoding::Identity);
        assert_eq!(ce(&["GZIP"]).unwrap(), Encoding::Gzip);
        assert_eq!(ce(&["x-gzip"]).unwrap(), Encoding::Gzip);
        assert_eq!(ce(&["deflate"]).unwrap(), Encoding::Deflate);
        for bad in [
            &["br"][..],
            &["zstd"],
            &["gzip, deflate"],
            &["gzip", "gzip"],
        ] {
            assert!(ce(bad).is_err(), "{bad:?}");
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decompression_and_its_limits() {
        let json = br#"[{"a": 1}]"#.to_vec();
        assert_eq!(decode(gzip(&json), Encoding::Gzip, 100).unwrap(), json);
        // Two gzip members, as some clients write them.
        let mut two = gzip(b"[{\"a\": 1}");
        two.extend(gzip(b", {\"b\": 2}]"));
        assert_eq!(
            decode(two, Encoding::Gzip, 100).unwrap(),
            b"[{\"a\": 1}, {\"b\": 2}]"
        );
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&json).unwrap();
        assert_eq!(
            decode(z.finish().unwrap(), Encoding::Deflate, 100).unwrap(),
            json
        );
        let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(&json).unwrap();
        assert_eq!(
            decode(d.finish().unwrap(), Encoding::Deflate, 100).unwrap(),
            json
        );

        let mut broken = gzip(&json);
        broken.truncate(broken.len() - 6);
        assert!(matches!(
            decode(broken, Encoding::Gzip, 100),
            Err(ApiError::BrokenEncoding("gzip"))
        ));
        assert!(matches!(
            decode(b"not gzip at all".to_vec(), Encoding::Gzip, 100),
            Err(ApiError::BrokenEncoding("gzip"))
        ));
        assert!(matches!(
            decode(b"\xff\xff\xff".to_vec(), Encoding::Deflate, 100),
            Err(ApiError::BrokenEncoding("deflate"))
        ));
        // A bomb: 10 MB of zeros in a few KB.
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decode(bomb, Encoding::Gzip, 1_000_000),
            Err(ApiError::DecodedTooLarge { limit: 1_000_000 })
        ));
        assert!(matches!(
            decode(vec![b' '; 101], Encoding::Identity, 100),
            Err(ApiError::DecodedTooLarge { limit: 100 })
        ));
    }
}
