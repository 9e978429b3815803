"""The exceptions users see: each carries a one-line message and, where useful, a hint."""

from __future__ import annotations


class NomadicError(Exception):
    """Base of every error meant for a user; tasks.py maps it once to invoke.Exit."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(NomadicError):
    """A setting, flag or definition file is missing or malformed."""


class ToolMissing(NomadicError):
    """An external program (packer, qemu, ssh) is not installed."""


class CommandFailed(NomadicError):
    """An external program ran and exited non-zero."""


class RenderError(NomadicError):
    """A template could not be rendered (names template, line and setting)."""


class TransferError(NomadicError):
    """A download or upload failed, or what arrived does not match its checksum."""


class PlanError(NomadicError):
    """The requested cluster cannot be planned (count, servers, network)."""


class CloudError(NomadicError):
    """The cloud API refused or failed a request."""


class CapacityError(CloudError):
    """No host capacity in any availability domain after the configured retries."""


class LimitExceeded(CloudError):
    """A service limit or the Always Free guard stopped the launch."""


class ProviderError(NomadicError):
    """A local VM or other provider resource failed."""


class Interrupted(NomadicError):
    """The user pressed Ctrl-C; the message says what may be left behind."""

    exit_code = 130
