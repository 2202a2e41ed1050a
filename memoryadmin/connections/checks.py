import logging

from django.conf import settings
from django.core.checks import Error, Warning, register

from memoryadmin.services.secrets import MISSING_KEYS_MESSAGE

log = logging.getLogger(__name__)


@register()
def encryption_keys_configured(app_configs, **kwargs):
    if any(key.strip() for key in settings.MEMORYADMIN_ENCRYPTION_KEYS):
        return []
    if settings.DEBUG:
        return [
            Warning(
                "Secrets are encrypted with a key derived from SECRET_KEY because DEBUG is on and "
                "MEMORYADMIN_ENCRYPTION_KEYS is not set. Do not use this outside development.",
                hint=MISSING_KEYS_MESSAGE,
                id="memoryadmin.W001",
            )
        ]
    return [Error(MISSING_KEYS_MESSAGE, id="memoryadmin.E001")]
