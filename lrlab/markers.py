"""The pluggy markers of the ``lrlab`` project, in a leaf module that imports only pluggy.

Plugins use ``@lrlab.hookimpl`` (the same object); lrlab's own modules import it from
here, so that no module inside the package imports the package's face ``lrlab``.
"""

from __future__ import annotations

import pluggy

PROJECT = "lrlab"

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)
