from django import forms

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

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("“From” is after “To”.")
        return data
