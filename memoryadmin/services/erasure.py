"""Erasure certificates: what an erasure job did, signed, for a data-protection officer to file.

An erasure job is a clear or a redaction of a content search's results (services/bulk.py); once
verified by the same search run again, its certificate states the request reference, who asked and
who confirmed and when, the scope, every session with its outcome, and the verification's result.
It holds session keys, counts, hashes and operators' usernames: never message text, nor the query
(only its keyed hash, which someone holding the signing key can check a guess against).

The file is JSON: {"certificate": {...}, "signature": {...}}. The signature is an HMAC-SHA256
(services/signing.py) over the certificate in canonical form (keys sorted, no spaces, UTF-8), so a
copy reformatted by a viewer still checks out and any edited value does not.
"""

import json

from memoryadmin.bulk.models import BulkJob, BulkJobKey

from . import signing

KIND = "memoryadmin.erasure-certificate"
VERSION = 1
SIGNED_AS = "erasure-certificate"


class NotCertifiable(Exception):
    """The job has no certificate (yet): the message says why."""


def check_certifiable(job):
    if not job.is_erasure:
        raise NotCertifiable("Only a clear or a redaction of a content search's results has an erasure certificate.")
    if job.status != BulkJob.DONE:
        raise NotCertifiable("The job has not finished: its certificate comes once it is done and verified.")
    if job.verified_at is None:
        raise NotCertifiable("The job is not verified yet: its certificate comes once the search has run again.")


def _when(moment):
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _username(user):
    return user.get_username() if user else None


def certificate(job):
    """The certificate of a verified erasure job, as a dict (NotCertifiable when there is none)."""
    check_certifiable(job)
    search, verification = job.search, job.verification
    rows = BulkJobKey.objects.filter(job=job).order_by("position")
    return {
        "kind": KIND,
        "version": VERSION,
        "job": {"id": job.pk, "uuid": str(job.uuid)},
        "reference": job.reference,
        "requested_by": _username(job.requested_by),
        "requested_at": _when(job.created_at),
        "confirmed_by": _username(job.confirmed_by),
        "confirmed_at": _when(job.confirmed_at),
        "started_at": _when(job.started_at),
        "finished_at": _when(job.finished_at),
        "connection": {
            "name": job.connection_name,
            "slug": job.connection_slug,
            "store_url": job.store_url,
            "token_fingerprint": job.token_fingerprint,
        },
        "scope": {
            "search": search.pk,
            "query_hash": search.query_hash,
            "query_hash_algorithm": signing.ALGORITHM,
            "query_hash_key_id": search.query_hash_key_id,
            "regular_expression": search.is_regex,
            "key_pattern": search.key_pattern,
            "role": search.role or "any",
            "sessions_found": job.total,
        },
        "action": job.action,
        "redaction": job.redaction or None,
        "totals": {
            "sessions": job.total,
            "done": job.done,
            "skipped": job.skipped,
            "on_legal_hold": job.held,
            "failed": job.failed,
            "messages_removed": job.messages_removed,
            "messages_redacted": job.messages_redacted,
        },
        "sessions": [_session(job, row) for row in rows.iterator(chunk_size=2000)],
        "verification": {
            "search": verification.pk,
            "finished_at": _when(verification.finished_at),
            "sessions_read": verification.sessions_read,
            "remaining": job.remaining,
            "remaining_sessions": job.remaining_keys,
        },
        "issued_at": _when(job.verified_at),
    }


def _session(job, row):
    session = {"key": row.key, "outcome": row.outcome or "pending"}
    if job.action == BulkJob.REDACT:
        session["messages_redacted"] = row.redacted or 0
        session["message_sha1"] = [{"before": before, "after": after} for before, after in row.element_hashes]
    else:
        session["messages_at_dry_run"] = row.messages
    return session


def canonical(value):
    """The bytes a certificate is signed as: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_certificate(job):
    """{"certificate": ..., "signature": ...} of a verified erasure job."""
    body = certificate(job)
    return {"certificate": body, "signature": signing.sign(SIGNED_AS, canonical(body))}


def certificate_file(job):
    """The certificate as a downloadable file (indented for reading; the signature ignores the layout)."""
    return json.dumps(signed_certificate(job), indent=2, ensure_ascii=False).encode() + b"\n"


def check_certificate_file(data):
    """(valid, why) for the bytes of a certificate file: signed by one of this deployment's keys, unedited."""
    try:
        document = json.loads(data)
    except ValueError as error:
        return False, f"Not a certificate: the file is not JSON ({error})."
    if not isinstance(document, dict) or not isinstance(document.get("certificate"), dict):
        return False, 'Not a certificate: there is no "certificate" object in the file.'
    body = document["certificate"]
    if body.get("kind") != KIND:
        return False, f"Not an erasure certificate (its kind is {body.get('kind')!r})."
    signature = document.get("signature")
    if not signing.verify(SIGNED_AS, canonical(body), signature):
        key = signature.get("key_id") if isinstance(signature, dict) else None
        return False, (
            "The signature does not match: the certificate was edited after it was issued, or it was signed "
            f"with a key this deployment does not have (key id {key!r})."
        )
    job = body.get("job") or {}
    return True, (
        f"Valid: erasure job {job.get('id')} ({body.get('reference') or 'no reference'}), issued "
        f"{body.get('issued_at')}, {len(body.get('sessions') or [])} session(s), "
        f"{(body.get('verification') or {}).get('remaining')} remaining at verification."
    )
