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

/// Reads the whole body, refusing it once it passes `limit` bytes.
pub async fn read(
    mut body: Body,
    limit: usize,
    expected: Option<u64>,
) -> Result<Vec<u8>, ApiError> {
    let capacity = expected.map_or(8 * 1024, |n| n.min(limit as u64) as usize);
    let mut out = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::BodyRead)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
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
