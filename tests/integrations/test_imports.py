"""The integrations are imported only when asked for, and say what to install."""

from __future__ import annotations

import subprocess
import sys

from katdensity import MissingDependencyError


def test_import_katdensity_imports_no_trainer_library() -> None:
    code = (
        "import sys, katdensity, katdensity.integrations\n"
        "heavy = ('trl', 'transformers', 'accelerate', 'datasets')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "sys.exit(str(loaded) if loaded else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_missing_trl_raises_missing_dependency_error_naming_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['trl'] = None  # as if TRL were not installed\n"
        "from katdensity import MissingDependencyError\n"
        "try:\n"
        "    import katdensity.integrations.trl\n"
        "except MissingDependencyError as error:\n"
        "    print(error)\n"
        "    sys.exit(0)\n"
        "sys.exit('imported without TRL')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert 'pip install "katdensity[trl]"' in run.stdout
    assert issubclass(MissingDependencyError, ImportError)
