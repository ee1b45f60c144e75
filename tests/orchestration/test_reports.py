"""The month's MRR bridge as the demo prints it and the mrr_movements page shows it: movements
keep the sign they move MRR with (contraction and churn are stored negative)."""

from __future__ import annotations

from decimal import Decimal

from orchestration.cli.demo import bridge_lines
from orchestration.transform.reports import BRIDGE_COLUMNS, bridge_markdown

USD = dict(
    zip(
        BRIDGE_COLUMNS,
        map(Decimal, ("100.00", "20.00", "5.00", "-2.50", "-10.00", "0.00", "112.50")),
        strict=True,
    )
)


def test_demo_line_shows_start_the_movements_that_moved_it_and_end() -> None:
    assert bridge_lines([("usd", USD)]) == [
        "  usd 100.00 + new 20.00 + expansion 5.00 - contraction 2.50 - churn 10.00 = 112.50"
    ]


def test_markdown_bridge_has_one_signed_column_per_step() -> None:
    table = bridge_markdown([("usd", USD)]).splitlines()
    assert table[0] == (
        "| currency | start_mrr | new | expansion | contraction | churn | reactivation | end_mrr |"
    )
    assert table[2] == "| usd | 100.00 | +20.00 | +5.00 | -2.50 | -10.00 | +0.00 | 112.50 |"
    assert bridge_markdown([]) == "no MRR this month yet"
