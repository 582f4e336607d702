"""How the engine finds providers: by model (new tasks) and by name (resuming a task).

The gateway passes its ``routing.Router``, which has both methods; tests pass
``SingleUpstream(provider)``. The engine needs nothing else from routing.
"""

from __future__ import annotations

from typing import Protocol

from imagegate.errors import NotConfigured
from imagegate.providers.base import Provider


class ProviderSource(Protocol):
    def provider_for(self, model: str) -> Provider:
        """The provider that should serve a new task for ``model``."""

    def by_name(self, name: str) -> Provider:
        """The provider a stored task was submitted to (its ``Provider.name``)."""


class SingleUpstream:
    """Every model served by one provider (tests, or a gateway with a single upstream)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def provider_for(self, model: str) -> Provider:
        return self.provider

    def by_name(self, name: str) -> Provider:
        if name != self.provider.name:
            raise NotConfigured(
                f"provider {name!r} is not configured here (only {self.provider.name!r} is)"
            )
        return self.provider
