"""The LR finder in sweeps: writes the range test behind ``--lr auto`` when the sweep
starts (``lrlab_sweep_start``) and shows it in the report (``lrlab_report_sections``)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from lrlab.markers import hookimpl


@hookimpl
def lrlab_sweep_start(config, runs):
    from lrlab.lrfind.auto import write_pending

    write_pending(config)


def sweep_folder(manifest: dict[str, Any]) -> Path | None:
    """The sweep's folder: the manifest's ``folder`` (set by the report to the folder it
    reports on)."""
    return Path(manifest["folder"]) if manifest.get("folder") else None


def _used_by_sweep(info: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """True when the stored test built this sweep's grid (not a stale file)."""
    auto = info.get("auto") or {}
    if not auto.get("lrs"):
        return False
    grid = ((manifest.get("config") or {}).get("grid") or {}).get("lr")
    if grid is None:
        return True
    return all(any(math.isclose(lr, g, rel_tol=1e-9) for g in grid) for lr in auto["lrs"])


@hookimpl
def lrlab_report_sections(runs, history, manifest):
    import json

    folder = sweep_folder(manifest or {})
    if folder is None or not (folder / "lrfind.json").is_file():
        return None
    info = json.loads((folder / "lrfind.json").read_text(encoding="utf-8"))
    if not _used_by_sweep(info, manifest or {}):
        return None
    from lrlab.report.sections import Section

    return [Section("Learning-rate finder", section_html(info, folder / "lrfind.png"))]


def section_html(info: dict[str, Any], png: Path) -> str:
    """The report section: what ``--lr auto`` did, the figure, the suggestions."""
    esc = html.escape
    s, auto = info["settings"], info["auto"]
    parts = [f"<p>{esc(auto['note'])}.</p>",
             f"<p>The range test trained {esc(s['model'])} on {esc(s['dataset'])} "
             f"({esc(s['optimizer'])}, {esc(s['loss'])}, batch {s['batch_size']}) for up to "
             f"{s['steps']} steps while the learning rate grew from {s['start_lr']:g} to "
             f"{s['end_lr']:g}, and stopped once the smoothed loss passed "
             f"{s['diverge']:g}&times; its best. The triangles mark the sweep's rates.</p>"]
    if png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<img src="data:image/png;base64,{data}" style="max-width:100%" '
                     f'alt="training loss against learning rate, with the suggestions">')
    multi = len(s["seeds"]) > 1
    head = "<th>rule</th><th>suggested lr</th>"
    head += "<th>range over seeds</th><th>spread</th>" if multi else ""
    rows = [f"<tr>{head}<th>what it means</th></tr>"]
    for rule, sug in info["suggestions"].items():
        mark = " (the sweep's centre)" if rule == auto.get("rule") else ""
        cells = f"<td>{esc(sug['label'])}{mark}</td><td>{_g(sug['lr'])}</td>"
        if multi:
            cells += (f"<td>{_g(sug['low'])} – {_g(sug['high'])}</td>"
                      f"<td>&times;{_g(sug['spread'], 2)}</td>")
        rows.append(f"<tr>{cells}<td>{esc(sug['explanation'])}</td></tr>")
    parts.append(f"<table>{''.join(rows)}</table>")
    return "\n".join(parts)


def _g(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "none"
    return f"{value:.{digits}g}"
