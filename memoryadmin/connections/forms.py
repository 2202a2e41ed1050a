from urllib.parse import urlsplit

from django import forms

from .models import Connection

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ConnectionForm(forms.ModelForm):
    """Add or edit a connection. The token is write-only: empty keeps the stored one."""

    url = forms.URLField(label="REST URL", max_length=500, assume_scheme="https")
    token = forms.CharField(
        label="REST token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = Connection
        fields = [
            "name", "url", "token", "key_pattern", "display_prefix", "list_order", "summary_namespace",
            "default_ttl", "page_size", "scan_budget", "timeout", "is_default", "is_production",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["token"].help_text = f"Stored: {self.instance.masked_token}. Leave empty to keep it."
        self.fields["page_size"].validators.append(_between(1, 500))
        self.fields["scan_budget"].validators.append(_between(1000, 1_000_000))
        self.fields["timeout"].validators.append(_between(0.5, 60))

    def clean_url(self):
        url = self.cleaned_data["url"].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
            return url
        raise forms.ValidationError("Use an https:// URL (http:// is allowed only for localhost).")

    def clean_token(self):
        token = self.cleaned_data["token"]
        if not token and not self.instance.pk:
            raise forms.ValidationError("A new connection needs its REST token.")
        return token

    def save(self, commit=True):
        if self.cleaned_data["token"]:
            self.instance.token = self.cleaned_data["token"]
        return super().save(commit)


def _between(low, high):
    def validate(value):
        if not low <= value <= high:
            raise forms.ValidationError(f"Between {low:g} and {high:g}.")

    return validate
