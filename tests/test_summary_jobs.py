"""Re-summarization: the job service against the local store, the pages, and a real worker process."""

import subprocess
import sys
import threading

import pytest
from django.db import connection as db

from memoryadmin.audit.models import AuditEvent
from memoryadmin.connections.models import Connection
from memoryadmin.dashboard.converters import encode_key
from memoryadmin.dashboard.management.demo_data import seed_demo
from memoryadmin.services import summary_jobs
from memoryadmin.services.messages import parse_element
from memoryadmin.services.upstash import get_client
from memoryadmin.summaries.models import SummarizerSettings, SummaryBatch, SummaryJob

from .conftest import DUMMY_TASKS, SHOWN_ENV
from .factories import langchain
from .processes import app_env
from .threads import run_together

pytestmark = pytest.mark.django_db

REFUND = [
    ("human", "Hi, my order NW-10442 arrived with a cracked kettle. I would like a refund please."),
    ("ai", "I'm sorry to hear that! Let me look up order NW-10442."),
    ("human", "Thanks. It was paid with my Visa card."),
    ("ai", "Done: a refund of 49.99 EUR was issued to your Visa card; it arrives in 3-5 days."),
]


def write_conversation(store, key, turns=REFUND):
    store.call("LPUSH", key, *[langchain(kind, text) for kind, text in turns])


def summary_hash(store, key):
    reply = store.call("HGETALL", f"memoryadmin:summary:{key}")
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply), 2)}


def test_job_writes_a_real_summary_with_the_sessions_ttl(connection, store, operator):
    write_conversation(store, "refund")
    store.call("EXPIRE", "refund", 5000)
    job, created = summary_jobs.request_summary(connection, "refund", operator)  # the immediate backend runs it
    job.refresh_from_db()
    assert created and job.status == "done" and job.method == "extractive" and job.message_count == 4
    stored = summary_hash(store, "refund")
    assert "NW-10442" in stored["text"] and "refund" in stored["text"].lower() and "issued" in stored["text"]
    assert stored["method"] == "extractive" and stored["message_count"] == "4"
    assert stored["generated_at"].endswith("Z") and int(stored["duration_ms"]) >= 0
    assert abs(store.call("TTL", "memoryadmin:summary:refund") - store.call("TTL", "refund")) <= 1


def test_a_new_summary_replaces_the_old_hash_whole(connection, store, operator):
    write_conversation(store, "refund")  # no TTL
    old = "memoryadmin:summary:refund"
    store.call("HSET", old, "text", "old", "written_by", "a chat app", "method", "gpt-3")
    store.call("EXPIRE", old, 600)  # an older summary's expiry must not outlive it
    job, _ = summary_jobs.request_summary(connection, "refund", operator)
    job.refresh_from_db()
    assert job.status == "done"
    assert set(summary_hash(store, "refund")) == {"text", "method", "message_count", "generated_at", "duration_ms"}
    assert store.call("TTL", old) == -1  # like its session


def test_a_summary_covers_every_message_of_a_session_too_big_for_one_transcript_window(connection, store, operator):
    turns = [("human" if i % 2 == 0 else "ai", f"Part {i}: " + "lorem ipsum " * 10_000) for i in range(40)]
    write_conversation(store, "long", turns)  # 4.8 MB: a transcript window holds fewer of them
    job, _ = summary_jobs.request_summary(connection, "long", operator)
    job.refresh_from_db()
    assert job.status == "done" and job.message_count == 40
    assert summary_hash(store, "long")["message_count"] == "40"


def test_a_session_without_ttl_gets_a_summary_without_ttl(connection, store, operator):
    write_conversation(store, "forever")
    summary_jobs.request_summary(connection, "forever", operator)
    assert store.call("TTL", "memoryadmin:summary:forever") == -1


def test_seeded_conversations_summaries_carry_request_and_outcome(connection, store, operator):
    seed_demo(store, sessions=12, long_session_messages=10)
    keys = [k.decode() for k in store.call("SCAN", "0", "MATCH", "message_store:*", "COUNT", 1000, "TYPE", "list")[1]]
    keys = [key for key in keys if "load-test" not in key and "legacy" not in key][:5]
    assert keys
    for key in keys:
        job, _ = summary_jobs.request_summary(connection, key, operator)
        job.refresh_from_db()
        assert job.status == "done", job.error
        text = summary_hash(store, key)["text"]
        messages = [parse_element(element) for element in reversed(store.call("LRANGE", key, 0, -1))]
        first_request = next(m.text for m in messages if m.role == "human" and m.text)
        answers = [m.text for m in messages if m.role == "ai" and m.text]
        asked = text.split("User asked: ", 1)[1].split("\n", 1)[0]
        outcome = text.split("Outcome: ", 1)[1].split("\n", 1)[0]
        assert set(asked.split()) & set(first_request.split()), (asked, first_request)
        assert any(outcome in answer for answer in answers), (outcome, answers[-2:])


def test_stale_summary_is_flagged_in_the_list_and_the_page(web, store, operator, connection):
    write_conversation(store, "chat")
    summary_jobs.request_summary(connection, "chat", operator)
    assert '<span class="badge badge-summary-fresh">fresh</span>' in web.get("/").content.decode()
    store.call("LPUSH", "chat", langchain("human", "One more thing!"))
    assert '<span class="badge badge-summary-stale">stale</span>' in web.get("/").content.decode()
    html = web.get(f"/sessions/{encode_key('chat')}/").content.decode()
    assert "covers 4 of 5 messages" in html and "badge-warn" in html


def test_session_cleared_during_the_job_ends_gone_and_writes_nothing(connection, store, operator, monkeypatch):
    write_conversation(store, "vanishing")
    real_summarize = summary_jobs.summarize

    def clear_then_summarize(messages, config):
        store.call("UNLINK", "vanishing")  # an operator clears it while the summarizer works
        return real_summarize(messages, config)

    monkeypatch.setattr(summary_jobs, "summarize", clear_then_summarize)
    job, _ = summary_jobs.request_summary(connection, "vanishing", operator)
    job.refresh_from_db()
    assert job.status == "gone" and "cleared" in job.error
    assert store.call("EXISTS", "memoryadmin:summary:vanishing") == 0


def test_missing_session_ends_gone(connection, store, operator):
    job, _ = summary_jobs.request_summary(connection, "never-existed", operator)
    job.refresh_from_db()
    assert job.status == "gone"


def test_summarizer_failure_is_recorded_on_the_job_and_audited(connection, store, operator):
    settings_row = SummarizerSettings.load()
    settings_row.provider, settings_row.base_url, settings_row.model = "openai", "http://127.0.0.1:9", "m"
    settings_row.timeout = 1
    settings_row.save()
    write_conversation(store, "chat")
    job, _ = summary_jobs.request_summary(connection, "chat", operator)
    job.refresh_from_db()
    assert job.status == "failed" and "127.0.0.1:9" in job.error
    from memoryadmin.audit.models import AuditEvent

    event = AuditEvent.objects.get(action="session.summarize", job=f"summary:{job.pk}")
    assert event.outcome == "failed" and event.username == "olga"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_requests_share_one_job(connection, store, operator, settings):
    settings.TASKS = DUMMY_TASKS  # queued, not run
    write_conversation(store, "chat")
    barrier = threading.Barrier(4)

    def click():
        barrier.wait(timeout=60)
        try:
            return summary_jobs.request_summary(connection, "chat", operator)
        finally:
            db.close()

    results = run_together(*[click] * 4)
    assert len({job.pk for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert SummaryJob.objects.count() == 1


def test_resummarize_button_returns_a_polling_panel_then_the_summary(web, store, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    write_conversation(store, "chat")
    token = encode_key("chat")
    panel = web.post(f"/summaries/sessions/{token}/", SHOWN_ENV, headers={"HX-Request": "true"}).content.decode()
    job = SummaryJob.objects.get()
    assert 'hx-trigger="every 1s"' in panel and "Re-summarizing" in panel and "<html" not in panel
    summary_jobs.run_summary_job(job.pk)  # what the worker does
    done = web.get(f"/summaries/jobs/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "every 1s" not in done and "NW-10442" in done and "covers 4 of 4" in done


def test_two_clicks_make_one_job(web, store, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    write_conversation(store, "chat")
    for _ in range(2):
        web.post(f"/summaries/sessions/{encode_key('chat')}/", SHOWN_ENV)
    assert SummaryJob.objects.count() == 1


def test_viewer_cannot_resummarize(client, viewer, connection, store):
    write_conversation(store, "chat")
    client.force_login(viewer)
    assert client.post(f"/summaries/sessions/{encode_key('chat')}/").status_code == 403
    assert "Re-summarize</button>" not in client.get(f"/sessions/{encode_key('chat')}/").content.decode()
    assert not SummaryJob.objects.exists()


def test_reading_a_summary_by_job_id_is_an_audited_session_read(client, viewer, connection, store, operator):
    write_conversation(store, "someone else's chat")
    job, _ = summary_jobs.request_summary(connection, "someone else's chat", operator)
    client.force_login(viewer)
    assert "NW-10442" in client.get(f"/summaries/jobs/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="session.read")
    assert event.username == "victor" and event.outcome == "ok"
    assert event.connection_slug == "env" and event.session_key == "someone else's chat"
    assert event.details == {"summary_job": job.pk}


def test_a_summary_read_by_job_id_is_audited_under_the_jobs_connection(
    client, viewer, connection, store, operator, other_store
):
    saved = Connection(name="staging bot", url=other_store.url)
    saved.token = other_store.token
    saved.save()
    staging = saved.to_store_connection()
    get_client(staging).call("FLUSHDB")
    write_conversation(get_client(staging), "staging chat")
    job, _ = summary_jobs.request_summary(staging, "staging chat", operator)
    client.force_login(viewer)  # working on the environment's connection
    assert "NW-10442" in client.get(f"/summaries/jobs/{job.pk}/").content.decode()
    event = AuditEvent.objects.get(action="session.read")
    assert (event.connection_slug, event.connection_name) == (str(saved.pk), "staging bot")


def test_batch_of_all_stale_sessions_matching_the_filter(web, store, connection, operator):
    for key in ("bot:fresh", "bot:stale", "bot:none", "other:none"):
        write_conversation(store, key)
    summary_jobs.request_summary(connection, "bot:fresh", operator)
    summary_jobs.request_summary(connection, "bot:stale", operator)
    store.call("LPUSH", "bot:stale", langchain("human", "new"))
    web.post("/summaries/batches/", {"scope": "stale", "q": "bot:*"})
    batch = SummaryBatch.objects.get()
    assert sorted(batch.jobs.values_list("session_key", flat=True)) == ["bot:none", "bot:stale"]
    assert batch.jobs.filter(status="done").count() == 2
    progress = web.get(f"/summaries/batches/{batch.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "All done." in progress and "every 1s" not in progress


def test_summarizer_settings_api_key_is_write_only(admin_web):
    data = {
        "provider": "openai",
        "base_url": "http://127.0.0.1:11434/v1",
        "model": "llama3",
        "api_key": "sk-live-abcdef987654",
        "max_input_chars": "12000",
        "timeout": "30",
        "prompt_template": "Summarize:\n{transcript}",
    }
    admin_web.post("/summaries/settings/", data)
    saved = SummarizerSettings.load()
    assert saved.api_key == "sk-live-abcdef987654" and "sk-live" not in saved.api_key_encrypted
    html = admin_web.get("/summaries/settings/").content.decode()
    assert "sk-live-abcdef987654" not in html and "••••7654" in html
    admin_web.post("/summaries/settings/", {**data, "api_key": "", "model": "llama3.1"})
    saved = SummarizerSettings.load()
    assert saved.model == "llama3.1" and saved.api_key == "sk-live-abcdef987654"


def test_summarizer_settings_that_failed_validation_do_not_echo_the_api_key(admin_web):
    data = {
        "provider": "openai",
        "base_url": "http://127.0.0.1:11434/v1",
        "model": "llama3",
        "api_key": "sk-live-abcdef987654",
        "max_input_chars": "12000",
        "timeout": "0",
        "prompt_template": "Summarize:\n{transcript}",
    }
    response = admin_web.post("/summaries/settings/", data)
    html = response.content.decode()
    assert response.status_code == 200 and 'name="timeout"' in html  # the form, shown again
    assert "sk-live-abcdef987654" not in html
    assert SummarizerSettings.load().api_key == ""


def test_a_stored_api_key_is_not_kept_for_another_base_url(admin_web):
    data = {
        "provider": "openai",
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "api_key": "sk-live-abcdef987654",
        "max_input_chars": "12000",
        "timeout": "30",
        "prompt_template": "Summarize:\n{transcript}",
    }
    admin_web.post("/summaries/settings/", data)
    moved = {**data, "api_key": "", "base_url": "https://collector.example/v1"}
    assert "enter the API key again" in admin_web.post("/summaries/settings/", moved).content.decode()
    assert SummarizerSettings.load().base_url == "https://api.openai.com/v1"
    admin_web.post("/summaries/settings/", {**moved, "api_key": "sk-other-1234"})
    saved = SummarizerSettings.load()
    assert saved.base_url == "https://collector.example/v1" and saved.api_key == "sk-other-1234"


def test_summarizer_settings_validation(admin_web):
    data = {
        "provider": "openai",
        "base_url": "",
        "model": "",
        "max_input_chars": "12000",
        "timeout": "30",
        "prompt_template": "no placeholder",
    }
    html = admin_web.post("/summaries/settings/", data).content.decode()
    assert "Needed for an OpenAI-compatible endpoint" in html and "must contain {transcript}" in html


def test_operator_cannot_change_summarizer_settings(web):
    assert web.get("/summaries/settings/").status_code == 403


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_process_runs_the_job(connection, store, operator, settings, local_store):
    """End to end: the job goes through the database queue and a separate `db_worker` process."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.backend.DatabaseBackend"}}
    write_conversation(store, "queued")
    job, _ = summary_jobs.request_summary(connection, "queued", operator)
    assert SummaryJob.objects.get(pk=job.pk).status == "queued"  # nothing ran it in this process
    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--interval", "0.1", "--no-startup-delay", "--no-reload"],
        env=app_env(local_store),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    job.refresh_from_db()
    assert job.status == "done", (job.error, worker.stderr[-2000:])
    assert "NW-10442" in summary_hash(store, "queued")["text"]
