"""Bulk and search jobs record the store they work on (URL and token fingerprint)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bulk", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="bulkjob",
            name="store_url",
            field=models.TextField(blank=True, help_text="The connection's REST URL when the job began."),
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="token_fingerprint",
            field=models.CharField(
                blank=True, help_text="HMAC of the connection's token then (never the token).", max_length=64
            ),
        ),
        migrations.AddField(
            model_name="searchjob",
            name="store_url",
            field=models.TextField(blank=True, help_text="The connection's REST URL when the job began."),
        ),
        migrations.AddField(
            model_name="searchjob",
            name="token_fingerprint",
            field=models.CharField(
                blank=True, help_text="HMAC of the connection's token then (never the token).", max_length=64
            ),
        ),
    ]
