from urllib.parse import urlsplit

from django import forms

from memoryadmin.services.secrets import SecretUnreadable, masked

from .models import Connection

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def secret_field(label, help_text=""):
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def in_sentence(label):
    """A field's label inside a sentence: "Read-only token" -> "read-only token"; "REST URL" stays."""
    return label[0].lower() + label[1:] if label[1:2].islower() else label


class WriteOnlySecretForm(forms.ModelForm):
    """A model form whose secrets are never sent back: each shown as ••••last4, empty keeps it.

    Empty keeps a stored secret only while the secrets' destination (the URL they are sent to) stays the
    same: otherwise anyone who may edit the form could have a stored secret sent to a server of theirs.
    An optional secret named in `removable_secrets` gets, once stored, a checkbox that removes it.
    """

    secret_names = ("token",)  # the form fields and the model's plaintext attributes
    secret_destination = "url"  # the field naming where the secrets are sent
    missing_secret_messages = {}  # secret name -> the error for a new object without it; others are optional
    removable_secrets = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        order = list(self.fields)
        for name in self.secret_names:
            if not self._is_stored(name):
                if self.instance.pk and name in self.removable_secrets:
                    self.fields[name].help_text += " None stored."
                continue
            try:
                stored = masked(getattr(self.instance, name))
            except SecretUnreadable:
                stored = "unreadable with the current keys, enter it again"
            field = self.fields[name]
            field.help_text = f"{field.help_text} Stored: {stored}. Leave empty to keep it.".strip()
            if name in self.removable_secrets:
                self.fields[f"remove_{name}"] = forms.BooleanField(
                    label=f"Remove the stored {in_sentence(field.label)}", required=False
                )
                order.insert(order.index(name) + 1, f"remove_{name}")
        self.order_fields(order)

    def clean(self):
        data = super().clean()
        for name in self.secret_names:
            label = in_sentence(self.fields[name].label)
            removed = data.get(f"remove_{name}")
            if data.get(name):
                if removed:
                    self.add_error(name, f"Either enter a new {label} or remove the stored one, not both.")
            elif name in self.missing_secret_messages and not self.instance.pk:
                self.add_error(name, self.missing_secret_messages[name])
            elif not removed and self._stored_secret_would_move(name, data):
                destination = in_sentence(self.fields[self.secret_destination].label)
                self.add_error(
                    name,
                    f"The {destination} changed: enter the {label} again. "
                    f"A stored {label} is only sent to the {destination} it was saved with.",
                )
        return data

    def _is_stored(self, name):
        return bool(self.instance.pk and getattr(self.instance, f"{name}_encrypted"))

    def _stored_secret_would_move(self, name, data):
        # The instance still holds the saved values here: the form's are copied onto it after clean().
        destination = data.get(self.secret_destination)
        return bool(
            self._is_stored(name) and destination and destination != getattr(self.instance, self.secret_destination)
        )

    def save(self, commit=True):
        for name in self.secret_names:
            if self.cleaned_data[name]:
                setattr(self.instance, name, self.cleaned_data[name])
            elif self.cleaned_data.get(f"remove_{name}"):
                setattr(self.instance, name, "")
        return super().save(commit)


class ConnectionForm(WriteOnlySecretForm):
    """Add or edit a connection: its full token, and optionally its read-only one."""

    secret_names = ("token", "read_only_token")
    missing_secret_messages = {"token": "A new connection needs its REST token."}
    removable_secrets = ("read_only_token",)
    url = forms.URLField(label="REST URL", max_length=500, assume_scheme="https")
    token = secret_field(
        "REST token",
        "The database's full token (UPSTASH_REDIS_REST_TOKEN): writes use it, and reads too "
        "unless a read-only token is set.",
    )
    read_only_token = secret_field(
        "Read-only token",
        "Optional: the database's read-only token (Upstash console, “Read-Only Token”). "
        "When set, every read uses it and only writes use the full token.",
    )

    class Meta:
        model = Connection
        fields = [
            "name",
            "url",
            "token",
            "read_only_token",
            "key_pattern",
            "display_prefix",
            "list_order",
            "summary_namespace",
            "default_ttl",
            "page_size",
            "scan_budget",
            "max_request_bytes",
            "timeout",
            "is_default",
            "is_production",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["page_size"].validators.append(between(1, 500))
        self.fields["scan_budget"].validators.append(between(1000, 1_000_000))
        self.fields["max_request_bytes"].validators.append(between(1_000_000, 1_000_000_000))
        self.fields["timeout"].validators.append(between(0.5, 60))

    def clean(self):
        data = super().clean()
        full, read_only = self._token_in_effect(data, "token"), self._token_in_effect(data, "read_only_token")
        if read_only and read_only == full:
            self.add_error(
                "read_only_token",
                "This is the REST token itself: enter the database's read-only token, or leave this empty.",
            )
        return data

    def _token_in_effect(self, data, name):
        """The token the form would save: the one typed, else the stored one (None when unreadable)."""
        if data.get(name) or data.get(f"remove_{name}"):
            return data.get(name) or ""
        try:
            return getattr(self.instance, name) if self._is_stored(name) else ""
        except SecretUnreadable:
            return None

    def clean_url(self):
        url = self.cleaned_data["url"].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
            return url
        raise forms.ValidationError("Use an https:// URL (http:// is allowed only for localhost).")


def between(low, high):
    def number(value):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"

    def validate(value):
        if not low <= value <= high:
            raise forms.ValidationError(f"Between {number(low)} and {number(high)}.")

    return validate
