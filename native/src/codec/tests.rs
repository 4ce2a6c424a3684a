//! The codec core: round trips, the exact layout, and every malformed case with its error kind.

use super::*;

const FP: [u8; 8] = COMMAND_FINGERPRINT;
const SFP: [u8; 8] = STATE_FINGERPRINT;

fn sample() -> Schedule<'static> {
    Schedule {
        id: "reservation-42 ✓",
        target_topic: "orders.expired",
        due_ms: 1_767_225_600_000,
        payload: Some(b"payload"),
        target_key: Some(b"k"),
        headers: vec![("h", Some(b"v")), ("", None)],
        target_partition: Some(3),
        created_ms: 1_767_000_000_000,
        producer: Some("svc"),
        recurrence: None,
    }
}

fn every_field_recurrence() -> Recurrence<'static> {
    Recurrence {
        cron: Some("0 2 * * *"),
        every_ms: Some(60_000),
        after_ms: Some(-1),
        timezone: "Europe/Paris",
        starts_at: Some(1_767_225_600_000),
        ends_at: Some(i64::MAX),
        max_runs: Some(3),
        missed: "all",
        overlap: "buffer_one",
        catch_up_ms: Some(86_400_000),
        paused: true,
        occurrence_ms: 1_767_232_800_000,
        runs: 2,
        skipped: i64::MIN,
        running_ms: Some(1_767_146_400_000),
        buffered_ms: Some(0),
    }
}

fn default_recurrence() -> Recurrence<'static> {
    Recurrence {
        cron: None,
        every_ms: Some(1000),
        after_ms: None,
        timezone: "UTC",
        starts_at: None,
        ends_at: None,
        max_runs: None,
        missed: "latest",
        overlap: "allow",
        catch_up_ms: None,
        paused: false,
        occurrence_ms: 0,
        runs: 0,
        skipped: 0,
        running_ms: None,
        buffered_ms: None,
    }
}

fn recurring() -> Schedule<'static> {
    Schedule {
        recurrence: Some(every_field_recurrence()),
        ..sample()
    }
}

fn bare() -> Schedule<'static> {
    Schedule {
        id: "a",
        target_topic: "t",
        due_ms: 5,
        payload: None,
        target_key: None,
        headers: vec![],
        target_partition: None,
        created_ms: 0,
        producer: None,
        recurrence: None,
    }
}

#[test]
fn fingerprints_match_the_spec_vector_and_the_schema_files() {
    // The Avro spec: the fingerprint of "null" is 7195948357588979594.
    assert_eq!(
        u64::from_le_bytes(fingerprint(b"\"null\"")),
        7_195_948_357_588_979_594
    );
    // What fastavro computes from schemas/*.avsc (the Python tests check the canonical forms themselves).
    assert_eq!(hex(&COMMAND_FINGERPRINT), "e34bde8d4f2a8a0f");
    assert_eq!(hex(&STATE_FINGERPRINT), "503a45515f3a4427");
    assert!(check_fingerprints(&COMMAND_FINGERPRINT, &STATE_FINGERPRINT).is_ok());
    let stale = check_fingerprints(&[0; 8], &STATE_FINGERPRINT).unwrap_err();
    assert!(
        stale.contains("schemas/command.avsc") && stale.contains("e34bde8d4f2a8a0f"),
        "{stale}"
    );
}

#[test]
fn schedule_round_trips_through_the_envelope() {
    let plain_recurring = Schedule {
        recurrence: Some(default_recurrence()),
        ..bare()
    };
    for s in [sample(), bare(), recurring(), plain_recurring] {
        assert_eq!(
            decode_command(&encode_schedule(&s, &FP), &FP).unwrap(),
            Command::Schedule(s)
        );
    }
}

#[test]
fn cancel_round_trips() {
    let value = encode_cancel("x-1", &FP);
    assert_eq!(value[HEADER_LEN..], [2, 6, b'x', b'-', b'1']);
    assert_eq!(decode_command(&value, &FP).unwrap(), Command::Cancel("x-1"));
}

#[test]
fn control_commands_round_trip_on_their_branches() {
    let done = Command::Done {
        id: "job",
        fire_id: "job@7/1767232800000",
        finished_ms: 1_767_232_801_234,
    };
    let backfill = Command::Backfill {
        id: "job",
        from_ms: -5,
        to_ms: i64::MAX,
    };
    for (command, branch) in [
        (Command::Cancel("job"), 2),
        (Command::Pause("job"), 4),
        (Command::Resume("job"), 6),
        (done, 8),
        (backfill, 10),
    ] {
        let value = encode_control(&command, &FP);
        assert_eq!(value[HEADER_LEN], branch, "{command:?}");
        assert_eq!(decode_command(&value, &FP).unwrap(), command);
    }
    assert_eq!(
        encode_control(&Command::Pause("a"), &FP)[HEADER_LEN..],
        [4, 2, b'a']
    );
}

#[test]
fn state_round_trips_and_peeks() {
    let cases = [
        (sample(), 0),
        (bare(), i64::MAX),
        (bare(), 1 << 40),
        (recurring(), 9),
    ];
    for (s, version) in cases {
        let value = encode_state(&s, version, &SFP);
        assert_eq!(peek_due_ms(&value).unwrap(), s.due_ms);
        assert_eq!(decode_state(&value, &SFP).unwrap(), (s, version));
    }
}

#[test]
fn longs_at_the_edges_round_trip() {
    for due in [0, -1, 1, 63, 64, -65, i64::MAX, i64::MIN, 1 << 35, 1 << 42] {
        let s = Schedule {
            due_ms: due,
            created_ms: !due,
            target_partition: Some(i32::MIN),
            ..bare()
        };
        let value = encode_state(&s, due, &SFP);
        assert_eq!(peek_due_ms(&value).unwrap(), due);
        assert_eq!(decode_state(&value, &SFP).unwrap(), (s, due));
    }
}

#[test]
fn the_bare_state_layout_is_plain_avro() {
    let value = encode_state(&bare(), 1, &SFP);
    // due 5, version 1, "a", "t", null key, null partition, null payload, no headers, created 0, null producer
    assert_eq!(
        value[HEADER_LEN..],
        [10, 2, 2, b'a', 2, b't', 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn the_recurrence_layout_is_plain_avro() {
    let s = Schedule {
        recurrence: Some(default_recurrence()),
        ..bare()
    };
    let value = encode_state(&s, 1, &SFP);
    // ... null producer, then branch 1: null cron, every 1000 (zigzag 2000 = d0 0f), null after, "UTC", null
    // starts/ends/max_runs, "latest", "allow", null catch_up, false, 0, 0, 0, null running, null buffered
    let mut expected = vec![10, 2, 2, b'a', 2, b't', 0, 0, 0, 0, 0, 0, 2];
    expected.extend_from_slice(&[0, 2, 0xd0, 0x0f, 0, 6, b'U', b'T', b'C', 0, 0, 0]);
    expected.extend_from_slice(b"\x0clatest\x0aallow");
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(value[HEADER_LEN..], expected[..]);
}

fn kind<T: fmt::Debug>(r: Result<T, DecodeError>) -> ErrorKind {
    r.unwrap_err().kind
}

#[test]
fn every_malformed_command_has_its_error() {
    let good = encode_schedule(&sample(), &FP);
    let head = &good[..HEADER_LEN];
    let with = |body: &[u8]| [head, body].concat();
    assert_eq!(kind(decode_command(b"", &FP)), ErrorKind::NotSingleObject);
    assert_eq!(
        kind(decode_command(b"\xc3\x01\x00", &FP)),
        ErrorKind::NotSingleObject
    );
    assert_eq!(
        kind(decode_command(&good[..9], &FP)),
        ErrorKind::NotSingleObject
    );
    assert_eq!(
        kind(decode_command(&[&[0xc3, 0x02], &good[2..]].concat(), &FP)),
        ErrorKind::NotSingleObject
    );
    assert_eq!(
        kind(decode_command(&encode_schedule(&sample(), &[0; 8]), &FP)),
        ErrorKind::UnknownFingerprint
    );
    assert_eq!(kind(decode_command(head, &FP)), ErrorKind::Truncated);
    for cut in HEADER_LEN..good.len() {
        assert!(decode_command(&good[..cut], &FP).is_err(), "cut at {cut}");
    }
    assert_eq!(
        kind(decode_command(&[&good[..], b"\x00"].concat(), &FP)),
        ErrorKind::TrailingBytes
    );
    assert_eq!(
        kind(decode_command(&with(b"\x0c"), &FP)),
        ErrorKind::BadUnion
    );
    assert_eq!(
        kind(decode_command(&with(b"\x01"), &FP)),
        ErrorKind::BadUnion
    );
    assert_eq!(
        kind(decode_command(&with(b"\x02\x03ab"), &FP)),
        ErrorKind::NegativeLength
    );
    assert_eq!(
        kind(decode_command(&with(b"\x02\x0aab"), &FP)),
        ErrorKind::LengthPastEnd
    );
    assert_eq!(
        kind(decode_command(&with(b"\x02\x02\xff"), &FP)),
        ErrorKind::InvalidUtf8
    );
    assert_eq!(
        kind(decode_command(&with(&[0xff; 11]), &FP)),
        ErrorKind::VarintTooLong
    );
    let mut overflow = vec![0xff; 9];
    overflow.push(0x02); // a tenth byte above 1 does not fit 64 bits
    assert_eq!(
        kind(decode_command(&with(&overflow), &FP)),
        ErrorKind::VarintTooLong
    );
    assert_eq!(
        kind(decode_command(&with(&[0xff; 40]), &FP)),
        ErrorKind::VarintTooLong
    );
    // target_partition is an int: 2^31 is out of range
    let mut big = with(b"\x00\x02a\x02t\x00\x02");
    put_long(&mut big, 1 << 31);
    big.extend_from_slice(b"\x00\x00\x0a\x00\x00");
    assert_eq!(kind(decode_command(&big, &FP)), ErrorKind::IntOutOfRange);
}

#[test]
fn a_recurrence_boolean_is_zero_or_one() {
    let s = Schedule {
        recurrence: Some(default_recurrence()),
        ..bare()
    };
    let good = encode_state(&s, 1, &SFP);
    let paused_at = good.len() - 6; // paused, occurrence, runs, skipped, running, buffered: one byte each
    assert_eq!(good[paused_at], 0);
    let mut bad = good.clone();
    bad[paused_at] = 2;
    assert_eq!(kind(decode_state(&bad, &SFP)), ErrorKind::BadBoolean);
    assert!(ErrorKind::BadBoolean.stricter_than_fastavro());
    bad[paused_at] = 1;
    let paused = decode_state(&bad, &SFP).unwrap().0.recurrence.unwrap();
    assert!(paused.paused);
    for cut in HEADER_LEN..good.len() {
        assert!(decode_state(&good[..cut], &SFP).is_err(), "cut at {cut}");
    }
}

#[test]
fn every_malformed_state_record_has_its_error() {
    let good = encode_state(&sample(), 7, &SFP);
    assert_eq!(kind(decode_state(b"xx", &SFP)), ErrorKind::NotSingleObject);
    assert_eq!(
        kind(decode_state(&good, &FP)),
        ErrorKind::UnknownFingerprint
    );
    assert_eq!(
        kind(decode_state(&encode_schedule(&sample(), &FP), &SFP)),
        ErrorKind::UnknownFingerprint
    );
    assert_eq!(
        kind(decode_state(&[&good[..], b"\x00"].concat(), &SFP)),
        ErrorKind::TrailingBytes
    );
    for cut in HEADER_LEN..good.len() {
        assert!(decode_state(&good[..cut], &SFP).is_err(), "cut at {cut}");
    }
    assert_eq!(kind(peek_due_ms(b"")), ErrorKind::NotSingleObject);
    assert_eq!(
        kind(peek_due_ms(b"xx\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
        ErrorKind::NotSingleObject
    );
    assert_eq!(kind(peek_due_ms(&good[..HEADER_LEN])), ErrorKind::Truncated);
    assert_eq!(kind(peek_due_ms(&good[..5])), ErrorKind::Truncated);
    assert_eq!(
        kind(peek_due_ms(&[&good[..HEADER_LEN], b"\xff"].concat())),
        ErrorKind::Truncated
    );
}

#[test]
fn blocked_arrays_and_padded_unions_are_legal_avro() {
    let s = Schedule {
        headers: vec![("h", Some(b"v"))],
        ..bare()
    };
    let plain = encode_state(&s, 1, &SFP);
    let one_block: &[u8] = b"\x02\x02h\x02\x02v\x00";
    let at = plain
        .windows(one_block.len())
        .position(|w| w == one_block)
        .unwrap();
    let item = &one_block[1..one_block.len() - 1];
    let mut blocked = plain[..at].to_vec();
    blocked.push(0x01); // count -1: a block with its byte size first
    put_long(&mut blocked, item.len() as i64);
    blocked.extend_from_slice(item);
    blocked.extend_from_slice(&plain[at + one_block.len() - 1..]);
    assert_eq!(decode_state(&blocked, &SFP).unwrap(), (s.clone(), 1));
    // target_key's null branch written as a two-byte varint
    let bare_state = encode_state(&bare(), 1, &SFP);
    let key_at = HEADER_LEN + 2 + 2 + 2;
    let padded = [
        &bare_state[..key_at],
        b"\x80\x00",
        &bare_state[key_at + 1..],
    ]
    .concat();
    assert_eq!(decode_state(&padded, &SFP).unwrap(), (bare(), 1));
}

#[test]
fn garbage_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let good = encode_schedule(&recurring(), &FP);
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut value = good.clone();
        let i = HEADER_LEN + (seed as usize >> 8) % (good.len() - HEADER_LEN);
        value[i] ^= (seed as u8) | 1;
        value.truncate(HEADER_LEN + (seed as usize >> 24) % (good.len() - HEADER_LEN + 1));
        let _ = decode_command(&value, &FP);
        let _ = decode_state(&value, &FP);
    }
}

#[test]
fn legal_topics() {
    assert!(is_legal_topic("orders.expired_v1-x"));
    assert!(is_legal_topic(&"t".repeat(249)));
    for bad in ["", ".", "..", "bad topic", "é", &"t".repeat(250)] {
        assert!(!is_legal_topic(bad), "{bad}");
    }
}

fn every_state(r: Recurrence<'static>) -> Vec<u8> {
    let s = Schedule {
        due_ms: r.occurrence_ms,
        recurrence: Some(r),
        ..sample()
    };
    encode_state(&s, 9, &SFP)
}

fn on_time(occurrence_ms: i64) -> Recurrence<'static> {
    Recurrence {
        occurrence_ms,
        ..default_recurrence()
    }
}

#[test]
fn an_on_time_every_step_arms_the_next_occurrence() {
    let r = Recurrence {
        runs: 4,
        skipped: 2,
        ..on_time(10_000)
    };
    let got = step_on_time(&every_state(r.clone()), 10_500, 60_000, 86_400_000, &SFP).unwrap();
    assert_eq!((got.at_ms, got.run, got.skipped), (10_000, 5, 2));
    let (s, version) = decode_state(got.next.as_deref().unwrap(), &SFP).unwrap();
    let want = Recurrence {
        occurrence_ms: 11_000,
        runs: 5,
        ..r
    };
    assert_eq!((s.due_ms, version, s.recurrence), (11_000, 9, Some(want)));
    assert_eq!(
        (s.id, s.payload, s.headers.len()),
        (sample().id, sample().payload, 2)
    );
}

#[test]
fn the_last_on_time_occurrence_ends_the_schedule() {
    let step = |r: Recurrence<'static>| step_on_time(&every_state(r), 10_000, 60_000, 1, &SFP);
    let ends_at_next = step(Recurrence {
        ends_at: Some(11_000),
        ..on_time(10_000)
    });
    assert!(
        ends_at_next.unwrap().next.is_some(),
        "ends_at on the next occurrence: it still comes"
    );
    let ends_before = step(Recurrence {
        ends_at: Some(10_999),
        ..on_time(10_000)
    });
    assert_eq!(ends_before.unwrap().next, None);
    let last_run = step(Recurrence {
        max_runs: Some(3),
        runs: 2,
        ..on_time(10_000)
    });
    assert_eq!(last_run.map(|o| (o.next, o.run)), Some((None, 3)));
}

#[test]
fn every_other_case_is_the_engines() {
    let declined = [
        Recurrence {
            paused: true,
            ..on_time(10_000)
        },
        Recurrence {
            running_ms: Some(9_000),
            ..on_time(10_000)
        },
        Recurrence {
            buffered_ms: Some(9_000),
            ..on_time(10_000)
        },
        Recurrence {
            overlap: "skip",
            ..on_time(10_000)
        },
        Recurrence {
            missed: "bogus",
            ..on_time(10_000)
        },
        Recurrence {
            max_runs: Some(2),
            runs: 2,
            ..on_time(10_000)
        },
        Recurrence {
            cron: Some("* * * * *"),
            ..on_time(10_000)
        },
        Recurrence {
            every_ms: None,
            after_ms: Some(1000),
            ..on_time(10_000)
        },
        Recurrence {
            every_ms: Some(0),
            ..on_time(10_000)
        },
        Recurrence {
            starts_at: Some(20_000),
            ..on_time(10_000)
        },
        on_time(10_001),    // not due
        on_time(9_000),     // two due
        on_time(PARKED_MS), // none left
        Recurrence {
            every_ms: Some(i64::MAX),
            ..on_time(10_000)
        }, // overflow
    ];
    for r in declined {
        let record = every_state(r.clone());
        assert_eq!(
            step_on_time(&record, 10_000, 60_000, 1, &SFP),
            None,
            "{r:?}"
        );
    }
    let late = every_state(on_time(10_000));
    assert_eq!(
        step_on_time(&late, 10_999, 998, 1_000_000, &SFP),
        None,
        "missed"
    );
    let all = every_state(Recurrence {
        missed: "all",
        ..on_time(10_000)
    });
    assert_eq!(
        step_on_time(&all, 10_500, 60_000, 499, &SFP),
        None,
        "out of catch-up"
    );
    assert!(step_on_time(&all, 10_500, 60_000, 500, &SFP).is_some());
    assert_eq!(step_on_time(b"garbage", 0, 0, 0, &SFP), None);
    let mut other = late.clone();
    other[3] ^= 1;
    assert_eq!(
        step_on_time(&other, 10_000, 60_000, 1, &SFP),
        None,
        "another writer schema"
    );
}

#[test]
fn restate_changes_only_due_and_recurrence() {
    let record = encode_state(&recurring(), 4, &SFP);
    let fresh = restate(&record, 77, default_recurrence(), &SFP).unwrap();
    let (s, version) = decode_state(&fresh, &SFP).unwrap();
    let want = Schedule {
        due_ms: 77,
        recurrence: Some(default_recurrence()),
        ..recurring()
    };
    assert_eq!((s, version), (want, 4));
    assert_eq!(restate(b"x", 1, default_recurrence(), &SFP), None);
}
