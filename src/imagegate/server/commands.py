"""``imagegate serve`` and ``imagegate keys …``: the gateway's two command-line faces.

``cli.py`` imports this module lazily, so the SDK and the plain CLI never load the server.

``serve`` opens the data directory (creating and migrating the database), creates a first API
key when there is none and shows it once, says which upstream serves each model (the sandbox for
every model without vendor credentials, in plain words), then runs uvicorn until stopped.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from imagegate.errors import ImagegateError
from imagegate.server.settings import GatewaySettings, load_settings

SANDBOX_NOTE = (
    "The SANDBOX is imagegate's built-in local renderer for development and tests: it draws "
    "placeholder pictures, it is NOT the real model."
)


def _settings(config: Path | None, **overrides: Any) -> GatewaySettings:
    try:
        return load_settings(config, **overrides)
    except ImagegateError as error:
        typer.echo(f"imagegate: {error.message}", err=True)
        raise typer.Exit(2) from None


# -- serve ---------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed (so the URL printed is real).

    ``IPPROTO_TCP`` is named on purpose: asyncio turns Nagle off (``TCP_NODELAY``) only on
    sockets whose ``proto`` says TCP, and with Nagle on every answer on a kept-alive
    connection waits ~40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        typer.echo(f"imagegate serve: cannot listen on {host}:{port}: {error.strerror}", err=True)
        raise typer.Exit(1) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _routes_table(routes: dict[str, str]) -> Table:
    table = Table(title="Models and their upstreams", title_justify="left")
    table.add_column("model")
    table.add_column("served by")
    for model, served_by in routes.items():
        label = served_by
        if served_by.startswith("sandbox"):
            label = "SANDBOX" + served_by[len("sandbox") :]
        table.add_row(model, label)
    return table


def _first_key(state: Any, settings: GatewaySettings) -> Any | None:
    """A key created on the first start (none exists yet), with its secret; else None."""
    if state.keys.list():
        return None
    return state.keys.create(
        "default",
        qps=settings.default_qps,
        max_in_flight=settings.default_max_in_flight,
        is_default=True,
    )


def serve(host: str | None, port: int | None, config: Path | None, data_dir: Path | None) -> None:
    """Run the gateway until SIGINT/SIGTERM (graceful: leases are handed back)."""
    import uvicorn

    from imagegate.server.app import create_app, open_state

    settings = _settings(config, host=host, port=port, data_dir=data_dir)
    out = Console(soft_wrap=True)
    sock = _bind(settings.host, settings.port)
    bound_port = sock.getsockname()[1]
    settings = settings.model_copy(update={"port": bound_port})
    try:
        state = open_state(settings)
    except Exception as error:
        sock.close()
        typer.echo(f"imagegate serve: cannot open {settings.data_dir}: {error}", err=True)
        raise typer.Exit(1) from None
    created = _first_key(state, settings)
    routes = state.engine.providers.describe()

    out.print(f"imagegate gateway on {settings.url}", markup=False, highlight=False)
    out.print(f"data directory: {Path(settings.data_dir).resolve()}", markup=False)
    out.print(
        f"  DashScope: {settings.url}/api/v1   Chanjing: {settings.url}/open/v1   "
        f"OpenAI-style: {settings.url}/v1",
        markup=False,
    )
    if created is not None:
        out.print("A first API key was created. It is shown once, now; keep it:", markup=False)
        out.print(f"  app_id: {created.app_id}", markup=False, highlight=False)
        out.print(f"  key:    {created.secret}", markup=False, highlight=False)
    else:
        active = len(state.keys.list(include_revoked=False))
        out.print(
            f"{active} active API key(s) (keys are shown only when created; make another with "
            "`imagegate keys create`).",
            markup=False,
        )
    out.print(_routes_table(routes))
    sandboxed = [model for model, served in routes.items() if served.startswith("sandbox")]
    if sandboxed:
        if len(sandboxed) == len(routes):
            which = "so every model is served by the SANDBOX"
        else:
            which = "so the models marked SANDBOX are served by the SANDBOX"
        out.print(
            f"{len(sandboxed)} of {len(routes)} models have no vendor credentials here, {which}. "
            f"{SANDBOX_NOTE} Set the vendor's variables (e.g. DASHSCOPE_API_KEY) and restart "
            "to use the real vendor.",
            markup=False,
        )
    sys.stdout.flush()

    app = create_app(state, settings=settings)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", lifespan="on", timeout_graceful_shutdown=10)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.close()


# -- keys ------------------------------------------------------------------------------------

keys_app = typer.Typer(
    name="keys",
    help="Manage the gateway's API keys (stored hashed under the data directory).",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = typer.Option(
    None, "--data-dir", envvar="IMAGEGATE_DATA_DIR", help="The gateway's data directory."
)
ConfigFile = typer.Option(None, "--config", help="Gateway TOML configuration.")


def _open_keys(config: Path | None, data_dir: Path | None) -> tuple[Any, GatewaySettings]:
    from imagegate.engine.service import open_gateway

    settings = _settings(config, data_dir=data_dir)
    try:
        state = open_gateway(settings.data_dir, settings.database_url)
    except Exception as error:
        typer.echo(f"imagegate keys: cannot open {settings.data_dir}: {error}", err=True)
        raise typer.Exit(1) from None
    return state, settings


@keys_app.command("create")
def create_key(
    name: str = typer.Option("", "--name", help="A label for the key."),
    qps: float | None = typer.Option(None, "--qps", help="Requests per second allowed."),
    max_in_flight: int | None = typer.Option(
        None, "--max-in-flight", help="Unfinished tasks allowed at once."
    ),
    model: list[str] = typer.Option([], "--model", help="Allow only this model (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"app_id": …, "key": …}.'),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Create a key; its secret is printed once and never stored in clear."""
    from imagegate.catalog import load_catalog

    state, settings = _open_keys(config, data_dir)
    catalog = load_catalog()
    unknown = [m for m in model if m not in catalog]
    if unknown:
        typer.echo(
            f"imagegate keys create: --model {unknown[0]!r} is not in the catalog "
            f"(known: {', '.join(catalog.names())})",
            err=True,
        )
        raise typer.Exit(2)
    models = [catalog.get(m).name for m in model]
    try:
        created = state.keys.create(
            name,
            qps=settings.default_qps if qps is None else qps,
            max_in_flight=settings.default_max_in_flight
            if max_in_flight is None
            else max_in_flight,
            models=models,
        )
    except ValueError as error:
        typer.echo(f"imagegate keys create: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        state.close()
    if as_json:
        typer.echo(json.dumps({"app_id": created.app_id, "key": created.secret}))
        return
    typer.echo(f"app_id: {created.app_id}")
    typer.echo(f"key:    {created.secret}")
    typer.echo(
        "The key is shown once, now. Use it as the Bearer token (DashScope, OpenAI-style) or "
        "as Chanjing's secret_key with this app_id."
    )


@keys_app.command("list")
def list_keys(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Every key with its limits (never the secrets: only their hashes are stored)."""
    state, _ = _open_keys(config, data_dir)
    try:
        records = state.keys.list()
    finally:
        state.close()
    rows = [
        {
            "app_id": record.key.id,
            "name": record.key.name,
            "qps": record.key.qps,
            "max_in_flight": record.key.max_in_flight,
            "models": list(record.key.models),
            "created_at": record.created_at.isoformat(),
            "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        }
        for record in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} API key(s)", title_justify="left")
    table.add_column("app_id", no_wrap=True, min_width=27)
    for column in ("name", "qps", "in flight", "models", "created (UTC)", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["app_id"],
            row["name"],
            f"{row['qps']:g}",
            str(row["max_in_flight"]),
            ", ".join(row["models"]) or "all",
            row["created_at"][:16].replace("T", " "),
            "revoked" if row["revoked_at"] else "active",
        )
    Console(soft_wrap=True).print(table)


@keys_app.command("revoke")
def revoke_key(
    app_id: str = typer.Argument(..., help="The app_id of the key to revoke."),
    data_dir: Path | None = DataDir,
    config: Path | None = ConfigFile,
) -> None:
    """Revoke a key at once: its requests get 401 and its Chanjing tokens stop working."""
    state, _ = _open_keys(config, data_dir)
    try:
        revoked = state.keys.revoke(app_id)
        known = state.keys.get(app_id) is not None
    finally:
        state.close()
    if not revoked:
        reason = "is already revoked" if known else "does not exist"
        typer.echo(f"imagegate keys revoke: key {app_id!r} {reason}.", err=True)
        raise typer.Exit(1 if known else 2)
    typer.echo(f"revoked {app_id}")
