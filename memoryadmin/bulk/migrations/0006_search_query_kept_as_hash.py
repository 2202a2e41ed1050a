"""A search's query is no longer kept in clear: a keyed hash, a masked form, and the query encrypted."""

from django.db import migrations, models


def hash_mask_and_encrypt(apps, schema_editor):
    from memoryadmin.services import secrets
    from memoryadmin.services.content_search import masked_query, query_hash

    SearchJob = apps.get_model("bulk", "SearchJob")
    for search in SearchJob.objects.only("pk", "query", "is_regex").iterator():
        SearchJob.objects.filter(pk=search.pk).update(
            query_hash=query_hash(search.query, search.is_regex),
            query_masked=masked_query(search.query, search.is_regex),
            # Kept until the search expires (MEMORYADMIN_SEARCH_RESULTS_DAYS) or is erased, as a new one would be.
            query_encrypted=secrets.encrypt(search.query),
        )


def query_back(apps, schema_editor):
    """Backwards: the query again where it is still kept (encrypted); the masked form where it was erased."""
    from memoryadmin.services import secrets

    SearchJob = apps.get_model("bulk", "SearchJob")
    for search in SearchJob.objects.only("pk", "query_encrypted", "query_masked").iterator():
        query = secrets.decrypt(search.query_encrypted) if search.query_encrypted else search.query_masked
        SearchJob.objects.filter(pk=search.pk).update(query=query)


class Migration(migrations.Migration):
    dependencies = [
        ("bulk", "0005_store_command_costs"),
    ]

    operations = [
        migrations.AddField(
            model_name="searchjob",
            name="query_hash",
            field=models.CharField(
                default="",
                help_text="Keyed hash of the query as the search matches it (casefolded unless a regex).",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="searchjob",
            name="query_masked",
            field=models.CharField(
                default="", help_text="What pages show of the query: j***@example.com.", max_length=200
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="searchjob",
            name="query_encrypted",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="The query, encrypted; emptied when the search's data is erased.",
            ),
        ),
        migrations.AddField(
            model_name="searchjob",
            name="erased_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="searchjob",
            name="erase_reason",
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.RunPython(hash_mask_and_encrypt, query_back),
        # With a default, so that going back can add the column again to existing rows.
        migrations.AlterField(model_name="searchjob", name="query", field=models.CharField(default="", max_length=500)),
        migrations.RemoveField(model_name="searchjob", name="query"),
    ]
