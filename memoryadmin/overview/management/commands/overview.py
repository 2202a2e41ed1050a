from django.core.management.base import BaseCommand, CommandError

from memoryadmin.services import overview
from memoryadmin.services.connections import default_connection, find_connection


class Command(BaseCommand):
    help = (
        "Measure a connection's store now (as the Overview page does; the run is kept for its trend) and print "
        "the figures. Exit status 1 when the share of sessions without a TTL is over --max-no-ttl-share, or "
        "when the measurement fails; 0 otherwise (for monitoring)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--connection", help="the connection's slug: env, or a saved connection's id (default: the default one)"
        )
        parser.add_argument(
            "--max-no-ttl-share",
            type=float,
            metavar="PERCENT",
            help="the highest share of sessions without a TTL, in percent, that passes",
        )

    def handle(self, *args, connection=None, max_no_ttl_share=None, **options):
        store = find_connection(connection) if connection else default_connection()
        if store is None:
            raise CommandError(
                f"No connection {connection!r}." if connection else "No connection is configured.", returncode=2
            )
        run = overview.measure_now(store)
        if run.status != run.DONE:
            raise CommandError(f"The overview of {store.name} {run.status}: {run.error}", returncode=1)
        measures, share = run.measures, overview.no_ttl_share(run.measures)
        biggest = measures["biggest"][0]["bytes"] if measures["biggest"] else 0
        lines = [
            f"Overview of {store.name} (run {run.pk}; {run.store_commands:,} store commands)",
            f"Keys: {measures['keys']:,}",
            f"Sessions: {measures['sessions']:,} ({measures['messages']:,} messages, {measures['bytes']:,} bytes; "
            f"the biggest {biggest:,} bytes)",
            f"Sessions without a TTL: {measures['ttl']['none']:,}, without a TTL: {share:.1f}%",
            *_figures("By writer", measures["writers"]),
            *_figures("By TTL", measures["ttl"]),
            *_figures("By messages", measures["lengths"]),
            *_figures("Summaries", measures["summaries"]),
            *_figures(
                "Keys that are not sessions", {"summaries": measures["summary_hashes"], **measures["other_types"]}
            ),
        ]
        self.stdout.write("\n".join(lines))
        if max_no_ttl_share is not None and share > max_no_ttl_share:
            raise CommandError(
                f"{share:.1f}% of the sessions have no TTL: over the {max_no_ttl_share:g}% allowed.", returncode=1
            )


def _figures(title, counts):
    return [f"{title}:", *(f"  {label}: {count:,}" for label, count in counts.items())]
