"""A reject must fit the rejected topic, or its partition's transactions abort forever (found with F17 cases)."""

from __future__ import annotations

from scheduler.records import fit_reject, record_size

OURS = [("scheduler-reject-reason", b"payload_too_large"), ("scheduler-reject-offset", b"7")]


def test_a_reject_that_fits_is_unchanged() -> None:
    headers = [("trace", b"t1"), *OURS]
    assert fit_reject(b"k", b"value", headers, 10_000) == (b"k", b"value", headers)


def test_the_value_goes_first_and_the_reason_stays() -> None:
    key, value, headers = fit_reject(b"k", b"x" * 5000, [("trace", b"t1"), *OURS], 1000)
    assert (key, value) == (b"k", b"")
    assert dict(headers)["scheduler-reject-dropped"] == b"value=5000"
    assert ("trace", b"t1") in headers and OURS[0] in headers
    assert record_size(key, value, headers) <= 1000


def test_then_the_commands_own_headers_then_the_key_is_cut() -> None:
    big_headers = [("h", b"y" * 3000), *OURS]
    key, value, headers = fit_reject(b"k" * 4000, b"v" * 10, big_headers, 2000)
    assert value == b"" and len(key or b"") == 1024
    assert dict(headers)["scheduler-reject-dropped"] == b"value=10,headers=1,key=4000"
    assert [h for h, _ in headers if h == "h"] == [] and OURS[1] in headers
    assert record_size(key, value, headers) <= 2000
