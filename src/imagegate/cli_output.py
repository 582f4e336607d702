"""How the CLI shows things: the model table, a generation result, a dry-run request."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from imagegate.catalog import Catalog, Model
from imagegate.client import DryRun
from imagegate.types import GenerationResult, ImageResult

SANDBOX_NOTE = "sandbox render: a local placeholder picture, not a model's output"


def dumps(data: Any) -> str:
    """Pretty JSON that keeps key order and non-ASCII text as written (the vendor pages do)."""
    return json.dumps(data, ensure_ascii=False, indent=2)


def _n(model: Model) -> str:
    text = f"{model.n.min}-{model.n.max}"
    return f"{text} (default {model.n.default})" if model.n.default is not None else text


def _options(model: Model) -> str:
    parts = []
    for name, option in model.options.items():
        values = "/".join(map(str, option.values)) if option.values else None
        default = json.dumps(option.default) if isinstance(option.default, bool) else option.default
        parts.append(f"{name}={default}" + (f" ({values})" if values else ""))
    if model.seed is not None:
        parts.append("seed")
    if model.negative_prompt_max is not None:
        parts.append(f"negative_prompt≤{model.negative_prompt_max}")
    if model.reference_images is not None:
        refs = model.reference_images
        parts.append(f"ref images≤{refs.max}" + ("" if refs.forwarded else " (not forwarded)"))
    if model.sync:
        parts.append("sync")
    return ", ".join(parts) or "-"


def models_table(catalog: Catalog, routes: dict[str, str]) -> Table:
    table = Table(title="imagegate models", show_lines=False)
    table.add_column("model", no_wrap=True, style="bold")
    table.add_column("vendor / endpoint")
    table.add_column("sizes")
    table.add_column("n", no_wrap=True)
    table.add_column("prompt", justify="right", no_wrap=True)
    table.add_column("options")
    table.add_column("served by")
    for model in catalog:
        name = model.name + ("".join(f"\n[dim]{alias}[/dim]" for alias in model.aliases))
        size = model.size.describe()
        if model.size.default:
            size += f"; default {model.size.default}"
        table.add_row(
            name,
            f"{model.vendor}\n[dim]{model.endpoint}[/dim]",
            size,
            _n(model),
            str(model.prompt_max) if model.prompt_max is not None else "-",
            _options(model),
            routes.get(model.name, "-"),
        )
    return table


def image_dict(index: int, image: ImageResult) -> dict[str, Any]:
    return {
        "index": index,
        "ok": image.ok,
        "path": str(image.path) if image.path else None,
        "width": image.width,
        "height": image.height,
        "seed": image.seed,
        "url": image.url if image.url and not image.url.startswith("data:") else None,
        "actual_prompt": image.actual_prompt,
        "error_code": image.error_code,
        "error_message": image.error_message,
    }


def result_dict(result: GenerationResult) -> dict[str, Any]:
    task = result.task
    return {
        "task_id": task.id,
        "status": task.status.value,
        "model": task.model,
        "provider": task.provider,
        "upstream_task_id": task.upstream_task_id,
        "request_id": task.request_id,
        "sandbox": task.provider == "sandbox",
        "images": [image_dict(i, image) for i, image in enumerate(result.images)],
        "usage": (
            {"image_count": task.usage.image_count, "size": task.usage.size} if task.usage else None
        ),
        "warnings": list(task.warnings),
    }


def print_result(err: Console, result: GenerationResult) -> None:
    """One line per saved file on stdout (easy to pipe); everything else on stderr."""
    task = result.task
    for index, image in enumerate(result.images):
        if image.ok:
            seed = f"  seed {image.seed}" if image.seed is not None else ""
            typer.echo(f"{image.path}  {image.width}x{image.height}{seed}")
        else:
            err.print(f"image {index} failed: {image.error_message} [{image.error_code}]")
    usage = f", {task.usage.image_count} image(s)" if task.usage else ""
    err.print(f"task {task.id} {task.status.value}{usage}", highlight=False)
    if task.provider == "sandbox":
        err.print(f"note: {SANDBOX_NOTE}", highlight=False)
    for warning in task.warnings:
        if not warning.startswith("image "):
            err.print(f"warning: {warning}", highlight=False)


def print_dry_run(err: Console, dry: DryRun) -> None:
    """The request as the vendor would receive it: request line, headers, blank line, body.

    Written to stdout verbatim (no Rich markup or wrapping), so it can be copied or parsed.
    """
    if dry.call is None:
        err.print("dry run: the sandbox renders locally; no HTTP request would be sent")
        typer.echo(dumps(dry.request.to_dict()))
    else:
        lines = [f"{dry.call.method} {dry.call.url}"]
        lines += [f"{name}: {value}" for name, value in dry.call.headers.items()]
        text = "\n".join(lines)
        if dry.call.body is not None:
            text += "\n\n" + dumps(dry.call.body)
        typer.echo(text)
    for warning in dry.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
