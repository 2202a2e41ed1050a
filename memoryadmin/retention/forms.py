from django import forms

from memoryadmin.services import holds
from memoryadmin.services.retention import FIELDS
from memoryadmin.services.sessions import MAX_TTL

from .models import RetentionPolicy


class PolicyForm(forms.Form):
    """A policy's rule and schedule; `confirm`: what an Admin types to confirm a clearing rule."""

    name = forms.CharField(max_length=100)
    rule = forms.ChoiceField(choices=RetentionPolicy.RULES, widget=forms.RadioSelect)
    pattern = forms.CharField(
        strip=False,
        help_text="The sessions it applies to: a SCAN MATCH pattern (* any characters, ? one, [abc] one of).",
    )
    ttl_seconds = forms.IntegerField(
        label="TTL (seconds)",
        required=False,
        min_value=1,
        max_value=MAX_TTL,
        help_text="For the TTL rules: the TTL given, or the longest kept (86400 is a day, 2592000 thirty days).",
    )
    schedule = forms.ChoiceField(choices=RetentionPolicy.SCHEDULES, widget=forms.RadioSelect)
    daily_at = forms.TimeField(label="Daily at (UTC, HH:MM)", required=False)
    every_hours = forms.IntegerField(label="Every N hours", required=False, min_value=1, max_value=24 * 7)
    confirm = forms.CharField(
        label="Confirmation, for a clearing rule",
        required=False,
        help_text="A clearing rule deletes sessions for good: type the connection's name or the pattern.",
    )

    def clean(self):
        data = super().clean()
        try:
            holds.check_pattern(data.get("pattern", ""))
        except ValueError as error:
            self.add_error("pattern", str(error))
        if data.get("rule") == RetentionPolicy.CLEAR:
            data["ttl_seconds"] = None
        elif data.get("rule") and data.get("ttl_seconds") is None and "ttl_seconds" not in self.errors:
            self.add_error("ttl_seconds", "Give the TTL, in seconds.")
        if data.get("schedule") == RetentionPolicy.DAILY:
            data["every_hours"] = None
            if data.get("daily_at") is None and "daily_at" not in self.errors:
                self.add_error("daily_at", "Give the time of day (UTC) it runs at.")
        elif data.get("schedule") == RetentionPolicy.EVERY_HOURS:
            data["daily_at"] = None
            if data.get("every_hours") is None and "every_hours" not in self.errors:
                self.add_error("every_hours", "Give how many hours apart its runs are.")
        return data

    @property
    def policy_data(self):
        """The policy's fields, as services/retention.py takes them."""
        return {field: self.cleaned_data.get(field) for field in FIELDS}

    @classmethod
    def for_policy(cls, policy):
        return cls(initial={field: getattr(policy, field) for field in FIELDS})


class PreviewChoice(forms.Form):
    """The preview an Admin enables a policy from (it must still be the policy's latest)."""

    preview = forms.IntegerField(widget=forms.HiddenInput)
