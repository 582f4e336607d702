"""Which provider serves each model.

A model is served by the vendor its catalog entry names, unless a ``provider=`` override says
otherwise, or ``sandbox=True`` sends everything to the local renderer. A vendor without
credentials is an error that says which environment variables to set, unless
``fallback_to_sandbox`` (the gateway's embedded default) sends that model to the sandbox and
``describe()`` says so plainly. Provider instances are built lazily (vendor adapters are
imported only when first needed) and cached by name, so the gateway can resume a stored task
with ``by_name(task.provider)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagegate.catalog import Catalog, Model, load_catalog
from imagegate.config import Credentials
from imagegate.errors import InvalidRequest, NotConfigured
from imagegate.providers.base import PollPolicy, Provider

PROVIDERS = ("dashscope", "chanjing", "openai", "sandbox")

#: what a dry run puts where a secret would go (the vendor pages write it the same way)
PLACEHOLDERS = {
    "dashscope_api_key": "$DASHSCOPE_API_KEY",
    "chanjing_app_id": "$CHANJING_APP_ID",
    "chanjing_secret_key": "$CHANJING_SECRET_KEY",
    "openai_api_key": "$IMAGEGATE_OPENAI_API_KEY",
    "openai_base_url": "$IMAGEGATE_OPENAI_BASE_URL",
}


def _check_name(name: str) -> str:
    if name not in PROVIDERS:
        raise InvalidRequest(
            f"provider {name!r} is not known; use one of {', '.join(PROVIDERS)}",
            field="provider",
        )
    return name


class Router:
    """Maps model names to providers."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        sandbox: bool = False,
        sandbox_options: dict[str, Any] | None = None,
        catalog: Catalog | None = None,
        provider: str | None = None,
        fallback_to_sandbox: bool = False,
        poll_policy: PollPolicy | None = None,
    ) -> None:
        self.credentials = credentials if credentials is not None else Credentials.from_env()
        self.sandbox = sandbox
        self.sandbox_options = dict(sandbox_options or {})
        self.catalog = catalog or load_catalog()
        self.override = _check_name(provider) if provider else None
        self.fallback_to_sandbox = fallback_to_sandbox
        self.poll_policy = poll_policy
        self._providers: dict[str, Provider] = {}
        self._previews: dict[str, Provider] = {}

    # -- decisions ----------------------------------------------------------------------

    def vendor_for(self, model: str | Model) -> str:
        """The provider name that would serve ``model`` (no instance built, nothing raised)."""
        entry = model if isinstance(model, Model) else self.catalog.get(model)
        if self.sandbox:
            return "sandbox"
        vendor = self.override or entry.vendor
        if vendor == "sandbox" or self.credentials.configured(vendor):
            return vendor
        return "sandbox" if self.fallback_to_sandbox else vendor

    def provider_for(self, model: str) -> Provider:
        """The provider serving ``model``; ``NotConfigured`` names the variables to set."""
        entry = self.catalog.get(model)
        name = self.vendor_for(entry)
        if name != "sandbox" and not self.credentials.configured(name):
            missing = self.credentials.missing(name)
            raise NotConfigured(
                f"{entry.name} is served by {name}, which has no credentials here: set "
                f"{' and '.join(missing)}, or use --sandbox (sandbox=True) to render it "
                "locally with the sandbox",
                field="model",
            )
        return self.by_name(name)

    def describe(self) -> dict[str, str]:
        """model -> who serves it, in words (``dashscope``, ``sandbox (no DASHSCOPE_API_KEY)``)."""
        routes: dict[str, str] = {}
        for entry in self.catalog:
            if self.sandbox:
                routes[entry.name] = "sandbox"
                continue
            vendor = self.override or entry.vendor
            if vendor == "sandbox" or self.credentials.configured(vendor):
                routes[entry.name] = vendor
                continue
            missing = ", ".join(self.credentials.missing(vendor))
            routes[entry.name] = (
                f"sandbox (no {missing})"
                if self.fallback_to_sandbox
                else f"not configured (set {missing})"
            )
        return routes

    # -- instances ------------------------------------------------------------------------

    def by_name(self, name: str) -> Provider:
        """The cached provider called ``name`` (the gateway resumes stored tasks with this)."""
        _check_name(name)
        found = self._providers.get(name)
        if found is None:
            if name != "sandbox" and not self.credentials.configured(name):
                missing = " and ".join(self.credentials.missing(name))
                raise NotConfigured(
                    f"provider {name} has no credentials here: set {missing}", field="provider"
                )
            found = self._build(name, self.credentials)
            self._providers[name] = found
        return found

    def preview(self, model: str) -> Provider:
        """A provider that can describe the call for ``model`` without any secret.

        Built with placeholder credentials (``$DASHSCOPE_API_KEY`` ...) and the configured base
        URLs, so ``--dry-run`` works on a machine with no credentials and never prints one.
        """
        name = self.vendor_for(model)
        if name == "sandbox":
            return self.by_name("sandbox")
        found = self._previews.get(name)
        if found is None:
            creds = self.credentials
            placeholder = Credentials(
                dashscope_api_key=PLACEHOLDERS["dashscope_api_key"],
                dashscope_base_url=creds.dashscope_base_url,
                chanjing_app_id=PLACEHOLDERS["chanjing_app_id"],
                chanjing_secret_key=PLACEHOLDERS["chanjing_secret_key"],
                chanjing_base_url=creds.chanjing_base_url,
                openai_base_url=creds.openai_base_url or PLACEHOLDERS["openai_base_url"],
                openai_api_key=PLACEHOLDERS["openai_api_key"],
            )
            found = self._build(name, placeholder)
            self._previews[name] = found
        return found

    def _build(self, name: str, creds: Credentials) -> Provider:
        # Vendor adapters are imported here, not at module level: the CLI's `models` and the
        # sandbox path never pay for them, and routing has no import-time dependency on them.
        if name == "sandbox":
            from imagegate.providers.sandbox import SandboxProvider

            options = dict(self.sandbox_options)
            if options.get("state_dir") is not None:
                options["state_dir"] = Path(options["state_dir"])
            return SandboxProvider(catalog=self.catalog, **options)
        if name == "dashscope":
            from imagegate.providers.dashscope import DashScopeProvider

            assert creds.dashscope_api_key is not None
            return DashScopeProvider(
                creds.dashscope_api_key,
                base_url=creds.dashscope_base_url,
                poll_policy=self.poll_policy,
                catalog=self.catalog,
            )
        if name == "chanjing":
            from imagegate.providers.chanjing import ChanjingProvider

            assert creds.chanjing_app_id is not None and creds.chanjing_secret_key is not None
            return ChanjingProvider(
                creds.chanjing_app_id,
                creds.chanjing_secret_key,
                base_url=creds.chanjing_base_url,
                poll_policy=self.poll_policy,
                catalog=self.catalog,
            )
        from imagegate.providers.openai_compat import OpenAICompatProvider

        assert creds.openai_base_url is not None and creds.openai_api_key is not None
        return OpenAICompatProvider(
            creds.openai_base_url, creds.openai_api_key, catalog=self.catalog
        )

    async def aclose(self) -> None:
        """Close every provider built so far (each owns its HTTP connections)."""
        built = [*self._providers.values(), *self._previews.values()]
        self._providers.clear()
        self._previews.clear()
        for provider in built:
            await provider.aclose()
