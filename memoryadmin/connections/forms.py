from urllib.parse import urlsplit

from django import forms

from memoryadmin.services.secrets import SecretUnreadable, masked

from .models import Connection

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def secret_field(label):
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class WriteOnlySecretForm(forms.ModelForm):
    """A model form with one secret that is never sent back: shown as ••••last4, empty keeps it.

    Empty keeps it only while the secret's destination (the URL it is sent to) stays the same:
    otherwise anyone who may edit the form could have the stored secret sent to a server of theirs.
    """

    secret_name = "token"  # the form field and the model's plaintext attribute
    secret_destination = "url"  # the field naming where the secret is sent
    missing_secret_message = ""  # the error for a new object without one; empty: optional

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and getattr(self.instance, f"{self.secret_name}_encrypted"):
            try:
                stored = masked(getattr(self.instance, self.secret_name))
            except SecretUnreadable:
                stored = "unreadable with the current keys, enter it again"
            self.fields[self.secret_name].help_text = f"Stored: {stored}. Leave empty to keep it."

    def clean(self):
        data = super().clean()
        if data.get(self.secret_name):
            return data
        if self.missing_secret_message and not self.instance.pk:
            self.add_error(self.secret_name, self.missing_secret_message)
        elif self._stored_secret_would_move(data):
            destination = self.fields[self.secret_destination].label
            secret = self.fields[self.secret_name].label
            self.add_error(
                self.secret_name,
                f"The {destination} changed: enter the {secret} again. "
                f"A stored {secret} is only sent to the {destination} it was saved with.",
            )
        return data

    def _stored_secret_would_move(self, data):
        # The instance still holds the saved values here: the form's are copied onto it after clean().
        destination = data.get(self.secret_destination)
        return bool(
            self.instance.pk
            and getattr(self.instance, f"{self.secret_name}_encrypted")
            and destination
            and destination != getattr(self.instance, self.secret_destination)
        )

    def save(self, commit=True):
        if self.cleaned_data[self.secret_name]:
            setattr(self.instance, self.secret_name, self.cleaned_data[self.secret_name])
        return super().save(commit)


class ConnectionForm(WriteOnlySecretForm):
    """Add or edit a connection."""

    missing_secret_message = "A new connection needs its REST token."
    url = forms.URLField(label="REST URL", max_length=500, assume_scheme="https")
    token = secret_field("REST token")

    class Meta:
        model = Connection
        fields = [
            "name",
            "url",
            "token",
            "key_pattern",
            "display_prefix",
            "list_order",
            "summary_namespace",
            "default_ttl",
            "page_size",
            "scan_budget",
            "timeout",
            "is_default",
            "is_production",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["page_size"].validators.append(between(1, 500))
        self.fields["scan_budget"].validators.append(between(1000, 1_000_000))
        self.fields["timeout"].validators.append(between(0.5, 60))

    def clean_url(self):
        url = self.cleaned_data["url"].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
            return url
        raise forms.ValidationError("Use an https:// URL (http:// is allowed only for localhost).")


def between(low, high):
    def validate(value):
        if not low <= value <= high:
            raise forms.ValidationError(f"Between {low:g} and {high:g}.")

    return validate
