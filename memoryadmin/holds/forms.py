from django import forms

from memoryadmin.dashboard.converters import decode_key
from memoryadmin.services import holds


class HoldForm(forms.Form):
    """What to hold, and why.

    From a session's page the key comes as its URL token (`session`), not as text: a key may
    hold newlines or other characters a browser rewrites in a text field.
    """

    KEY, PATTERN = "key", "pattern"
    kind = forms.ChoiceField(
        choices=[
            (KEY, "One session key, exactly as written"),
            (PATTERN, "A pattern: * any characters, ? one, [abc] [a-z] [^abc] one of (or none of), \\ escapes"),
        ],
        initial=KEY,
        required=False,  # not asked when the key comes from a session's page; a typed text is then a key
        widget=forms.RadioSelect,
        label="Hold",
    )
    target = forms.CharField(
        label="Session key or pattern", required=False, strip=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    session = forms.CharField(required=False, widget=forms.HiddenInput)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why these sessions must be kept: the case or request, who asked.",
    )

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        token = self.data.get("session") if self.is_bound else self.initial.get("session")
        self.session_key, self.session_link_damaged = None, False
        if token:
            try:
                self.session_key = decode_key(token)
            except ValueError:
                self.session_link_damaged = True

    def clean(self):
        data = super().clean()
        if self.session_link_damaged:
            raise forms.ValidationError("The link to the session is damaged: open the session again.")
        if self.session_key is not None:
            data["pattern"] = holds.exact_pattern(self.session_key)
        elif data.get("kind") == self.PATTERN:
            data["pattern"] = data.get("target", "")
        else:
            data["pattern"] = holds.exact_pattern(data.get("target", ""))
        try:
            holds.check_pattern(data["pattern"])
        except ValueError as error:
            self.add_error("target", str(error))
        return data


class LiftForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Why the sessions may be cleared again: who decided."
    )
