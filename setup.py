"""Build hook: compile the proxy's per-request modules with Cython when it is available.

The modules stay plain Python (they run as they are when not compiled); the ``.pxd`` file
beside each one gives Cython the types that turn its classes into extension types. Set
``SWS_PURE_PYTHON=1`` to build without compiling; a host without a C compiler gets the same
with a warning.
"""

import os
from pathlib import Path

from setuptools import setup

# A module is compiled exactly when a .pxd file stands beside it.
COMPILED = sorted(str(p.with_suffix(".py")) for p in Path("proxy").glob("*.pxd"))


def extensions() -> list:
    if os.environ.get("SWS_PURE_PYTHON", "") not in ("", "0"):
        return []
    from Cython.Build import cythonize

    modules = cythonize(
        COMPILED,
        compiler_directives={
            "language_level": 3,
            # The annotations are for mypy; the types Cython uses are in the .pxd files.
            "annotation_typing": False,
        },
        quiet=True,
    )
    for module in modules:
        # No debug sections: they would make each module several times its size.
        module.extra_compile_args = ["-g0"]
        # Without a C compiler the build goes on (with a warning) and the module runs as
        # Python; tests/integration/proxy/test_compiled.py tells the two apart.
        module.optional = True
    return modules


setup(ext_modules=extensions())
