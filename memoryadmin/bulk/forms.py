from django import forms

from memoryadmin.dashboard.converters import decode_key
from memoryadmin.services.content_search import MAX_QUERY_LENGTH, ROLES

from .models import BulkJob


class BulkActionForm(forms.Form):
    """From the sessions list: an action on the selected rows, or on every session matching the pattern.

    The TTL of a "set TTL" action comes from the same fields as the session page's TTL form.
    """

    action = forms.ChoiceField(choices=BulkJob.ACTIONS)
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


class ConfirmForm(forms.Form):
    typed = forms.CharField(required=False, max_length=200, label="Type to confirm")


class SearchForm(forms.Form):
    query = forms.CharField(max_length=MAX_QUERY_LENGTH, label="Text to find", strip=False)
    is_regex = forms.BooleanField(required=False, label="Regular expression")
    key_pattern = forms.CharField(
        max_length=500, required=False, label="Key pattern", help_text="Leave empty for the connection's pattern."
    )
    role = forms.ChoiceField(choices=[("", "any role")] + [(role, role) for role in ROLES], required=False)
