"""The Stripe-Sync-Signature scheme, as a receiver checks it."""

from __future__ import annotations

import time

import pytest

from orchestration.delivery import SignatureVerificationError, sign, verify_signature
from orchestration.delivery.signature import compute_signature

BODY = b'{"change_id":1,"change":"entered"}'
SECRET = "a-receiver-secret-of-some-length"


def test_a_signed_body_verifies() -> None:
    verify_signature(BODY, sign(BODY, SECRET), SECRET)
    verify_signature(BODY.decode(), sign(BODY, SECRET), SECRET)


def test_the_header_is_stripe_s_scheme() -> None:
    header = sign(BODY, SECRET, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={compute_signature(BODY, SECRET, 1_700_000_000)}"
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header.endswith(expected)


def test_any_of_several_secrets_or_signatures_verifies_during_a_rotation() -> None:
    t = int(time.time())
    header = f"t={t},v1={compute_signature(BODY, 'old-secret-xxxxxxxx', t)}"
    header += f",v1={compute_signature(BODY, SECRET, t)}"
    verify_signature(BODY, header, SECRET)
    verify_signature(BODY, sign(BODY, SECRET), ["old-secret-xxxxxxxx", SECRET])


@pytest.mark.parametrize(
    ("body", "header", "secret", "message"),
    [
        (BODY + b" ", None, SECRET, "does not match"),
        (BODY, None, SECRET + "x", "does not match"),
        (BODY, "", SECRET, "missing"),
        (BODY, "v1=abc", SECRET, "malformed"),
        (BODY, "t=1,t=2,v1=abc", SECRET, "malformed"),
        (BODY, "t=1700000000", SECRET, "no v1"),
    ],
    ids=["tampered-body", "wrong-secret", "no-header", "no-timestamp", "two-timestamps", "no-v1"],
)
def test_a_bad_delivery_is_refused(
    body: bytes, header: str | None, secret: str, message: str
) -> None:
    with pytest.raises(SignatureVerificationError, match=message):
        verify_signature(body, sign(BODY, SECRET) if header is None else header, secret)


def test_an_old_signature_is_a_replay() -> None:
    old = sign(BODY, SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(SignatureVerificationError, match="older than 300 s"):
        verify_signature(BODY, old, SECRET)
    verify_signature(BODY, old, SECRET, tolerance=600)


def _readme_snippet() -> str:
    from orchestration.core.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("### Outbound webhook", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_s_receiver_snippet_verifies_what_the_deliverer_signs() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_readme_snippet(), "README.md", "exec"), namespace)  # noqa: S102
    verify = namespace["verify_signature"]
    assert callable(verify)
    verify(BODY, sign(BODY, SECRET), SECRET)
    for body, header, secret in (
        (BODY + b" ", sign(BODY, SECRET), SECRET),
        (BODY, sign(BODY, SECRET), SECRET + "x"),
        (BODY, sign(BODY, SECRET, timestamp=int(time.time()) - 301), SECRET),
        (BODY, "v1=00", SECRET),
    ):
        with pytest.raises(ValueError):
            verify(body, header, secret)
