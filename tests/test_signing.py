from django.test import override_settings

from memoryadmin.services import signing


def test_a_signature_checks_out_and_an_edit_does_not():
    signature = signing.sign("certificate", b'{"sessions": 3}')
    assert signing.verify("certificate", b'{"sessions": 3}', signature)
    assert not signing.verify("certificate", b'{"sessions": 4}', signature)
    assert not signing.verify("query", b'{"sessions": 3}', signature)  # each use has its own key


def test_an_old_key_still_verifies_after_rotation_and_an_unknown_one_does_not():
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["old-key"]):
        signature = signing.sign("certificate", b"data")
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["new-key", "old-key"]):
        assert signing.verify("certificate", b"data", signature)
        assert signing.sign("certificate", b"data")["key_id"] != signature["key_id"]
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["new-key"]):
        assert not signing.verify("certificate", b"data", signature)


def test_a_keyed_hash_depends_on_the_key():
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["one"]):
        first = signing.keyed_hash("query", "jane@example.com")
        assert first == signing.keyed_hash("query", "jane@example.com")
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["two"]):
        assert signing.keyed_hash("query", "jane@example.com") != first


def test_malformed_signatures_are_refused():
    for signature in (None, "abc", {}, {"algorithm": "HMAC-SHA256", "key_id": "x", "value": 3}):
        assert not signing.verify("certificate", b"data", signature)
