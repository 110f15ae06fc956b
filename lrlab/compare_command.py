"""``lrlab compare A B``: parses its arguments, calls :func:`lrlab.compare.compare`, prints.

Nothing heavy is imported at the top (no pandas, torch or scipy), so ``lrlab --help``
stays fast; the library is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lrlab.cli_support import handle_errors


@handle_errors
def compare_command(
    a: Annotated[Path, typer.Argument(
        metavar="A", help="The reference sweep's results folder (before).")],
    b: Annotated[Path, typer.Argument(
        metavar="B", help="The sweep to judge against it (after).")],
    fail_if_worse: Annotated[list[str] | None, typer.Option(
        "--fail-if-worse", metavar="METRIC=THRESHOLD",
        help="Exit 1 when a configuration of B is worse than A's by more than THRESHOLD "
             "with confidence (its interval entirely beyond it): val_acc=0.01 is one point "
             "of accuracy; also val_loss, gap_acc, gl. Repeatable, or comma-separated.",
        show_default=False)] = None,
    junit_xml: Annotated[Path | None, typer.Option(
        "--junit-xml", help="Write each configuration as a JUnit test case.",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the HTML page [default: B/compare.html].",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only the last line.")] = False,
) -> None:
    """Compare two sweeps: per-configuration deltas B − A with 95% intervals (paired by
    seed when both ran the same seeds), verdict changes, new and missing configurations;
    writes a self-contained HTML page (B/compare.html unless --out)."""
    from lrlab.compare import compare, write_html, write_junit

    comparison = compare(a, b, fail_if_worse=fail_if_worse)
    page = write_html(comparison, out)
    if junit_xml is not None:
        write_junit(comparison, junit_xml)
    console = _console()
    if not quiet:
        print_comparison(console, comparison)
        console.print(f"compare: {page}", markup=False)
    style = "bold red" if comparison.failed else "bold green"
    console.print(f"[{style}]{_escape(comparison.summary_line())}[/]")
    if comparison.failed:
        raise typer.Exit(1)


def _console() -> Any:
    import shutil
    import sys

    from rich.console import Console

    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=False, width=max(width, 100))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_comparison(console: Any, comparison: Any) -> None:
    """One row per configuration: verdicts A → B, runs, val acc A and B, the deltas of val
    acc and gap with their intervals (points), what changed, and the gate's verdict."""
    import math

    from rich.table import Table

    from lrlab.stats import interval_text
    from lrlab.terminal import verdict_text

    table = Table(title=f"{comparison.a} → {comparison.b} (B − A, mean [95% interval], "
                        f"accuracy in points)", title_justify="left", header_style="bold")
    heads = ["configuration", "verdict A → B", "runs", "val acc A", "val acc B", "Δ val acc",
             "Δ gap", "change"] + (["gate"] if comparison.thresholds else [])
    for h in heads:
        table.add_column(h, justify="right" if h.startswith(("val", "Δ", "runs")) else "left",
                         no_wrap=h != "gate")
    for r in comparison.table.to_dict("records"):
        verdicts = " → ".join(verdict_text(v, "") for v in (r["verdict_a"], r["verdict_b"]) if v)
        both = r["status"] == "both"
        deltas = [interval_text(r[f"{m}_delta"], r[f"{m}_lo"], r[f"{m}_hi"], 100, 1)
                  if both else "-" for m in ("val_acc", "gap_acc")]
        acc = [f"{r[k]:.3f}" if math.isfinite(r[k]) else "-" for k in ("val_acc_a", "val_acc_b")]
        change = r["change"] if both else r["status"]
        if both and r["pairing"]:
            change += f" ({r['pairing']})"
        row = [_escape(r["config"]), verdicts, f"{r['n_a']} / {r['n_b']}", *acc, *deltas,
               change]
        if comparison.thresholds:
            row.append("[red]FAIL[/]" if r["fails"] else "pass" if both else "-")
        table.add_row(*row)
    console.print(table)
    for r in comparison.table[comparison.table["fails"]].to_dict("records"):
        console.print(f"[red]FAIL[/] {_escape(r['config'])}: {_escape(r['fails_on'])}")
    for note in comparison.notes:
        console.print(f"  {note}", style="dim", markup=False)
