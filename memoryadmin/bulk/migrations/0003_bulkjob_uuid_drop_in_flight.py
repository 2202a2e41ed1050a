"""A bulk job gets a uuid, which names its key in the store; in_flight is no longer needed.

The uuid is added in three steps (nullable, filled one by one, then unique), as
Django's documentation says for unique fields: a default alone would give every
existing row the same value.
"""

import uuid

from django.db import migrations, models


def give_each_job_a_uuid(apps, schema_editor):
    BulkJob = apps.get_model("bulk", "BulkJob")
    for job in BulkJob.objects.filter(uuid__isnull=True).only("pk"):
        BulkJob.objects.filter(pk=job.pk).update(uuid=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("bulk", "0002_bind_jobs_to_their_store"),
    ]

    operations = [
        migrations.AddField(
            model_name="bulkjob",
            name="uuid",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_each_job_a_uuid, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="bulkjob",
            name="uuid",
            field=models.UUIDField(
                default=uuid.uuid4, editable=False, help_text="Names its keys in the store.", unique=True
            ),
        ),
        migrations.RemoveField(
            model_name="bulkjob",
            name="in_flight",
        ),
    ]
