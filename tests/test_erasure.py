"""Erasure requests: a search's results purged or redacted, verified by searching again, certified and checked."""

import hashlib
import io
import json
from datetime import datetime

import pytest
from django.core.management import CommandError, call_command
from django.test import RequestFactory, override_settings

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, BulkJobKey, SearchJob
from memoryadmin.holds.models import LegalHold
from memoryadmin.services import bulk, content_search, erasure, signing

from .conftest import DUMMY_TASKS, TEST_TOKEN
from .factories import langchain, llamaindex

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"


@pytest.fixture
def mailbox(store):
    store.call(
        "LPUSH", "lc:jane", langchain("human", "Hi, I am Jane.Doe@Example.com"), langchain("ai", "Hello Jane, noted.")
    )
    store.call("RPUSH", "li:jane", llamaindex("user", f"my email is {EMAIL}"), llamaindex("assistant", "ok"))
    store.call("LPUSH", "lc:bob", langchain("human", "I am bob@example.com"), langchain("ai", "Hi Bob"))


def search(web, query=EMAIL, **data):
    response = web.post("/bulk/search/", {"query": query, "key_pattern": "", "role": "", **data})
    assert response.status_code == 302, response.content.decode()[-500:]
    return SearchJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))


def erase(web, search_job, action, reference="DPO-2026-117"):
    response = web.post(f"/bulk/search/{search_job.pk}/purge/", {"action": action, "reference": reference})
    assert response.status_code == 302
    job = BulkJob.objects.get(search=search_job)
    assert job.status == BulkJob.AWAITING, job.error
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": str(job.total)})
    job.refresh_from_db()
    return job


def elements(store, key):
    return [element.decode() for element in store.call("LRANGE", key, 0, -1)]


def test_a_purge_from_a_search_is_verified_and_its_certificate_checks_out(web, mailbox, store, tmp_path):
    job = erase(web, search(web, key_pattern="l[ci]:*", role="human"), "clear")  # verified in the same scope
    assert job.status == BulkJob.DONE and job.done == 2
    assert store.call("EXISTS", "lc:jane", "li:jane", "lc:bob") == 1
    # Verified: the same search, run again over the same scope, found nothing.
    assert job.verification.status == SearchJob.DONE and job.remaining == 0 and job.verified_at
    # The same search, asked for by who confirmed the purge.
    fields = ["connection_slug", "connection_name", "query_hash", "query_hash_key_id", "query_masked", "key_pattern"]
    fields += ["role", "is_regex"]
    assert [getattr(job.verification, name) for name in fields] == [getattr(job.search, name) for name in fields]
    assert job.verification.requested_by == job.confirmed_by and job.confirmed_by.username == "olga"
    assert job.verification.read_after  # the sync token of the purge's last write: it reads after it
    verify = AuditEvent.objects.get(action="bulk.verify")
    assert verify.outcome == "ok" and verify.details["remaining"] == 0

    document = json.loads(web.get(f"/bulk/{job.pk}/certificate.json").content)
    body = document["certificate"]
    assert body["reference"] == "DPO-2026-117" and body["action"] == "clear"
    assert body["requested_by"] == body["confirmed_by"] == "olga"
    assert sorted(session["key"] for session in body["sessions"]) == ["lc:jane", "li:jane"]
    assert {session["outcome"] for session in body["sessions"]} == {"done"}
    assert body["verification"]["remaining"] == 0 and body["scope"]["query_hash"] == job.search.query_hash
    assert "jane.doe" not in json.dumps(document).lower()  # keys and a hash, never the query

    signed = tmp_path / "certificate.json"
    signed.write_bytes(web.get(f"/bulk/{job.pk}/certificate.json").content)
    call_command("verify_erasure_report", str(signed))
    # A copy pretty-printed another way still checks out; an edited one does not.
    relaid = tmp_path / "relaid.json"
    relaid.write_text(json.dumps(document, indent=4, sort_keys=True))
    call_command("verify_erasure_report", str(relaid))
    document["certificate"]["verification"]["remaining"] = 0
    document["certificate"]["sessions"][0]["outcome"] = "gone"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="signature does not match"):
        call_command("verify_erasure_report", str(edited))
    assert AuditEvent.objects.filter(action="erasure.certificate", outcome="ok").count() == 2


def test_the_printable_certificate_names_the_request_and_every_session(web, mailbox):
    job = erase(web, search(web), "clear")
    page = web.get(f"/bulk/{job.pk}/certificate/").content.decode()
    assert "DPO-2026-117" in page and "lc:jane" in page and "li:jane" in page and "0 remaining" in page


def test_redacting_the_matching_messages_keeps_the_rest_and_is_verified(web, mailbox, store):
    before = {key: elements(store, key) for key in ("lc:jane", "li:jane", "lc:bob")}
    job = erase(web, search(web), "redact:messages")
    assert job.status == BulkJob.DONE and job.messages_redacted == 2 and job.remaining == 0
    for key in ("lc:jane", "li:jane"):
        after = elements(store, key)
        assert len(after) == 2 and EMAIL not in json.dumps(after).lower()
        assert sum(new != old for new, old in zip(after, before[key])) == 1  # only the matching message changed
    assert "Hi, I am" not in elements(store, "lc:jane")[1] and "my email is" not in elements(store, "li:jane")[0]
    assert elements(store, "lc:bob") == before["lc:bob"]
    row = BulkJobKey.objects.get(job=job, key="lc:jane")
    assert row.outcome == "done" and row.redacted == 1 and len(row.element_hashes) == 1
    body = erasure.certificate(job)
    assert body["redaction"] == "messages" and body["totals"]["messages_redacted"] == 2
    assert all(len(pair["before"]) == 40 for session in body["sessions"] for pair in session["message_sha1"])


def test_redacting_only_the_matching_text_keeps_the_words_around_it(web, mailbox, store):
    job = erase(web, search(web), "redact:text")
    assert job.status == BulkJob.DONE and job.remaining == 0
    newest = json.loads(elements(store, "lc:jane")[1])  # the human message, pushed first
    assert newest["type"] == "human" and newest["data"]["content"].startswith("Hi, I am ")
    assert EMAIL not in newest["data"]["content"].lower()


def test_a_redaction_of_a_search_by_role_redacts_that_roles_messages_only(web, store):
    store.call("RPUSH", "lc:ann", langchain("human", f"write to {EMAIL}"), langchain("ai", f"noted: {EMAIL}"))
    job = erase(web, search(web, role="human"), "redact:messages")
    assert job.status == BulkJob.DONE and job.messages_redacted == 1
    human, ai = elements(store, "lc:ann")
    assert EMAIL not in human and ai == langchain("ai", f"noted: {EMAIL}")


def test_a_redactions_dry_run_counts_nothing_of_a_session_gone_since_the_search(web, mailbox, store):
    found = search(web)
    store.call("DEL", "li:jane")  # cleared by the chat app meanwhile
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "redact:messages", "reference": "T-10"})
    job = BulkJob.objects.get(search=found)
    assert (job.status, job.total, job.total_messages) == ("awaiting", 1, 1)
    rows = BulkJobKey.objects.filter(job=job).order_by("position")
    assert {row.key: row.messages for row in rows} == {"lc:jane": 1, "li:jane": 0}


def test_a_redaction_needs_a_typed_confirmation(web, mailbox, store):
    search_job = search(web)
    web.post(f"/bulk/search/{search_job.pk}/purge/", {"action": "redact:messages", "reference": "T-1"})
    job = BulkJob.objects.get(search=search_job)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "yes"})
    job.refresh_from_db()
    assert job.status == BulkJob.AWAITING and EMAIL in json.dumps(elements(store, "li:jane")).lower()


def test_an_erasure_needs_a_request_reference(web, mailbox):
    search_job = search(web)
    response = web.post(f"/bulk/search/{search_job.pk}/purge/", {"action": "clear", "reference": "  "}, follow=True)
    assert "Give the request" in response.content.decode() and not BulkJob.objects.exists()


def test_what_remains_is_listed_when_the_chat_app_writes_meanwhile(web, mailbox, store, settings, operator, connection):
    settings.TASKS = DUMMY_TASKS  # the job and its verification run when this test says
    job = counted_clear(web, connection, operator, reference="T-2")
    assert bulk.confirm_job(job, confirm_request(operator), str(job.total)) is None
    store.call("LPUSH", "lc:jane-again", langchain("human", f"It's me again, {EMAIL}"))  # written meanwhile
    bulk.run_job(job.pk)
    job.refresh_from_db()
    content_search.run_search(job.verification_id)
    bulk.record_verification(job.verification_id)
    job.refresh_from_db()
    assert job.remaining == 1
    assert erasure.certificate(job)["verification"]["remaining_sessions"] == ["lc:jane-again"]


def test_a_verification_that_could_not_finish_can_be_run_again(web, mailbox, store, settings, operator, connection):
    settings.TASKS = DUMMY_TASKS
    job = counted_clear(web, connection, operator, reference="T-3")
    bulk.confirm_job(job, confirm_request(operator), str(job.total))
    bulk.run_job(job.pk)
    job.refresh_from_db()
    SearchJob.objects.filter(pk=job.verification_id).update(status=SearchJob.FAILED, error="The store timed out.")
    bulk.record_verification(job.verification_id)
    job.refresh_from_db()
    assert job.verified_at is None and AuditEvent.objects.get(action="bulk.verify").outcome == "failed"
    with pytest.raises(erasure.NotCertifiable):
        erasure.certificate(job)
    web.post(f"/bulk/{job.pk}/verify/")
    job.refresh_from_db()
    content_search.run_search(job.verification_id)
    bulk.record_verification(job.verification_id)
    job.refresh_from_db()
    assert job.verified_at and job.remaining == 0


def test_a_verification_is_run_again_only_for_a_done_erasure_not_verified_nor_being_verified(
    web, mailbox, store, settings, operator, connection
):
    settings.TASKS = DUMMY_TASKS
    nothing = "This job has nothing to verify now."
    not_an_erasure = BulkJob.objects.create(connection_slug="env", action="clear", selection="pattern", status="done")
    assert bulk.verify_again(not_an_erasure) == nothing
    job = counted_clear(web, connection, operator, reference="T-7")
    assert bulk.verify_again(job) == nothing  # not run yet
    bulk.confirm_job(job, confirm_request(operator), str(job.total))
    bulk.run_job(job.pk)
    job.refresh_from_db()
    assert bulk.verify_again(job) == nothing  # its verification is queued
    SearchJob.objects.filter(pk=job.verification_id).update(status=SearchJob.FAILED)
    job.refresh_from_db()

    settings.UPSTASH_REDIS_REST_TOKEN = "a-rotated-token"
    assert bulk.verify_again(job) == (
        "The connection's token changed since the dry run. "
        "The job goes on only once the connection points at that store again (or cancel it)."
    )
    settings.UPSTASH_REDIS_REST_TOKEN = TEST_TOKEN
    query = SearchJob.objects.filter(pk=job.search_id).values_list("query_encrypted", flat=True).get()
    SearchJob.objects.filter(pk=job.search_id).update(query_encrypted="")  # its results expired
    assert bulk.verify_again(BulkJob.objects.get(pk=job.pk)) == (
        "The search's query has been erased (its results expired): search again to verify."
    )
    SearchJob.objects.filter(pk=job.search_id).update(query_encrypted=query)
    job = BulkJob.objects.get(pk=job.pk)
    assert job.verification.status == SearchJob.FAILED  # nothing started meanwhile

    assert bulk.verify_again(job) is None
    job.refresh_from_db()
    content_search.run_search(job.verification_id)
    bulk.record_verification(job.verification_id)
    job.refresh_from_db()
    assert job.verified_at and job.verification.status == SearchJob.DONE
    assert bulk.verify_again(job) == nothing  # verified


def test_a_verification_is_recorded_once_on_its_own_job_and_audited(
    web, mailbox, store, settings, operator, connection
):
    settings.TASKS = DUMMY_TASKS
    jobs = [counted_clear(web, connection, operator, reference=reference) for reference in ("T-8", "T-9")]
    for job in jobs:
        bulk.confirm_job(job, confirm_request(operator), str(job.total))
        bulk.run_job(job.pk)
        job.refresh_from_db()
    failed, verified = jobs
    SearchJob.objects.filter(pk=failed.verification_id).update(status=SearchJob.FAILED, error="The store timed out.")
    bulk.record_verification(failed.verification_id)
    content_search.run_search(verified.verification_id)
    bulk.record_verification(verified.verification_id)
    verified.refresh_from_db()
    when = verified.verified_at
    bulk.record_verification(verified.verification_id)  # its task run twice: recorded once
    verified.refresh_from_db()
    failed.refresh_from_db()
    assert (verified.verified_at, verified.remaining) == (when, 0) and failed.verified_at is None
    assert verified.verification.requested_by == operator  # the search is run again on behalf of who confirmed
    assert (verified.search.erase_reason, verified.verification.erase_reason) == ("erasure done", "erasure verified")
    events = AuditEvent.objects.filter(action="bulk.verify").order_by("id")
    assert [(e.job, e.username, e.connection_slug, e.outcome, e.error) for e in events] == [
        (failed.audit_job, "olga", "env", "failed", "The store timed out."),
        (verified.audit_job, "olga", "env", "ok", ""),
    ]
    assert events[1].details.keys() == {"search", "remaining", "sessions_read"}
    assert (events[1].details["search"], events[1].details["remaining"]) == (verified.verification_id, 0)


def test_sessions_on_legal_hold_are_left_alone_and_the_dry_run_and_certificate_say_so(
    web, admin, mailbox, store, connection
):
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="li:*", reason="Case 7", created_by=admin
    )
    search_job = search(web)
    web.post(f"/bulk/search/{search_job.pk}/purge/", {"action": "clear", "reference": "T-4"})
    job = BulkJob.objects.get(search=search_job)
    assert job.held == 1 and BulkJobKey.objects.get(job=job, key="li:jane").outcome == "on hold"
    assert "on legal hold" in web.get(f"/bulk/{job.pk}/").content.decode()
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": str(job.total)})
    job.refresh_from_db()
    assert store.call("EXISTS", "li:jane") == 1 and store.call("EXISTS", "lc:jane") == 0
    assert job.held == 1 and job.done == 1 and job.remaining == 1  # the held session still matches
    sessions = {session["key"]: session["outcome"] for session in erasure.certificate(job)["sessions"]}
    assert sessions == {"lc:jane": "done", "li:jane": "on hold"}


def test_a_hold_placed_after_the_dry_run_still_holds(web, admin, mailbox, store):
    search_job = search(web)
    web.post(f"/bulk/search/{search_job.pk}/purge/", {"action": "redact:messages", "reference": "T-5"})
    job = BulkJob.objects.get(search=search_job)
    LegalHold.objects.create(
        connection_slug=job.connection_slug, connection_name="x", pattern="lc:jane", reason="Case 8", created_by=admin
    )
    before = elements(store, "lc:jane")
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": str(job.total)})
    job.refresh_from_db()
    assert elements(store, "lc:jane") == before and job.held == 1 and job.messages_redacted == 1


def test_a_bulk_clear_skips_held_sessions_exactly_in_its_counts(web, admin, store, connection):
    for key in ("keep:1", "keep:2", "go:1"):
        store.call("LPUSH", key, langchain("human", "hello"))
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="keep:*", reason="Case 9", created_by=admin
    )
    web.post("/bulk/new/", {"action": "clear", "scope": "pattern", "q": "*"})
    job = BulkJob.objects.get()
    assert job.total == 3 and job.held == 2
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": "3"})
    job.refresh_from_db()
    assert (job.done, job.skipped, job.held) == (1, 2, 2)
    assert store.call("EXISTS", "keep:1", "keep:2", "go:1") == 2
    assert not job.is_erasure  # not from a search: no verification, no certificate
    assert web.get(f"/bulk/{job.pk}/certificate.json").status_code == 302


def counted_clear(web, connection, operator, reference):
    """A clear of the mailbox search's hits, searched and counted here (the tests' DUMMY_TASKS run nothing)."""
    search_job = search(web)
    content_search.run_search(search_job.pk)
    search_job.refresh_from_db()
    job = bulk.create_job(connection, operator, BulkJob.CLEAR, search=search_job, reference=reference)
    bulk.count_job(job.pk)
    job.refresh_from_db()
    return job


def confirm_request(user):
    request = RequestFactory().post("/")
    request.user = user
    return request


def moment(text):
    """A certificate's time: ISO 8601 in UTC, written with a Z."""
    assert text.endswith("Z") and "+" not in text, text
    return datetime.fromisoformat(text)


def test_a_purges_certificate_states_the_request_its_scope_every_session_and_the_verification(
    web, mailbox, store, operator
):
    messages = {key: store.call("LLEN", key) for key in ("lc:jane", "li:jane")}
    job = erase(web, search(web, role="", key_pattern=""), "clear", reference="DPO-2026-117")
    body = erasure.certificate(job)
    times = {name: moment(body.pop(name)) for name in ("requested_at", "confirmed_at", "started_at", "finished_at")}
    assert times == {
        "requested_at": job.created_at,
        "confirmed_at": job.confirmed_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
    assert moment(body.pop("issued_at")) == job.verified_at
    verification = body.pop("verification")
    assert moment(verification.pop("finished_at")) == job.verification.finished_at
    assert verification == {
        "search": job.verification_id,
        "sessions_read": 1,  # lc:bob, all that is left
        "remaining": 0,
        "remaining_sessions": [],
    }
    sessions = sorted(body.pop("sessions"), key=lambda session: session["key"])
    assert sessions == [
        {"key": key, "outcome": "done", "messages_at_dry_run": messages[key]} for key in ("lc:jane", "li:jane")
    ]
    assert body == {
        "kind": "memoryadmin.erasure-certificate",
        "version": 1,
        "job": {"id": job.pk, "uuid": str(job.uuid)},
        "reference": "DPO-2026-117",
        "requested_by": "olga",
        "confirmed_by": "olga",
        "connection": {
            "name": job.connection_name,
            "slug": job.connection_slug,
            "store_url": job.store_url,
            "token_fingerprint": job.token_fingerprint,
        },
        "scope": {
            "search": job.search_id,
            "query_hash": job.search.query_hash,
            "query_hash_algorithm": "HMAC-SHA256",
            "query_hash_key_id": signing.current_key_id(),
            "regular_expression": False,
            "key_pattern": job.search.key_pattern,
            "role": "any",
            "sessions_found": 2,
        },
        "action": "clear",
        "redaction": None,
        "totals": {
            "sessions": 2,
            "done": 2,
            "skipped": 0,
            "on_legal_hold": 0,
            "failed": 0,
            "messages_removed": sum(messages.values()),
            "messages_redacted": 0,
        },
    }
    # An operator's account deleted since: the certificate still stands, naming no one.
    operator.delete()
    job.refresh_from_db()
    assert erasure.certificate(job)["requested_by"] is None and erasure.certificate(job)["confirmed_by"] is None


def test_a_redactions_certificate_gives_each_messages_sha1_before_and_after(web, admin, mailbox, store, connection):
    LegalHold.objects.create(
        connection_slug=connection.slug, connection_name="x", pattern="li:*", reason="Case 7", created_by=admin
    )
    before = {key: elements(store, key) for key in ("lc:jane", "li:jane")}
    job = erase(web, search(web), "redact:messages")
    body = erasure.certificate(job)
    assert (body["action"], body["redaction"]) == ("redact", "messages")
    assert body["totals"]["messages_redacted"] == 1 and body["totals"]["messages_removed"] == 0

    def changed(key):
        after = elements(store, key)
        return [
            {"before": sha1(old), "after": sha1(new)} for old, new in zip(before[key], after, strict=True) if old != new
        ]

    assert sorted(body["sessions"], key=lambda session: session["key"]) == [
        {"key": "lc:jane", "outcome": "done", "messages_redacted": 1, "message_sha1": changed("lc:jane")},
        {"key": "li:jane", "outcome": "on hold", "messages_redacted": 0, "message_sha1": []},
    ]
    assert len(changed("lc:jane")) == 1 and changed("li:jane") == []


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


# Issued by an earlier version with the key "a-key-of-2026": the signature covers the certificate in its
# documented canonical form (sorted keys, no spaces, UTF-8), whatever the layout of the file.
ISSUED_EARLIER = {
    "certificate": {
        "kind": "memoryadmin.erasure-certificate",
        "version": 1,
        "job": {"id": 7, "uuid": "0b6f3c9e-1f2a-4c55-9a0e-3d1b2c4e5f60"},
        "reference": "DPO-7 Müller",
        "issued_at": "2026-05-04T10:00:00.123456Z",
        "sessions": [{"key": "lc:jane", "outcome": "done", "messages_at_dry_run": 2}],
        "verification": {"remaining": 0, "remaining_sessions": []},
    },
    "signature": {
        "algorithm": "HMAC-SHA256",
        "key_id": "d522d39a0c4d",
        "value": "da685a097510e54725a79d40313982864caf15c4beda3d4cff642d043dae5378",
    },
}


def test_a_certificate_issued_earlier_still_checks_out_and_says_what_it_certifies(tmp_path):
    issued = tmp_path / "erasure-certificate-7.json"
    issued.write_text(json.dumps(ISSUED_EARLIER, indent=2, ensure_ascii=False), encoding="utf-8")
    with override_settings(MEMORYADMIN_SIGNING_KEYS=["a-newer-key", "a-key-of-2026"]):
        out = io.StringIO()
        call_command("verify_erasure_report", str(issued), stdout=out)
        assert out.getvalue() == (
            "Valid: erasure job 7 (DPO-7 Müller), issued 2026-05-04T10:00:00.123456Z, 1 session(s), "
            "0 remaining at verification.\n"
        )
        without_reference = json.loads(json.dumps(ISSUED_EARLIER))
        without_reference["certificate"]["reference"] = ""
        without_reference["signature"] = signing.sign(
            "erasure-certificate", erasure.canonical(without_reference["certificate"])
        )
        valid, why = erasure.check_certificate_file(json.dumps(without_reference).encode())
        assert valid and why.startswith("Valid: erasure job 7 (no reference), issued")


def test_a_file_that_is_no_valid_certificate_says_why():
    def check(document):
        return erasure.check_certificate_file(
            document if isinstance(document, bytes) else json.dumps(document).encode()
        )

    valid, why = check(b"{not json")
    assert not valid and why.startswith("Not a certificate: the file is not JSON (") and why.endswith(").")
    for document in ([ISSUED_EARLIER], {"signature": ISSUED_EARLIER["signature"]}, {"certificate": "signed"}):
        assert check(document) == (False, 'Not a certificate: there is no "certificate" object in the file.')
    other_kind = {**ISSUED_EARLIER, "certificate": {**ISSUED_EARLIER["certificate"], "kind": "a receipt"}}
    assert check(other_kind) == (False, "Not an erasure certificate (its kind is 'a receipt').")
    # Signed with a key this deployment does not have (the test settings' key only), or not signed at all.
    mismatch = (
        "The signature does not match: the certificate was edited after it was issued, or it was signed "
        "with a key this deployment does not have (key id {!r})."
    )
    assert check(ISSUED_EARLIER) == (False, mismatch.format("d522d39a0c4d"))
    assert check({**ISSUED_EARLIER, "signature": None}) == (False, mismatch.format(None))


def test_a_job_without_a_certificate_says_why(web, mailbox, store, settings, operator, connection):
    store.call("LPUSH", "keep:1", langchain("human", "hello"))
    web.post("/bulk/new/", {"action": "clear", "scope": "pattern", "q": "keep:*"})
    not_an_erasure = BulkJob.objects.get()
    settings.TASKS = DUMMY_TASKS  # the erasure waits for a worker: not done, then done but not verified
    job = counted_clear(web, connection, operator, reference="T-6")
    unfinished = BulkJob.objects.get(pk=job.pk)
    bulk.confirm_job(job, confirm_request(operator), str(job.total))
    bulk.run_job(job.pk)
    job.refresh_from_db()
    for refused_job, why in (
        (not_an_erasure, "Only a clear or a redaction of a content search's results has an erasure certificate."),
        (unfinished, "The job has not finished: its certificate comes once it is done and verified."),
        (job, "The job is not verified yet: its certificate comes once the search has run again."),
    ):
        with pytest.raises(erasure.NotCertifiable) as refused:
            erasure.certificate(refused_job)
        assert str(refused.value) == why


def test_the_certificate_file_is_utf8_as_typed(web, mailbox):
    job = erase(web, search(web), "clear", reference="Anfrage Müller")
    document = web.get(f"/bulk/{job.pk}/certificate.json").content
    assert b'"reference": "Anfrage M\xc3\xbcller"' in document
    # Laid out for reading, a line a field, indented by two, and ending with a newline.
    assert document.startswith(b'{\n  "certificate": {\n    "kind": ') and document.endswith(b"\n}\n")
