from django import forms

from memoryadmin.dashboard.converters import decode_key

from .models import AuditEvent


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label="User")
    action = forms.ChoiceField(required=False, choices=[("", "any action")] + AuditEvent.ACTIONS)
    connection = forms.CharField(required=False, max_length=20, label="Connection id")
    session_key = forms.CharField(required=False, strip=False, label="Session key (exact)")
    outcome = forms.ChoiceField(required=False, choices=[("", "any outcome")] + AuditEvent.OUTCOMES)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, data=None, **kwargs):
        # A session page links here with `session`, its key's URL token: a key may be too long for a URL.
        self.session_link_damaged = False
        if data is not None and data.get("session") and not data.get("session_key"):
            data = data.copy()
            try:
                data["session_key"] = decode_key(data["session"])
            except ValueError:
                self.session_link_damaged = True
        super().__init__(data, **kwargs)

    def clean(self):
        data = super().clean()
        if self.session_link_damaged:
            raise forms.ValidationError("The session in this link is damaged: open the history from the session.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("“From” is after “To”.")
        return data
