"""The signature scheme, as a receiver checks it with `verify`."""

from __future__ import annotations

import hashlib
import hmac
import time

from outbound.signing import secret_mask, secret_new, sign, verify

SECRET = "whsec_test-secret"
BODY = b'{"event":"call.summarized","id":7}'


def test_a_signed_body_verifies():
    assert verify(SECRET, sign(SECRET, BODY), BODY)
    assert verify(SECRET, sign(SECRET, BODY), BODY.decode())  # the body as text works too


def test_the_header_is_a_timestamp_and_a_hex_hmac_of_timestamp_dot_body():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    digest = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"


def test_a_tampered_body_fails():
    header = sign(SECRET, BODY)
    assert not verify(SECRET, header, BODY.replace(b"7", b"8"))


def test_another_secret_fails():
    assert not verify("whsec_other", sign(SECRET, BODY), BODY)


def test_an_old_or_future_timestamp_fails_outside_the_tolerance():
    now = time.time()
    old = sign(SECRET, BODY, timestamp=int(now) - 301)
    assert not verify(SECRET, old, BODY, now=now)
    assert verify(SECRET, old, BODY, tolerance=600, now=now)
    assert not verify(SECRET, sign(SECRET, BODY, timestamp=int(now) + 400), BODY, now=now)


def test_a_malformed_header_fails():
    good = sign(SECRET, BODY)
    signature = good.split("v1=")[1]
    for header in ["", "garbage", f"v1={signature}", good.split(",")[0], f"t=abc,v1={signature}"]:
        assert not verify(SECRET, header, BODY), header


def test_any_of_several_v1_signatures_may_match():
    good = sign(SECRET, BODY)
    t, v1 = good.split(",")
    assert verify(SECRET, f"{t},v1={'0' * 64},{v1}", BODY)


def test_secrets_are_prefixed_random_and_masked_in_lists():
    first, second = secret_new(), secret_new()
    assert first.startswith("whsec_") and len(first) == len("whsec_") + 43 and first != second
    assert secret_mask(first) == f"whsec_…{first[-4:]}"
