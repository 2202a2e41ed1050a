"""`manage.py seed_demo`: fill the configured store with realistic demo sessions."""

import time

from django.core.management.base import BaseCommand, CommandError

from memoryadmin.dashboard.management.demo_data import seed_demo, store_is_empty
from memoryadmin.services.connections import NoConnectionConfigured, environment_connection
from memoryadmin.services.upstash import StoreError, get_writer


class Command(BaseCommand):
    help = "Write realistic demo sessions of every writer format into the store (UPSTASH_REDIS_REST_URL / _TOKEN)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when the store already holds keys (used by `make run`)"
        )
        parser.add_argument("--sessions", type=int, default=200, help="ordinary sessions to write (default 200)")

    def handle(self, *args, **options):
        try:
            connection = environment_connection()
            client = get_writer(connection)
            if options["if_empty"] and not store_is_empty(client):
                self.stdout.write("The store already holds keys: no demo data written.")
                return
            started = time.monotonic()
            counts = seed_demo(client, sessions=options["sessions"], summary_namespace=connection.summary_namespace)
        except (NoConnectionConfigured, StoreError) as error:
            # A clear line instead of a traceback: `make run` shows it to a developer.
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Seeded {counts['sessions']} sessions ({counts['messages']:,} messages: "
            f"{counts['flowise']} Flowise/LangChain JS, {counts['langchain_python']} LangChain Python, "
            f"{counts['llamaindex']} LlamaIndex; {counts['with_ttl']} with a TTL), "
            f"{counts['non_session_keys']} other keys and {counts['summaries']} summaries "
            f"in {time.monotonic() - started:.1f} s."
        )
