from django.core.management.base import BaseCommand, CommandError

from memoryadmin.bulk.models import BulkJob, BulkJobKey
from memoryadmin.retention.models import RetentionPolicy
from memoryadmin.services import retention

SAMPLE = 10  # keys a dry run prints per policy


class Command(BaseCommand):
    help = (
        "Retention policies for cron: `run` starts the due policies' runs now, or the one given (--policy N, "
        "due or not, enabled), does them here unless a worker takes them, and waits for their end; each counts "
        "as the policy's scheduled run. `run --dry-run` prints what each enabled policy's next run would change "
        "(or the one given's), changing nothing in the store. `list` lists the policies. "
        "The exit status is 1 when a run or a dry run did not end well."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="subcommand", required=True)
        run = commands.add_parser("run", help="run due policies (or one) now")
        run.add_argument("--policy", type=int, help="the policy's number (as `list` shows it)")
        run.add_argument("--dry-run", action="store_true", help="print what each would change; change nothing")
        commands.add_parser("list", help="list the policies")

    def handle(self, *args, subcommand, **options):
        if subcommand == "list":
            return self._list()
        policies = self._policies(options["policy"], options["dry_run"])
        outcomes = [self._dry_run(policy) if options["dry_run"] else self._run(policy) for policy in policies]
        if not policies:
            self.stdout.write("No policy is due.")
        if not all(outcomes):
            raise CommandError("Not every policy ended well (see above).")

    def _policies(self, number, dry_run):
        if number is not None:
            policy = RetentionPolicy.objects.filter(pk=number).first()
            if policy is None:
                raise CommandError(f"There is no retention policy #{number}.")
            return [policy]
        return list(RetentionPolicy.objects.filter(enabled=True) if dry_run else retention.due_policies())

    def _list(self):
        for policy in RetentionPolicy.objects.order_by("id"):
            state = f"enabled, next run {policy.next_run_at:%Y-%m-%d %H:%M} UTC" if policy.enabled else "disabled"
            self.stdout.write(f"#{policy.pk} {policy.name!r} on {policy.connection_name!r}: {policy.rule} {state}")

    def _run(self, policy):
        try:
            job = retention.run_policy(policy)
        except retention.PolicyRefused as error:
            self.stderr.write(str(error))
            return False
        if job is None:
            self.stdout.write(
                f"#{policy.pk} {policy.name!r}: already started by another worker, or its connection is gone."
            )
            return True
        job = retention.see_through(job)
        self.stdout.write(
            f"#{policy.pk} {policy.name!r}: bulk job {job.pk} {job.status}: {job.done} changed, {job.skipped} "
            f"skipped ({job.held} on legal hold), {job.failed} failed; {job.run_commands} store commands."
            + (f" {job.error}" if job.error else "")
        )
        return job.status == BulkJob.DONE

    def _dry_run(self, policy):
        try:
            job = retention.see_through(retention.preview_policy(None, policy))
        except retention.PolicyRefused as error:
            self.stderr.write(str(error))
            return False
        if job.status != BulkJob.PREVIEWED:
            self.stderr.write(f"#{policy.pk} {policy.name!r}: the dry run did not end: {job.error}")
            return False
        held = job.keys.filter(outcome=BulkJobKey.HELD)
        self.stdout.write(
            f"#{policy.pk} {policy.name!r}: would change {job.total - job.held} session(s) of {job.total} "
            f"matching its rule ({job.held} on legal hold, left alone); the run: at most {job.estimated_commands} "
            f"store commands."
        )
        for row in job.keys.exclude(outcome=BulkJobKey.HELD)[:SAMPLE]:
            self.stdout.write(f"  {row.key!r}")
        for row in held[:SAMPLE]:
            self.stdout.write(f"  on hold: {row.key!r}")
        return True
