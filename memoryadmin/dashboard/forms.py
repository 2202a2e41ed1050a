from django import forms

from memoryadmin.services.sessions import MAX_TTL, NEWEST_FIRST, OLDEST_FIRST

from .converters import decode_key

TTL_PRESETS = [
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("2592000", "30 days"),
    ("custom", "Custom…"),
]
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


# Numbers from links, bounded before they reach the store (which would refuse them with an error
# that reads like an outage). SCAN cursors are unsigned 64-bit. A message position becomes a list
# index counted from the end, -(position + 1), which must fit a signed 64-bit integer.
MAX_SCAN_CURSOR = 2**64 - 1
MAX_MESSAGE_POSITION = 2**63 - 2


def _bounded(maximum, what, **options):
    error = f"{what} is a whole number from 0 to {maximum}"
    return forms.IntegerField(
        min_value=0,
        max_value=maximum,
        error_messages={"invalid": error, "min_value": error, "max_value": error},
        **options,
    )


class LinkForm(forms.Form):
    """The parameters of a link: a damaged link is a 400 that says what is wrong."""

    def problem(self):
        return "; ".join(error for errors in self.errors.values() for error in errors)


NO_TTL = "none"  # the list's filter: only sessions that never expire


class SessionSearchForm(LinkForm):
    q = forms.CharField(required=False, max_length=1024, strip=False)
    cursor = _bounded(MAX_SCAN_CURSOR, "a scan position (cursor)", required=False)
    after = forms.CharField(required=False, max_length=4096)
    ttl = forms.ChoiceField(choices=[("", "any TTL"), (NO_TTL, "no TTL")], required=False)

    def clean_cursor(self):
        # SCAN takes the cursor as text.
        cursor = self.cleaned_data["cursor"]
        return None if cursor is None else str(cursor)

    def clean_after(self):
        token = self.cleaned_data["after"]
        if not token:
            return None
        try:
            return decode_key(token)
        except ValueError:
            raise forms.ValidationError("the position in the scan (after) is damaged") from None


class TranscriptWindowForm(LinkForm):
    before = _bounded(MAX_MESSAGE_POSITION, "a message position (before)", required=False)
    order = forms.ChoiceField(choices=[(NEWEST_FIRST, NEWEST_FIRST), (OLDEST_FIRST, OLDEST_FIRST)], required=False)


class RawMessageForm(TranscriptWindowForm):
    """The raw-element link: its message position comes from the path."""

    index = _bounded(MAX_MESSAGE_POSITION, "a message number")


class MessageRedactionForm(RawMessageForm):
    """The redaction of one message, as confirmed: the SHA-1 of the element the page showed."""

    sha1 = forms.RegexField(r"\A[0-9a-f]{40}\Z", error_messages={"invalid": "the message's fingerprint (sha1)"})


class TtlForm(forms.Form):
    preset = forms.ChoiceField(choices=TTL_PRESETS, label="Expire in")
    custom_value = forms.IntegerField(min_value=1, required=False, label="Amount")
    custom_unit = forms.ChoiceField(choices=[(unit, unit) for unit in UNIT_SECONDS], required=False, label="Unit")

    def clean(self):
        data = super().clean()
        preset = data.get("preset")
        if preset is None:
            return data
        if preset != "custom":
            data["seconds"] = int(preset)
            return data
        if not data.get("custom_value") or not data.get("custom_unit"):
            raise forms.ValidationError("Give an amount and a unit for a custom TTL.")
        seconds = data["custom_value"] * UNIT_SECONDS[data["custom_unit"]]
        if seconds > MAX_TTL:
            raise forms.ValidationError(f"A TTL can be at most {MAX_TTL // 86400} days.")
        data["seconds"] = seconds
        return data


def ttl_form_for(connection, data=None):
    """The TTL form, offering the connection's default TTL first."""
    seconds = connection.default_ttl
    if str(seconds) in dict(TTL_PRESETS):
        initial = {"preset": str(seconds)}
    else:
        unit = max((unit for unit, size in UNIT_SECONDS.items() if seconds % size == 0), key=UNIT_SECONDS.get)
        initial = {"preset": "custom", "custom_value": seconds // UNIT_SECONDS[unit], "custom_unit": unit}
    return TtlForm(data, initial=initial)
