"""`stripe-sync segments …`: deliver the segment change feed to a receiver; its `status` lines."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer

from orchestration.core.errors import StripeSyncError
from orchestration.core.settings import load_settings

if TYPE_CHECKING:
    from orchestration.delivery import DeadLetter, EndpointStatus

segments_app = typer.Typer(
    help="Deliver segment changes (entries and exits) to a webhook receiver.",
    rich_markup_mode=None,
    no_args_is_help=True,
)

DEAD_LETTERS_SHOWN = 5  # in `status`; the table holds them all


class DeliveryFailedError(StripeSyncError):
    """The receiver failed a change (unreachable, 5xx, refused the signature): the cursor stays."""


@segments_app.command("deliver")
def deliver(
    url: Annotated[
        str | None,
        typer.Option(help="Receiver URL (https outside localhost); default SEGMENT_WEBHOOK_URL."),
    ] = None,
) -> None:
    """POST pending segment changes, signed, at-least-once; the cursor moves after each 2xx."""
    from orchestration.delivery import deliver_changes, endpoint_from_settings
    from orchestration.embedded.environment import check_database, warehouse_url

    settings = load_settings()
    endpoint = endpoint_from_settings(settings, url)
    database_url = warehouse_url(settings)
    check_database(database_url)
    result = deliver_changes(database_url, endpoint)
    dead = f", {result.dead_lettered} dead-lettered" if result.dead_lettered else ""
    typer.echo(
        f"segment changes to {endpoint.name}: {result.delivered} delivered{dead},"
        f" {result.pending} pending (cursor at change {result.last_change_id})"
    )
    if result.dead_lettered:
        ids = ", ".join(str(change_id) for change_id in result.dead_letter_ids[:10])
        typer.echo(
            f"dead letters (refused for good, skipped): change {ids}; see `stripe-sync status`"
        )
    if result.failed:
        raise DeliveryFailedError(
            result.stopped or "the receiver failed",
            "the next `stripe-sync segments deliver` (or the sensor) resumes at that change",
        )


def render_delivery_status(
    statuses: list[EndpointStatus], dead_letters: list[DeadLetter]
) -> list[str]:
    """`status` lines: one per receiver (cursor, backlog, dead letters), then the latest dead
    letters. None before the first delivery."""
    lines = []
    for status in statuses:
        last = status.last_delivered_at
        when = last.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if last else "never"
        lines.append(
            f"segment webhook {status.endpoint_name}: cursor at change {status.last_change_id},"
            f" {status.pending} pending, {status.delivered_count} delivered (last {when}),"
            f" {status.dead_letter_count} dead letter(s)"
        )
        if status.last_error and status.pending:
            lines.append(f"  last error: {status.last_error}")
    for letter in dead_letters[:DEAD_LETTERS_SHOWN]:
        at = letter.dead_lettered_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(
            f"  dead letter: change {letter.change_id} to {letter.endpoint_name}:"
            f" {letter.reason} ({letter.attempts} attempt(s), {at})"
        )
    if len(dead_letters) > DEAD_LETTERS_SHOWN:
        lines.append("  all of them: select * from stripe_raw.segment_delivery_dead_letters")
    return lines
