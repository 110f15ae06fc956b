"""lrlab-mlflow: logs every lrlab sweep to MLflow.

One MLflow *parent run* per sweep folder and one *nested run* per lrlab run: the run's
axes as params, each epoch's ``lr``/loss/accuracy as metrics (``step`` = epoch), its
verdict, cause and flags as tags; the folder's tables and its report as artifacts of the
parent. The store is the SQLite file ``mlflow.db`` in the sweep folder unless
``MLFLOW_TRACKING_URI`` names another (a server). See the README for the details.

When each thing is logged (all in the driver process, on every executor):

* ``lrlab_sweep_start``: the parent is found by the folder's tag (a resumed sweep reuses
  it) or created, and the nested runs of runs the folder no longer holds, or is about to
  train again, are deleted;
* ``lrlab_run_end``: the run's nested run, from its final result (``result.history``
  holds every epoch: this is right on the ``vectorized`` executor, which interleaves
  runs, and on ``ray``, whose epoch hooks run in worker processes);
* ``lrlab_sweep_end``: every run of the table that has no nested run yet is logged from
  the tables, the others get their current verdict tags (a resumed sweep judges its
  stored runs again); the tables go to the parent;
* ``lrlab_report_sections``: the report is written right after this hook returns, so the
  hook starts a watcher that logs ``index.html`` to the parent once it is replaced
  (:func:`wait` waits for it; the process does at exit).

``import lrlab_mlflow`` imports neither mlflow nor torch: every hook imports what it
needs when it is called.
"""

from __future__ import annotations

import atexit
import html
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lrlab

__version__ = "0.1.0"
__all__ = ["wait"]

# the tracker of the sweep this process is running (set at its start)
_current: Any = None
_watches: list[_Watch] = []
_lock = threading.Lock()
WATCH_POLL_S = 0.05
WATCH_LIMIT_S = 3600.0  # a report that is never written is given up after this long


def _note(what: str, exc: BaseException) -> None:
    """One line on stderr: logging to MLflow failed, the sweep goes on."""
    from lrlab_mlflow.tracker import scrub

    first = scrub((str(exc).strip().splitlines() or [""])[0])
    print(f"lrlab-mlflow: {what}: {type(exc).__name__}: {first}", file=sys.stderr)


def _tracker_for(folder: Path, name: str, *, create: bool) -> Any:
    global _current
    from lrlab_mlflow.tracker import Tracker

    folder = Path(folder).resolve()
    if _current is not None and _current.folder == folder and _current.parent:
        return _current
    tracker = Tracker(folder, name, create=create)
    if create:
        _current = tracker
    return tracker


def _stored_run_ids(folder: Path) -> set[str]:
    try:
        runs, _, _ = lrlab.load_results(folder)
    except lrlab.UsageError:  # nothing stored yet
        return set()
    return set(runs["run_id"]) if not runs.empty else set()


@lrlab.hookimpl
def lrlab_sweep_start(config, runs):
    """Open the folder's parent run (reused on resume) before anything trains; a store
    that cannot be reached stops the sweep here, with one line."""
    global _current
    from lrlab_mlflow.tracker import Tracker, import_mlflow, scrub, shown_uri, tracking_uri

    import_mlflow()
    folder = Path(config.out_dir).resolve()
    try:
        tracker = Tracker(folder, config.name)
        tracker.open_parent(config)
        tracker.mirror(_stored_run_ids(folder), {r.run_id for r in runs})
    except lrlab.UsageError:
        raise
    except Exception as exc:
        first = scrub((str(exc).strip().splitlines() or [""])[0])
        raise lrlab.UsageError(
            f"lrlab-mlflow: cannot log to the MLflow tracking store "
            f"{shown_uri(tracking_uri(folder))}: {type(exc).__name__}: {first} (set "
            f"MLFLOW_TRACKING_URI, or run without this plugin: -p no:lrlab-mlflow)") from None
    _current = tracker


@lrlab.hookimpl
def lrlab_run_end(run, result):
    """The run's nested run, from its final result. A failure is one line on stderr, not
    an error run: the sweep's end logs what is missing."""
    if _current is None or _current.parent is None:
        return
    try:
        _current.log_run(result.summary, result.history, run.axes())
    except Exception as exc:
        _note(f"could not log run {run.run_id} (it is logged again at the sweep's end)", exc)


@lrlab.hookimpl
def lrlab_sweep_end(config, runs, history):
    """Make the nested runs mirror the runs table; the tables to the parent."""
    try:
        tracker = _tracker_for(config.out_dir, config.name, create=True)
        if tracker.parent is None:
            tracker.open_parent(config)
        tracker.reconcile(runs, history)
        tracker.finish(runs)
    except Exception as exc:
        _note("could not finish logging the sweep (run it again to resume the logging)", exc)


@lrlab.hookimpl
def lrlab_report_sections(manifest):
    """Log ``index.html`` to the parent once the report is written (right after this
    hook), and say in the report where the sweep is logged."""
    folder = manifest.get("folder")
    if not folder:
        return None
    try:
        tracker = _tracker_for(Path(folder), manifest.get("name") or Path(folder).name,
                               create=False)
        if tracker.client is None or (tracker.parent is None and tracker.find_parent() is None):
            return None  # this folder was never logged: nothing to add to
    except lrlab.UsageError:  # mlflow is missing: the report goes on without us
        return None
    _Watch(Path(folder) / "index.html", tracker).start()
    return [lrlab.Section("MLflow", _section_html(tracker))]


def _section_html(tracker: Any) -> str:
    from lrlab_mlflow.tracker import shown_uri

    uri = html.escape(shown_uri(tracker.uri))
    rows = [("tracking store", f"<code>{uri}</code>"),
            ("experiment", html.escape(f"{tracker.experiment_name} "
                                       f"(id {tracker.experiment_id})")),
            ("parent run", f"<code>{html.escape(tracker.parent)}</code>")]
    link = tracker.ui_link()
    if link:
        rows.append(("open", f'<a href="{html.escape(link)}">{html.escape(link)}</a>'))
    elif tracker.local:
        rows.append(("open", f"<code>mlflow ui --backend-store-uri {uri}</code>"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<p>This sweep is logged to MLflow: one nested run per run of this report, "
            f"the tables and this page as artifacts of the parent run.</p>"
            f"<table>{body}</table>")


# -- the report: logged once it is written ---------------------------------------------


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class _Watch:
    """Logs ``path`` to the parent once it is replaced: lrlab writes ``index.html``
    (atomically) right after ``lrlab_report_sections`` returns."""

    def __init__(self, path: Path, tracker: Any) -> None:
        self.path, self.tracker = path, tracker
        self.before = _stamp(path)
        self.last_call = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lrlab-mlflow-report",
                                       daemon=True)

    def start(self) -> None:
        with _lock:
            _watches[:] = [w for w in _watches if w.thread.is_alive()]
            _watches.append(self)
        self.thread.start()

    def _run(self) -> None:
        give_up = time.monotonic() + WATCH_LIMIT_S
        while True:
            last = self.last_call.wait(WATCH_POLL_S)
            now = _stamp(self.path)
            if now is not None and now != self.before:
                try:
                    self.tracker.log_report(self.path)
                except Exception as exc:
                    _note(f"could not log {self.path}", exc)
                return
            if last or time.monotonic() > give_up:
                return  # the report was not written (it failed, or report=False)


def wait(timeout: float = 60.0) -> None:
    """Wait until the reports written so far are logged (``lrlab sweep`` does this at
    exit; call it after :func:`lrlab.run_sweep` before reading the parent's artifacts)."""
    with _lock:
        watches, _watches[:] = list(_watches), []
    for w in watches:
        w.last_call.set()
    deadline = time.monotonic() + timeout
    for w in watches:
        w.thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(wait)
