"""Where a stack's alerts go: the typed `alerting` settings."""

from __future__ import annotations

from pydantic import Field, StrictBool, field_validator, model_validator

from components.model.addresses import Email, Hostname, quoted
from components.model.strict import StrictModel


class AlertingSettings(StrictModel):
    """Where alerts go: mail over SMTP, and a Rocket.Chat incoming webhook."""

    smtp_host: Hostname
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: StrictBool = True
    """The relay speaks STARTTLS and Alertmanager insists on it; `false` only for a relay on the
    LAN that takes mail without a login."""
    smtp_from: Email
    smtp_to: list[Email] = Field(min_length=1)
    smtp_username: str | None = Field(default=None, min_length=1, max_length=254)
    """Login at the relay; its password is the encrypted config key `smtp_password`. Unset: the
    relay takes mail without a login."""
    chat_webhook: StrictBool = False
    """Also post alerts to a Rocket.Chat incoming webhook, whose URL (it holds the token) is the
    encrypted config key `alert_webhook_url`."""

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> AlertingSettings:
        if self.smtp_username and not self.smtp_starttls:
            raise ValueError(
                "smtp_starttls: false would send smtp_password in clear text; use a relay "
                "with STARTTLS, or one on the LAN without smtp_username"
            )
        return self

    @field_validator("smtp_username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(
                f"{quoted(value)} is not a login name; use one word without spaces, "
                'e.g. "alerts@nap-dms.example.org"'
            )
        return value
