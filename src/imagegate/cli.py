"""The ``imagegate`` command: models, generate, serve, keys.

Exit codes: 0 done, 2 bad input (a field breaks a rule, unknown model, bad usage), 3 auth or
missing credentials, 4 upstream failure, 5 timeout. An error is one line on stderr naming the
field and the rule (and the vendor's code when there is one).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.exceptions import TyperException

from imagegate import __version__
from imagegate.catalog import load_catalog
from imagegate.errors import ImagegateError
from imagegate.providers.base import PollPolicy

app = typer.Typer(
    name="imagegate",
    help="One CLI for text-to-image vendors (DashScope, Chanjing, OpenAI-compatible), "
    "with a local sandbox renderer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_INPUT, EXIT_AUTH, EXIT_UPSTREAM, EXIT_TIMEOUT = 0, 2, 3, 4, 5


def _stdout() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: wide enough that tables do not fold names
        console = Console(highlight=False, width=200)
    return console


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    _stderr().print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def errors_to_exit_codes() -> Iterator[None]:
    """ImagegateError -> one stderr line + its exit code; anything unexpected -> 4."""
    try:
        yield
    except ImagegateError as error:
        raise fail(str(error), error.exit_code) from None
    except (typer.Exit, typer.Abort, TyperException):  # usage errors keep Typer's exit 2
        raise
    except Exception as error:
        if os.environ.get("IMAGEGATE_DEBUG"):
            raise
        raise fail(f"{type(error).__name__}: {error}", EXIT_UPSTREAM) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imagegate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """imagegate: one SDK, CLI and gateway for text-to-image vendors."""


@app.command()
def models(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON."),
) -> None:
    """List every model: vendor and endpoint, size rule, n, prompt limit, options."""
    from imagegate.config import Credentials
    from imagegate.routing import Router

    with errors_to_exit_codes():
        catalog = load_catalog()
        if as_json:
            from imagegate.cli_output import dumps

            typer.echo(dumps([model.to_dict() for model in catalog]))
            return
        from imagegate.cli_output import models_table

        routes = Router(Credentials.from_env(), catalog=catalog).describe()
        _stdout().print(models_table(catalog, routes))


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="What to draw."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (see `imagegate models`)."),
    size: str | None = typer.Option(
        None, "--size", "-s", help="W*H, WxH, a ratio such as 16:9, or a tier such as 2K."
    ),
    n: int | None = typer.Option(None, "-n", "--n", help="Number of images."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (0..2147483647)."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt."),
    prompt_extend: bool | None = typer.Option(
        None, "--prompt-extend/--no-prompt-extend", help="Let the vendor rewrite the prompt."
    ),
    watermark: bool | None = typer.Option(
        None, "--watermark/--no-watermark", help="Ask for the vendor's AI-generated mark."
    ),
    quality: str | None = typer.Option(None, "--quality", help="std or pro (wan2.2-t2i)."),
    clarity: int | None = typer.Option(None, "--clarity", help="1024, 2048 or 4096 (Chanjing)."),
    aspect_ratio: str | None = typer.Option(
        None, "--aspect-ratio", help="Chanjing-style ratio, e.g. 9:16."
    ),
    ref_image: list[str] = typer.Option(
        [], "--ref-image", help="Reference image URL (repeatable)."
    ),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Directory for the images."),
    provider: str | None = typer.Option(
        None, "--provider", help="dashscope, chanjing, openai or sandbox (default: the model's)."
    ),
    sandbox: bool = typer.Option(
        False, "--sandbox", help="Render locally with the sandbox instead of calling a vendor."
    ),
    sync: bool = typer.Option(
        False, "--sync", help="Use the model's synchronous endpoint (wan2.6-t2i, wan2.2-*)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the exact HTTP request the vendor would get; send nothing."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Give up after this many seconds."
    ),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", envvar="IMAGEGATE_POLL_INTERVAL", help="First poll interval (s)."
    ),
    sandbox_latency: float = typer.Option(
        0.0, "--sandbox-latency", envvar="IMAGEGATE_SANDBOX_LATENCY", help="Sandbox task time (s)."
    ),
    sandbox_failure_rate: float = typer.Option(
        0.0,
        "--sandbox-failure-rate",
        envvar="IMAGEGATE_SANDBOX_FAILURE_RATE",
        help="Share of sandbox tasks that fail (0..1).",
    ),
) -> None:
    """Generate images and save them to --out."""
    from imagegate.client import AsyncClient

    fields: dict[str, Any] = {
        "size": size,
        "n": n,
        "seed": seed,
        "negative_prompt": negative,
        "prompt_extend": prompt_extend,
        "watermark": watermark,
        "quality": quality,
        "clarity": clarity,
        "aspect_ratio": aspect_ratio,
        "reference_images": tuple(ref_image),
    }
    policy = None
    if poll_interval is not None:
        policy = PollPolicy(
            initial=poll_interval,
            maximum=max(poll_interval, 5.0),
            timeout=timeout if timeout is not None else 600.0,
        )
    with errors_to_exit_codes():
        if not 0.0 <= sandbox_failure_rate <= 1.0:
            raise typer.BadParameter("must be between 0 and 1", param_hint="--sandbox-failure-rate")
        client = AsyncClient(
            provider=provider,
            sandbox=sandbox,
            out_dir=out,
            poll_policy=policy,
            sandbox_options={"latency": sandbox_latency, "failure_rate": sandbox_failure_rate},
        )
        if dry_run:
            _run(_dry_run(client, prompt, model, sync, as_json, fields))
        else:
            _run(_generate(client, prompt, model, sync, as_json, timeout, fields))


def _run(coro: Any) -> None:
    asyncio.run(coro)


async def _dry_run(
    client: Any, prompt: str, model: str, sync: bool, as_json: bool, fields: dict[str, Any]
) -> None:
    from imagegate.cli_output import dumps, print_dry_run

    try:
        dry = await client.dry_run(prompt, model=model, sync=sync, **fields)
    finally:
        await client.aclose()
    if as_json:
        typer.echo(dumps(dry.to_dict()))
    else:
        print_dry_run(_stderr(), dry)


async def _generate(
    client: Any,
    prompt: str,
    model: str,
    sync: bool,
    as_json: bool,
    timeout: float | None,
    fields: dict[str, Any],
) -> None:
    from imagegate.cli_output import dumps, print_result, result_dict
    from imagegate.cli_progress import ProgressReporter

    err = _stderr()
    try:
        with ProgressReporter(err, label=model) as reporter:
            result = await client.generate(
                prompt, model=model, sync=sync, timeout=timeout, on_progress=reporter, **fields
            )
    finally:
        await client.aclose()
    if as_json:
        typer.echo(dumps(result_dict(result)))
    else:
        print_result(err, result)


# -- gateway commands (written in imagegate.server; imported only when used) -----------------


def _server_commands() -> Any:
    try:
        return importlib.import_module("imagegate.server.commands")
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("imagegate.server"):
            raise fail(
                "the gateway is not available in this installation "
                f"({error.name} is missing); `imagegate serve` and `imagegate keys` need it",
                1,
            ) from None
        raise


@app.command()
def serve(
    host: str | None = typer.Option(
        None, "--host", help="Interface to listen on [default: 127.0.0.1, or config/env]."
    ),
    port: int | None = typer.Option(
        None, "--port", help="TCP port [default: 8000, or config/env; 0 picks a free one]."
    ),
    config: Path | None = typer.Option(None, "--config", help="Gateway TOML configuration."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="IMAGEGATE_DATA_DIR", help="Where tasks and images are kept."
    ),
) -> None:
    """Run the gateway: every vendor protocol, served locally."""
    commands = _server_commands()
    commands.serve(host, port, config, data_dir)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def keys(ctx: typer.Context) -> None:
    """Manage the gateway's API keys (create, list, revoke …)."""
    commands = _server_commands()
    command = typer.main.get_command(commands.keys_app)
    command.main(args=list(ctx.args), prog_name="imagegate keys", standalone_mode=True)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point (``imagegate = imagegate.cli:main``)."""
    return app(args=argv, prog_name="imagegate")


if __name__ == "__main__":  # pragma: no cover
    main()
