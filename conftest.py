"""Collection rules for the whole repository (the doctests in src/ included).

An integration module imports its project at import time and raises a clear error when it
is missing; without that project its doctests cannot be collected, so they are left out.
"""

from __future__ import annotations

import importlib.util

collect_ignore = [
    f"src/katdensity/integrations/{name}.py"
    for name in ("trl",)
    if importlib.util.find_spec(name) is None
]
