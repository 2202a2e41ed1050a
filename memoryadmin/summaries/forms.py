from django import forms

from memoryadmin.connections.forms import WriteOnlySecretForm, between, secret_field

from .models import SummarizerSettings


class SummarizerSettingsForm(WriteOnlySecretForm):
    secret_names = ("api_key",)
    secret_destination = "base_url"
    api_key = secret_field("API key")
    base_url = forms.URLField(label="Base URL", max_length=500, required=False, assume_scheme="https")

    class Meta:
        model = SummarizerSettings
        fields = ["provider", "base_url", "model", "api_key", "max_input_chars", "timeout", "prompt_template"]
        widgets = {"prompt_template": forms.Textarea(attrs={"rows": 8})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["api_key"].help_text = (
            self.fields["api_key"].help_text + " Local servers (Ollama, vLLM) may need none."
        ).strip()
        self.fields["max_input_chars"].validators.append(between(1000, 1_000_000))
        self.fields["timeout"].validators.append(between(1, 600))

    def clean(self):
        data = super().clean()
        if data.get("provider") == "openai":
            for name in ("base_url", "model"):
                if not data.get(name):
                    self.add_error(name, "Needed for an OpenAI-compatible endpoint.")
        if "{transcript}" not in data.get("prompt_template", "{transcript}"):
            self.add_error("prompt_template", "The prompt must contain {transcript}.")
        return data
