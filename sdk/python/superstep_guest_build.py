"""Builds a Python executor into a component with componentize-py:

    superstep-guest-build app.py app.wasm

The executor's module (``app.py``) may import modules of its own directory and the
SDK, ``superstep_guest``; the component carries those, built against the WIT world the
SDK carries. This module runs on the build machine; the SDK runs only in the
component (it imports what componentize-py generates), so it is found here without
being imported.
"""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORLD = "executor"


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[0].endswith(".py"):
        print("usage: superstep-guest-build <module.py> <out.wasm>", file=sys.stderr)
        return 2
    source, out = Path(args[0]).resolve(), Path(args[1]).resolve()
    if not source.is_file():
        print(f"superstep-guest-build: {source}: no such file", file=sys.stderr)
        return 2
    spec = importlib.util.find_spec("superstep_guest")
    if spec is None or not spec.submodule_search_locations:
        print("superstep-guest-build: the superstep_guest package is not installed", file=sys.stderr)
        return 2
    here = Path(spec.submodule_search_locations[0])
    tool = shutil.which("componentize-py")
    if tool is None:
        print(
            "superstep-guest-build: componentize-py is not on the PATH "
            "(pip install componentize-py==0.25.1)",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="superstep-py-") as stage:
        # Only the SDK itself goes in, not the rest of the environment's packages.
        shutil.copytree(here, Path(stage) / "superstep_guest",
                        ignore=shutil.ignore_patterns("__pycache__", "wit"))
        partial = out.with_name(out.name + ".tmp")
        command = [
            tool, "-d", str(here / "wit"), "-w", WORLD, "componentize",
            "-p", stage, "-p", str(source.parent), source.stem, "-o", str(partial),
        ]
        built = subprocess.run(command, stdout=subprocess.DEVNULL)
        if built.returncode != 0:
            partial.unlink(missing_ok=True)
            return built.returncode
        # A reader never sees half a component.
        partial.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
