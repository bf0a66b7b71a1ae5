"""`patchbay worker`: run generation jobs from RabbitMQ in this process."""

from __future__ import annotations

import typer

from patchbay.cli.context import errors, settings_of
from patchbay.logging import configure_logging


def worker(
    ctx: typer.Context,
    name: str = typer.Option("worker", help="how this worker shows in `patchbay status`"),
) -> None:
    """Take jobs from the RabbitMQ queue, run them, store and publish their outcome."""
    from patchbay.worker.runner import run_worker  # the core's imports are heavy

    settings = settings_of(ctx)
    if settings.rabbitmq_url is None:
        errors.print("[red]a worker needs RabbitMQ:[/] set PATCHBAY_RABBITMQ_URL (amqp://…)")
        raise typer.Exit(2)
    configure_logging(settings.log, module=name)
    run_worker(settings, name=name)
