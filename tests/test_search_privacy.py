"""Erasure that leaves nothing behind: what a content search keeps of its query and of the messages it found."""

import html
import logging
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from memoryadmin.audit.models import AuditEvent
from memoryadmin.bulk.models import BulkJob, SearchHit, SearchJob
from memoryadmin.services import content_search, messages, secrets, signing, summary_jobs
from memoryadmin.services.summaries import summary_key

from .conftest import DATABASE_TASKS
from .factories import langchain, llamaindex, write_langchain_session
from .privacy import copies_in_database
from .processes import app_env
from .test_content_search import saved_hit, search
from .test_jobs import wait_for

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
NAME = "Renée Dupré"
# What must be gone: the whole of each, and the parts of them that say who it is.
PERSONAL = [EMAIL, "jane.doe", NAME, "Renée", "Dupré"]


@pytest.fixture
def jane(store, connection):
    """Sessions that mention Jane, written as the writers write them (JSON with \\u00e9 escapes), and one that does not."""
    write_langchain_session(store, "chat:jane", [f"Hi, I am {NAME}, my e-mail is {EMAIL}", "Hello!"])
    store.call(
        "RPUSH", "li:jane", llamaindex("user", f"Write to {EMAIL.upper()} please"), llamaindex("assistant", "ok")
    )
    store.call("LPUSH", "chat:other", langchain("human", "Nothing personal here"))
    # A summary that names her, as the summarizer writes it next to the session.
    store.call("HSET", summary_key(connection, "chat:jane"), "text", f"{NAME} gave her e-mail", "message_count", "2")


def copies():
    return {text: copies_in_database(text) for text in PERSONAL}


def purge(web, found):
    """The search's results become a clear, confirmed and run (the immediate task backend runs it at once)."""
    response = web.post(f"/bulk/search/{found.pk}/purge/", {"action": "clear", "reference": "DPO-1"})
    job = BulkJob.objects.get(pk=int(response["Location"].rstrip("/").rsplit("/", 1)[1]))
    job.refresh_from_db()
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": str(job.total)})
    job.refresh_from_db()
    assert job.status == BulkJob.DONE
    return job


def test_an_erased_search_leaves_no_copy_of_the_email_or_the_name(web, store, connection, jane):
    plain = search(web, query=NAME)
    regex = search(web, query=rf"{EMAIL}|ren[eé]e\s+dupr[eé]", is_regex="on")
    for found in (plain, regex):
        found.refresh_from_db()
        assert found.status == SearchJob.DONE
    assert SearchHit.objects.filter(job=plain).count() == 1 and SearchHit.objects.filter(job=regex).count() == 2
    # The snippets hold them until the search is erased: the check can fail.
    before = copies()
    assert ("bulk_searchhit", "snippet") in {(table, column) for table, column, _ in before[EMAIL]}
    assert ("bulk_searchhit", "snippet") in {(table, column) for table, column, _ in before["Dupré"]}
    job = purge(web, regex)
    assert job.verification.is_regex and job.remaining == 0  # verified by the same regular expression
    # The sessions, and the summary that named her, are gone from the store.
    assert store.call("EXISTS", "chat:jane", "li:jane", summary_key(connection, "chat:jane")) == 0

    # The erasure, once verified, erased its search; the other search is erased by hand.
    regex.refresh_from_db()
    assert regex.erase_reason == "erasure done" and content_search.erase_search(regex, "purged") == 0
    assert content_search.erase_search(plain, "purged") == 1

    assert copies() == {text: [] for text in PERSONAL}
    # What stays: the keys and counts (a certificate lists them), the hash and the masked form.
    assert sorted(SearchHit.objects.filter(job=regex).values_list("session_key", "matches")) == [
        ("chat:jane", 1),
        ("li:jane", 1),
    ]
    plain.refresh_from_db()
    assert plain.query_masked == "R*** D***" and plain.query_hash == content_search.query_hash(NAME, False)
    assert plain.erase_reason == "purged" and plain.erased_at and content_search.search_query(plain) is None


def test_pages_show_the_masked_query_never_the_query(web, jane):
    found = search(web, query=EMAIL)
    job = purge(web, found)
    for path in ["/bulk/", "/bulk/search/", f"/bulk/search/{found.pk}/", f"/bulk/{job.pk}/"]:
        page = html.unescape(web.get(path).content.decode())
        assert "j***@example.com" in page, path
        # Not even the snippet: the purge, once verified, erased its search's snippets.
        assert "jane.doe" not in page, path


def test_the_query_is_kept_as_a_keyed_hash_a_masked_form_and_encrypted(web, jane):
    found = search(web, query=f"Jane.Doe@Example.com {NAME}")
    found.refresh_from_db()
    assert found.query_masked == "J***@Example.com R*** D***"
    # Hashed as the search matches it: casefolded text, a regular expression as typed.
    assert found.query_hash == signing.keyed_hash("search-query", f"jane.doe@example.com {NAME.casefold()}")
    assert found.query_hash == content_search.query_hash(f"JANE.DOE@EXAMPLE.COM {NAME}", False)
    assert content_search.query_hash("Jane", True) != content_search.query_hash("jane", True)
    assert content_search.search_query(found) == f"Jane.Doe@Example.com {NAME}"
    assert EMAIL.casefold() not in found.query_encrypted.casefold()
    assert content_search.masked_query(r"jane\.doe@.*", True) == "regular expression, 12 characters"
    assert content_search.masked_query("x" * 600, False) == "x***"
    assert len(content_search.masked_query("ab " * 150, False)) == content_search.MASKED_MAX_LENGTH
    assert content_search.masked_query("x", True) == "regular expression, 1 character"
    assert content_search.masked_query(" \t ", False) == "(blank)"
    assert content_search.masked_query("Ab @x me@ @", False) == "A*** @*** m*** @***"  # no e-mail without a domain
    # Up to 200 characters as they are; over that, cut with an ellipsis.
    assert content_search.masked_query("j@" + "d" * 195, False) == "j***@" + "d" * 195
    assert content_search.masked_query("j@" + "d" * 196, False) == "j***@" + "d" * 194 + "…"
    assert found.SECRET_FIELDS == ("query_encrypted",)  # re-encrypted by rotate_encryption_keys
    pattern = search(web, query=r"Jane\.Doe@.*", is_regex="on")  # a regular expression: as typed, by its length
    pattern.refresh_from_db()
    assert (pattern.query_masked, pattern.query_hash) == (
        "regular expression, 12 characters",
        signing.keyed_hash("search-query", r"Jane\.Doe@.*"),
    )


def test_erase_search_is_idempotent_and_audited_with_counts_only(web, jane):
    found = search(web, query=EMAIL)
    assert content_search.erase_search(found, "purged") == 2
    # Nor where the match was in the snippet: its length is the query's.
    assert set(found.hits.values_list("snippet", "match_start", "match_end")) == {("", 0, 0)}
    erased_at = found.erased_at
    assert content_search.erase_search(found, "again") == 0
    found.refresh_from_db()
    assert found.erased_at == erased_at and found.erase_reason == "purged"
    event = AuditEvent.objects.get(action="search.erase")
    assert event.details == {"search": found.pk, "reason": "purged", "hits_erased": 2, "query_hash": found.query_hash}
    assert event.job == f"search:{found.pk}" and event.outcome == "ok"
    assert (event.connection_slug, event.connection_name) == ("env", "default (environment)")  # the search's own
    page = html.unescape(web.get(f"/bulk/search/{found.pk}/").content.decode())
    assert "were erased" in page and "chat:jane" in page and "jane.doe" not in page
    assert "Continue to the dry run" not in page


def test_erasing_a_search_that_found_nothing_erases_its_query_and_is_audited(web, jane):
    found = search(web, query="nobody@example.com")
    found.refresh_from_db()
    assert found.status == SearchJob.DONE and not found.hits.exists()
    assert content_search.erase_search(found, "purged") == 0
    assert (found.query_encrypted, found.erase_reason) == ("", "purged") and found.erased_at
    assert AuditEvent.objects.get(action="search.erase").details["hits_erased"] == 0


def test_an_erased_search_neither_runs_nor_becomes_a_purge(web, connection, operator, jane):
    found = search(web, query=EMAIL)
    content_search.erase_search(found, "purged")
    response = web.post(f"/bulk/search/{found.pk}/purge/", {"action": "clear"}, follow=True)
    assert "results were erased" in response.content.decode() and not BulkJob.objects.exists()
    # A queued search erased before a worker took it up fails, saying why.
    SearchJob.objects.filter(pk=found.pk).update(status=SearchJob.QUEUED, worker="")
    content_search.run_search(found.pk)
    found.refresh_from_db()
    assert found.status == SearchJob.FAILED and found.error == content_search.QUERY_ERASED


def searched_days_ago(connection, operator, days, query=EMAIL):
    found = SearchJob.objects.create(
        connection_slug="env",
        connection_name=connection.name,
        query_hash=content_search.query_hash(query, False),
        query_masked=content_search.masked_query(query, False),
        query_encrypted=secrets.encrypt(query),
        status=SearchJob.DONE,
        requested_by=operator,
    )
    SearchJob.objects.filter(pk=found.pk).update(finished_at=timezone.now() - timedelta(days=days))
    saved_hit(found, "chat:jane", query)
    return found


def test_search_results_expire_unless_a_bulk_job_still_works_from_them(connection, operator, settings):
    settings.MEMORYADMIN_SEARCH_RESULTS_DAYS = 7
    old, recent = searched_days_ago(connection, operator, 8), searched_days_ago(connection, operator, 6)
    awaited = searched_days_ago(connection, operator, 30)
    BulkJob.objects.create(connection_slug="env", action="clear", selection="search", search=awaited, status="awaiting")
    done = searched_days_ago(connection, operator, 30)
    BulkJob.objects.create(connection_slug="env", action="clear", selection="search", search=done, status="done")
    # Cancelled while queued: it never ended, so it expires from when it was asked for.
    never_ran = searched_days_ago(connection, operator, 30)
    SearchJob.objects.filter(pk=never_ran.pk).update(
        status=SearchJob.CANCELLED, finished_at=None, created_at=timezone.now() - timedelta(days=8)
    )

    assert content_search.erase_expired_searches() == 3
    assert content_search.erase_expired_searches() == 0  # nothing left to erase
    for search_job in (old, done, never_ran):
        search_job.refresh_from_db()
        assert (
            not search_job.hits.exists() and search_job.query_encrypted == "" and search_job.erase_reason == "expired"
        )
    for search_job in (recent, awaited):
        search_job.refresh_from_db()
        assert search_job.hits.exists() and content_search.search_query(search_job) == EMAIL
    events = AuditEvent.objects.filter(action="search.erase")
    assert sorted(event.details["search"] for event in events) == sorted([old.pk, done.pk, never_ran.pk])
    assert {event.details["reason"] for event in events} == {"expired"}
    # A day later by the clock given, the recent one goes too.
    assert content_search.erase_expired_searches(now=timezone.now() + timedelta(days=2)) == 1
    assert not SearchHit.objects.filter(job=recent).exists()
    assert copies_in_database(EMAIL) == [("bulk_searchhit", "snippet", SearchHit.objects.get(job=awaited).pk)]


def test_an_expired_search_loses_its_query_even_without_hits_and_its_hits_even_once_erased(connection, operator):
    found_nothing = searched_days_ago(connection, operator, 8)
    found_nothing.hits.all().delete()  # a search that matched no session keeps its query only
    erased = searched_days_ago(connection, operator, 8)
    assert content_search.erase_search(erased, "purged") == 1  # its hits stay, their snippets blanked
    erased_at = SearchJob.objects.get(pk=erased.pk).erased_at
    recent = searched_days_ago(connection, operator, 6)
    now = timezone.now() + timedelta(minutes=1)
    assert content_search.erase_expired_searches(now=now) == 2
    found_nothing.refresh_from_db()
    assert (found_nothing.query_encrypted, found_nothing.erase_reason, found_nothing.erased_at) == ("", "expired", now)
    recent.refresh_from_db()
    assert (recent.erase_reason, recent.erased_at) == ("", None) and recent.hits.exists()
    erased.refresh_from_db()
    assert not erased.hits.exists()  # the keys it found go too once expired
    assert (erased.erase_reason, erased.erased_at) == ("purged", erased_at)  # erased first as a purge's search
    events = AuditEvent.objects.filter(action="search.erase", details__reason="expired")
    assert sorted((event.details["search"], event.details["hits_erased"]) for event in events) == [
        (found_nothing.pk, 0),
        (erased.pk, 1),
    ]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_worker_sweeps_expired_searches_when_it_starts(connection, operator, settings, capsys):
    settings.TASKS = DATABASE_TASKS
    old = searched_days_ago(connection, operator, 8)
    call_command("worker", "--batch", "--interval", "0.05")
    assert "Erased the results of 1 expired search(es)." in capsys.readouterr().out
    assert not old.hits.exists()
    old.refresh_from_db()
    assert old.erase_reason == "expired"


def test_a_regex_refused_in_the_worker_is_not_quoted_in_the_record(connection, operator, caplog, capfd):
    # Valid in the request when it was asked for (an older RE2, say); refused when the worker runs it.
    pattern = "jane(?=doe)"
    found = SearchJob.objects.create(
        connection_slug="env",
        connection_name=connection.name,
        query_hash=content_search.query_hash(pattern, True),
        query_masked=content_search.masked_query(pattern, True),
        query_encrypted=secrets.encrypt(pattern),
        is_regex=True,
        requested_by=operator,
    )
    with caplog.at_level(logging.DEBUG):
        content_search.run_search(found.pk)
    found.refresh_from_db()
    assert found.status == SearchJob.FAILED and found.error == content_search.QUERY_REFUSED
    assert AuditEvent.objects.get(action="search.run").error == content_search.QUERY_REFUSED
    assert copies_in_database("(?=") == [] and copies_in_database("jane") == []
    assert "(?=" not in caplog.text and "jane" not in caplog.text
    assert "jane" not in "".join(capfd.readouterr())  # RE2 logs nothing of it either


def test_a_refused_regex_is_shown_once_in_the_form_and_kept_nowhere(web, capfd):
    response = web.post("/bulk/search/", {"query": "jane(?=doe)", "is_regex": "on", "key_pattern": "", "role": ""})
    assert "(?=" in html.unescape(response.content.decode())  # the operator sees why
    assert not SearchJob.objects.exists()
    assert copies_in_database("(?=") == [] and copies_in_database("jane") == []
    assert "jane" not in "".join(capfd.readouterr())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_failed_search_leaves_no_text_in_the_task_backend_or_the_log(web, jane, settings, monkeypatch, caplog):
    settings.TASKS = DATABASE_TASKS

    def quoting(matcher, elements, role, deadline):
        raise ValueError(f"cannot match {elements[0].decode()}")  # as an error may quote what it read

    monkeypatch.setattr(content_search, "match_session", quoting)
    found = search(web, query=EMAIL)
    with caplog.at_level(logging.DEBUG):
        call_command("worker", "--batch", "--interval", "0.05")
    found.refresh_from_db()
    assert found.status == SearchJob.FAILED and found.error == content_search.unquoted(ValueError())
    task = DBTaskResult.objects.get()
    assert task.status == "FAILED" and "SearchFailed" in task.exception_class_path
    assert "match_session" in task.traceback  # where it happened stays, for the log
    assert task.traceback.rstrip().endswith(f"SearchFailed: {found.error}")  # and what the search recorded
    assert copies() == {text: [] for text in PERSONAL}
    for text in PERSONAL:
        assert text.casefold() not in caplog.text.casefold()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_worker_sweeps_again_while_it_runs(connection, operator, settings, local_store, tmp_path):
    settings.TASKS = DATABASE_TASKS
    env = app_env(local_store, MEMORYADMIN_JOB_STALE_SECONDS="1")  # recovery, and the sweep, every 0.5 s
    log = tmp_path / "worker.log"
    with open(log, "w") as output:
        command = [sys.executable, "manage.py", "worker", "--interval", "0.2"]
        worker = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Starting worker" in log.read_text(), what="the worker to start")
        old = searched_days_ago(connection, operator, 8)  # expired after the sweep at its start
        wait_for(lambda: not old.hits.exists(), what="the sweep of the expired search")
    finally:
        worker.kill()
        worker.wait(timeout=10)
    old.refresh_from_db()
    assert old.erase_reason == "expired" and old.query_encrypted == ""


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_migration_keeps_existing_queries_only_hashed_masked_and_encrypted():
    executor = MigrationExecutor(db)
    before, after = [("bulk", "0005_store_command_costs")], [("bulk", "0006_search_query_kept_as_hash")]
    executor.migrate(before)
    OldSearchJob = executor.loader.project_state(before).apps.get_model("bulk", "SearchJob")
    plain = OldSearchJob.objects.create(connection_slug="env", connection_name="d", query=f"{NAME} {EMAIL}")
    regex = OldSearchJob.objects.create(connection_slug="env", connection_name="d", query=r"jane\.doe", is_regex=True)
    executor.loader.build_graph()
    executor.migrate(after)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    plain, regex = SearchJob.objects.get(pk=plain.pk), SearchJob.objects.get(pk=regex.pk)
    assert (
        plain.query_masked == "R*** D*** j***@example.com" and regex.query_masked == "regular expression, 9 characters"
    )
    assert plain.query_hash == content_search.query_hash(f"{NAME} {EMAIL}", False)
    assert (
        content_search.search_query(plain) == f"{NAME} {EMAIL}" and content_search.search_query(regex) == r"jane\.doe"
    )
    assert copies() == {text: [] for text in PERSONAL}


def test_a_message_that_cannot_be_read_is_logged_without_its_text(monkeypatch, caplog):
    def quoting(raw, problems):
        raise KeyError(raw)  # as an unforeseen shape may make an error quote the element

    monkeypatch.setattr(messages, "_interpret", quoting)
    with caplog.at_level(logging.WARNING):
        message = messages.parse_element(langchain("human", f"{NAME} <{EMAIL}>").encode())
    assert message.problem == "Could not read this message (KeyError)"
    assert "Could not read a stored message" in caplog.text and "_interpret" in caplog.text
    for text in PERSONAL:
        assert text.casefold() not in caplog.text.casefold()


def test_summaries_are_kept_in_the_store_only_and_go_with_their_session(web, store, connection, operator, jane):
    job, _ = summary_jobs.request_summary(connection, "chat:jane", operator)
    job.refresh_from_db()
    assert job.status == "done"
    summary = store.call("HGET", summary_key(connection, "chat:jane"), "text").decode()
    assert EMAIL in summary or "Renée" in summary  # the summary names her...
    assert copies() == {text: [] for text in PERSONAL}  # ...the database does not (the job keeps key and counts)
    purge(web, search(web, query=EMAIL))
    assert store.call("EXISTS", summary_key(connection, "chat:jane")) == 0


def test_a_confirmation_keeps_what_was_typed_only_when_it_is_the_count_or_the_name(web, jane):
    found = search(web, query=EMAIL)
    web.post(f"/bulk/search/{found.pk}/purge/", {"action": "clear", "reference": "DPO-1"})
    job = BulkJob.objects.get(search=found)
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": EMAIL})  # pasted into the wrong box
    web.post(f"/bulk/{job.pk}/confirm/", {"typed": str(job.total)})
    events = AuditEvent.objects.filter(action="bulk.confirm").order_by("id")
    typed = [(event.details["typed"], event.outcome) for event in events]
    assert typed == [("(other)", "failed"), ("2", "ok")]
    assert copies_in_database(EMAIL) == []
