//! The client's common case, decided without Python types: the checks `scheduler.client.ClientCore.build` makes
//! of an id, a due time, a partition and the sizes, answered "accept" or "let Python decide". Python decides
//! (and raises with its message) for everything this does not accept, so the two can only differ in speed.

/// The scheduler refuses longer record keys (UTF-8 bytes).
pub const MAX_ID_BYTES: usize = 255;
/// A Kafka partition number is an int32; the envelope carries an Avro int.
pub const MAX_PARTITION: i64 = i32::MAX as i64;
const MS_PER_DAY: i64 = 86_400_000;

/// When a schedule is due: `at=` epoch ms, or `delay=` in whole milliseconds (a timedelta floored to ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(i64),
    DelayMs(i64),
}

/// A non-empty id of at most MAX_ID_BYTES UTF-8 bytes.
pub fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

pub fn partition_ok(partition: i64) -> bool {
    (0..=MAX_PARTITION).contains(&partition)
}

/// `timedelta(days, seconds, microseconds) // timedelta(milliseconds=1)`, None on overflow.
pub fn delay_ms(days: i64, seconds: i64, micros: i64) -> Option<i64> {
    days.checked_mul(MS_PER_DAY)?
        .checked_add(seconds.checked_mul(1000)?)?
        .checked_add(micros.div_euclid(1000))
}

/// The due time in epoch ms when it is in [0, now + horizon], as build computes it; None otherwise (Python then
/// raises InvalidDeliverAt with the reason).
pub fn due_ms(when: When, now: i64, horizon_ms: i64) -> Option<i64> {
    match when {
        When::At(at) => (0 <= at && at <= now.checked_add(horizon_ms)?).then_some(at),
        When::DelayMs(ms) => {
            if (0..=horizon_ms).contains(&ms) {
                now.checked_add(ms).filter(|due| *due >= 0)
            } else {
                None
            }
        }
    }
}

/// The size build compares with max_payload_bytes: payload, key, and per header its name in characters (Python's
/// `len(str)`) plus its value in bytes.
pub fn payload_size(
    payload: Option<&[u8]>,
    key: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> usize {
    let mut size = payload.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
    for (name, value) in headers {
        size += name.chars().count() + value.map_or(0, <[u8]>::len);
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_and_at_most_255_utf8_bytes() {
        assert!(!id_ok(""));
        assert!(id_ok("x"));
        assert!(id_ok(&"x".repeat(255)));
        assert!(!id_ok(&"x".repeat(256)));
        assert!(id_ok(&format!("{}x", "é".repeat(127))));
        assert!(!id_ok(&"é".repeat(128)));
    }

    #[test]
    fn partitions_are_int32_and_not_negative() {
        assert!(partition_ok(0));
        assert!(partition_ok(i32::MAX as i64));
        assert!(!partition_ok(i32::MAX as i64 + 1));
        assert!(!partition_ok(-1));
    }

    #[test]
    fn delays_floor_to_milliseconds_like_python() {
        assert_eq!(delay_ms(0, 0, 0), Some(0));
        assert_eq!(delay_ms(0, 0, 999), Some(0));
        assert_eq!(delay_ms(0, 1, 1500), Some(1001));
        assert_eq!(delay_ms(2, 3, 4000), Some(2 * MS_PER_DAY + 3004));
        // timedelta(microseconds=-1) is days=-1, seconds=86399, microseconds=999999: floors to -1 ms
        assert_eq!(delay_ms(-1, 86_399, 999_999), Some(-1));
        assert_eq!(delay_ms(i64::MAX, 0, 0), None);
    }

    #[test]
    fn due_times_outside_zero_to_horizon_are_left_to_python() {
        let (now, horizon) = (1_000, 500);
        assert_eq!(due_ms(When::At(0), now, horizon), Some(0));
        assert_eq!(due_ms(When::At(1_500), now, horizon), Some(1_500));
        assert_eq!(due_ms(When::At(1_501), now, horizon), None);
        assert_eq!(due_ms(When::At(-1), now, horizon), None);
        assert_eq!(due_ms(When::DelayMs(0), now, horizon), Some(1_000));
        assert_eq!(due_ms(When::DelayMs(500), now, horizon), Some(1_500));
        assert_eq!(due_ms(When::DelayMs(501), now, horizon), None);
        assert_eq!(due_ms(When::DelayMs(-1), now, horizon), None);
        assert_eq!(due_ms(When::At(i64::MAX), i64::MAX, 1), None);
    }

    #[test]
    fn sizes_count_header_names_in_characters() {
        assert_eq!(payload_size(None, None, &[]), 0);
        assert_eq!(payload_size(Some(b"abc"), Some(b"k"), &[]), 4);
        assert_eq!(
            payload_size(Some(b"abc"), None, &[("é", Some(b"xy")), ("h", None)]),
            3 + 1 + 2 + 1
        );
    }
}
