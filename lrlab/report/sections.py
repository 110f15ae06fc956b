"""Sections that plugins add to the report, through the ``lrlab_report_sections`` hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lrlab.errors import PluginError, UsageError

HOOK = "lrlab_report_sections"


@dataclass
class Section:
    """A block of the HTML report added by a plugin.

    :param title: the section's heading (plain text; it is escaped).
    :param html: trusted markup the plugin built, inserted as is: escape whatever you
        interpolate into it (``html.escape``, ``markupsafe.escape``).
    """

    title: str
    html: str


@dataclass
class PluginSections:
    """The sections one plugin returned, in its order."""

    plugin: str
    sections: list[Section]


def collect(plugins: Any, **kwargs: Any) -> list[PluginSections]:
    """Call every ``lrlab_report_sections`` implementation, keeping who returned what.

    Implementations are called in pluggy's order (the last registered first), each with
    the arguments it asks for. A plugin that raises, or returns something other than
    ``None`` or a list of :class:`Section`, does not take the report down: its place shows
    the :class:`~lrlab.PluginError` naming it, and the other sections are kept.
    """
    caller = getattr(plugins.pm.hook, HOOK)
    out = []
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        name = impl.plugin_name
        try:
            answer = _call(impl, name, kwargs)
        except PluginError as exc:
            out.append(PluginSections(name, [failed_section(str(exc))]))
            continue
        if answer:
            out.append(PluginSections(name, list(answer)))
    return out


def _call(impl: Any, name: str, kwargs: dict[str, Any]) -> list[Section]:
    try:
        answer = impl.function(**{k: kwargs[k] for k in impl.argnames})
    except (PluginError, UsageError):
        raise
    except Exception as exc:
        raise PluginError(f"plugin '{name}' failed in {HOOK}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if answer is None:
        return []
    if isinstance(answer, Section):
        answer = [answer]
    if not isinstance(answer, (list, tuple)) or not all(
            isinstance(s, Section) and isinstance(s.title, str) and isinstance(s.html, str)
            for s in answer):
        raise PluginError(f"plugin '{name}' returned {type(answer).__name__} from {HOOK}; "
                          f"expected a list of lrlab.report.Section(title: str, html: str)")
    return list(answer)


def failed_section(message: str) -> Section:
    """The box shown in place of a plugin's sections when it failed."""
    from html import escape

    return Section("could not be built", f'<p class="plugin-error">{escape(message)}</p>')
