"""Small reads of what a build left, shared by the Dagster asset pages and `stripe-sync demo`."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg import sql

# The month's MRR bridge's columns, in the order a bridge reads: start + movements = end.
BRIDGE_COLUMNS = (
    "start_mrr",
    "new",
    "expansion",
    "contraction",
    "churn",
    "reactivation",
    "end_mrr",
)
# The movements, signed as they move MRR (contraction and churn are stored negative).
MOVEMENTS = BRIDGE_COLUMNS[1:-1]

MrrBridge = list[tuple[str, dict[str, Decimal]]]


def read_mrr_bridge(conn: psycopg.Connection) -> MrrBridge:
    """The month's MRR bridge per currency, as the latest build left it (int_mrr_bridge); empty
    before the first build."""
    query = sql.SQL("select mrr_currency, {} from stripe_staging.int_mrr_bridge order by 1").format(
        sql.SQL(", ").join(map(sql.Identifier, BRIDGE_COLUMNS))
    )
    try:
        with conn.transaction():
            rows = conn.execute(query).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    return [(row[0], dict(zip(BRIDGE_COLUMNS, row[1:], strict=True))) for row in rows]


def signed(amount: Decimal) -> str:
    """A movement as it moves MRR: `+12.00`, `-3.50`."""
    return f"{amount:+,.2f}"


def bridge_markdown(bridge: MrrBridge) -> str:
    """The bridge as a Markdown table: one row per currency, one column per step."""
    header = "| currency | " + " | ".join(BRIDGE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(BRIDGE_COLUMNS)
    rows = [
        f"| {currency} | {amounts['start_mrr']:,.2f} | "
        + " | ".join(signed(amounts[name]) for name in MOVEMENTS)
        + f" | {amounts['end_mrr']:,.2f} |"
        for currency, amounts in bridge
    ]
    return "\n".join([header, rule, *rows]) if rows else "no MRR this month yet"
