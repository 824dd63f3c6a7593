//! `user_logins` through `COPY … FROM STDIN (FORMAT binary)`.
//!
//! Binary COPY skips what an `INSERT … SELECT FROM UNNEST` pays for: no
//! arrays to build and take apart, no plan, no text parsing of integers or
//! dates; it was the fastest bare load measured (ARCHITECTURE.md, "Measured
//! choices"). `user_logins` has no key, so a plain COPY is safe: rows of a
//! redelivered message never get here, because its receipt, inserted first
//! in the same transaction, already exists.
//!
//! Rows are encoded into one buffer that is handed to the server every
//! `SEND_BYTES`, so a batch of any size costs a few hundred KiB here.
//!
//! Format (PostgreSQL docs, COPY, "Binary Format"): the signature
//! `PGCOPY\n\377\r\n\0`, an i32 flags field and an i32 header-extension
//! length; per tuple an i16 field count and per field an i32 byte length
//! (-1 for NULL) and the value in the type's binary send format; a -1 i16
//! trailer. Each value must be exactly the column's type: `varchar` takes
//! UTF-8 bytes (the column's length limit is still checked, 22001 as for an
//! INSERT), `integer` a big-endian i32, `date` an i32 count of days since
//! 2000-01-01.

use chrono::NaiveDate;
use sqlx::postgres::PgConnection;

use super::{SinkError, classify};
use crate::records::LoginRow;

/// Bytes gathered before they go to the server as one `CopyData` message:
/// large enough that per-message costs vanish, small enough to stay a
/// rounding error in the writer's memory.
const SEND_BYTES: usize = 256 * 1024;

const CONTEXT: &str = "inserting user_logins";

/// Columns named, so a `user_logins` created by someone else with the same
/// columns in any order works as well.
const STATEMENT: &str = "COPY user_logins \
     (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date) \
     FROM STDIN (FORMAT binary)";

/// Copies `rows` into `user_logins` with `create_date` = `written_on`, on
/// `conn` (inside the caller's transaction, if any). Returns the rows
/// written. Public so the benchmark's bare COPY load measures this encoder.
pub async fn copy_logins<'a>(
    conn: &mut PgConnection,
    rows: impl IntoIterator<Item = &'a LoginRow>,
    written_on: NaiveDate,
) -> Result<u64, SinkError> {
    let date = days_since_2000(written_on)?;
    let mut copy = conn
        .copy_in_raw(STATEMENT)
        .await
        .map_err(|e| classify(CONTEXT, e))?;
    let mut tuples = Tuples::new();
    for row in rows {
        if let Err(e) = tuples.login(row, date) {
            // The server discards what it got; a failure to abort leaves a
            // connection the pool will not reuse, so the first error stands.
            let _ = copy.abort("sluice: a row could not be encoded").await;
            return Err(e);
        }
        if tuples.buf.len() >= SEND_BYTES {
            copy.send(tuples.buf.as_slice())
                .await
                .map_err(|e| classify(CONTEXT, e))?;
            tuples.buf.clear();
        }
    }
    tuples.trailer();
    copy.send(tuples.buf.as_slice())
        .await
        .map_err(|e| classify(CONTEXT, e))?;
    copy.finish().await.map_err(|e| classify(CONTEXT, e))
}

/// PostgreSQL's binary `date`: days since 2000-01-01.
fn days_since_2000(date: NaiveDate) -> Result<i32, SinkError> {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    i32::try_from((date - epoch).num_days())
        .map_err(|_| SinkError::Permanent(format!("{CONTEXT}: create_date out of range")))
}

/// Binary COPY data being built: header first, then tuples.
struct Tuples {
    buf: Vec<u8>,
}

impl Tuples {
    fn new() -> Self {
        let mut buf = Vec::with_capacity(SEND_BYTES + 4096);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self { buf }
    }

    fn login(&mut self, row: &LoginRow, date: i32) -> Result<(), SinkError> {
        self.buf.extend_from_slice(&7i16.to_be_bytes());
        self.text(Some(&row.user_id))?;
        self.text(row.device_type.as_deref())?;
        self.text(row.masked_ip.as_deref())?;
        self.text(row.masked_device_id.as_deref())?;
        self.text(row.locale.as_deref())?;
        self.int4(row.app_version);
        self.int4(Some(date));
        Ok(())
    }

    fn text(&mut self, value: Option<&str>) -> Result<(), SinkError> {
        let Some(value) = value else {
            self.null();
            return Ok(());
        };
        // PostgreSQL refuses any value over 1 GiB anyway; never the value
        // in the error.
        let len = i32::try_from(value.len())
            .map_err(|_| SinkError::Permanent(format!("{CONTEXT}: a value is over 2 GiB")))?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn int4(&mut self, value: Option<i32>) {
        match value {
            Some(v) => {
                self.buf.extend_from_slice(&4i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            None => self.null(),
        }
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn trailer(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tuple_and_trailer() {
        let mut t = Tuples::new();
        let row = LoginRow {
            user_id: "u1".into(),
            device_type: None,
            masked_ip: Some("ip".into()),
            masked_device_id: None,
            locale: Some("".into()),
            app_version: Some(-2),
        };
        t.login(&row, 1).unwrap();
        t.trailer();
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 7]);
        want.extend_from_slice(&[0, 0, 0, 2, b'u', b'1']);
        want.extend_from_slice(&[0xff; 4]);
        want.extend_from_slice(&[0, 0, 0, 2, b'i', b'p']);
        want.extend_from_slice(&[0xff; 4]);
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 1]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(t.buf, want);
    }

    #[test]
    fn dates_count_days_from_2000() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(days_since_2000(day(2000, 1, 1)).unwrap(), 0);
        assert_eq!(days_since_2000(day(2000, 1, 2)).unwrap(), 1);
        assert_eq!(days_since_2000(day(1999, 12, 31)).unwrap(), -1);
        assert_eq!(days_since_2000(day(2024, 5, 17)).unwrap(), 8903);
    }
}
