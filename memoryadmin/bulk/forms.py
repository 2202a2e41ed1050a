from django import forms

from memoryadmin.dashboard.converters import decode_key
from memoryadmin.services.content_search import MAX_QUERY_LENGTH, ROLES

from .models import BulkJob


class BulkActionForm(forms.Form):
    """From the sessions list: an action on the selected rows, or on every session matching the pattern.

    The TTL of a "set TTL" action comes from the same fields as the session page's TTL form.
    """

    # A redaction redacts what a content search matched: it starts from a search's results.
    action = forms.ChoiceField(choices=[choice for choice in BulkJob.ACTIONS if choice[0] != BulkJob.REDACT])
    scope = forms.ChoiceField(
        choices=[("selected", "the selected sessions"), ("pattern", "every session matching the pattern")]
    )
    q = forms.CharField(required=False, max_length=1024, strip=False)

    def __init__(self, data, tokens):
        super().__init__(data)
        self.tokens = tokens

    def clean(self):
        data = super().clean()
        if data.get("scope") == "selected":
            try:
                data["keys"] = sorted({decode_key(token) for token in self.tokens})
            except ValueError:
                raise forms.ValidationError("The selection is damaged. Select the sessions again.") from None
            if not data["keys"]:
                raise forms.ValidationError("Select at least one session first.")
        return data


class SearchActionForm(forms.Form):
    """From a finished search: what to do with the sessions it found, and, for an erasure, the request's reference."""

    CHOICES = [
        ("clear", "Clear (purge) the sessions"),
        ("redact:messages", "Redact the matching messages (the rest of each session stays)"),
        ("redact:text", "Redact only the matching text"),
        ("persist", "Remove their TTL"),
        ("summarize", "Re-summarize them"),
    ]
    action = forms.ChoiceField(choices=CHOICES)
    reference = forms.CharField(
        max_length=200,
        required=False,
        label="Request reference",
        help_text="The erasure request this answers (a ticket id): it goes on the certificate.",
    )

    def clean(self):
        data = super().clean()
        action, _, redaction = data.get("action", "").partition(":")
        data["action"], data["redaction"] = action, redaction
        if action in BulkJob.ERASURES and not data.get("reference", "").strip():
            self.add_error("reference", "Give the request's reference (a ticket id): an erasure is certified under it.")
        return data


class ConfirmForm(forms.Form):
    typed = forms.CharField(required=False, max_length=200, label="Type to confirm")


class SearchForm(forms.Form):
    query = forms.CharField(max_length=MAX_QUERY_LENGTH, label="Text to find", strip=False)
    is_regex = forms.BooleanField(required=False, label="Regular expression")
    key_pattern = forms.CharField(
        max_length=500, required=False, label="Key pattern", help_text="Leave empty for the connection's pattern."
    )
    role = forms.ChoiceField(choices=[("", "any role")] + [(role, role) for role in ROLES], required=False)
