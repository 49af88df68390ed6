"""Build of fastnn's native layer: the extension modules of fastnn/*.pyx.

Environment switches:
  FASTNN_CHECKED=1   Cython bounds/wraparound/initialized checks on (a debug build).
  FASTNN_NATIVE=1    compile for this machine's CPU (-march=native); the default targets the
                     wheel baseline (x86-64 / the platform default) so a wheel runs anywhere.
"""

import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CHECKED = os.environ.get("FASTNN_CHECKED", "0") == "1"
NATIVE = os.environ.get("FASTNN_NATIVE", "0") == "1"

# fastnn's threads are its own (fastnn/_threads.h: POSIX threads, or Win32 threads)
if sys.platform == "win32":
    compile_args, link_args = ["/O2"], []
else:
    compile_args, link_args = ["-O3", "-pthread"], ["-pthread"]
if sys.platform != "win32":
    # Lets the compiler if-convert (and so vectorise) loops with float comparisons. Unlike
    # -ffast-math it changes no result: NaN, inf and signed zeros keep their IEEE meaning.
    # No FMA contraction: the same results from every instruction-set clone of a loop.
    # -fno-math-errno: sqrt may become one instruction (fastnn never reads errno).
    compile_args += ["-fno-trapping-math", "-ffp-contract=off", "-fno-math-errno"]
if NATIVE and sys.platform != "win32":
    compile_args.append("-march=native")

directives = {
    "language_level": 3,
    "boundscheck": CHECKED,
    "wraparound": CHECKED,
    "initializedcheck": CHECKED,
    "cdivision": not CHECKED,
    "embedsignature": True,
}

# The native layer: one extension module per job, linked by cimport (see fastnn/_kernels.pyx);
# fastnn._testing (hooks for the tests) is built in the checked build only.
MODULES = ["_tuning", "_parallel", "_blas", "_layers", "_inputs", "_losses", "_inference", "_train",
           "_kernels"] + (["_testing"] if CHECKED else [])

extensions = [
    Extension(
        f"fastnn.{name}",
        [f"fastnn/{name}.pyx"],
        include_dirs=[np.get_include(), "fastnn"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTNN_CHECKED", str(int(CHECKED)))],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for name in MODULES
]


class BuildExt(build_ext):
    """Also put the compiled modules in the checkout's fastnn/ (as --inplace does): `python -m
    fastnn demo` run in the checkout's root imports ./fastnn, which comes first on sys.path,
    and finds them there after `pip install .` (a checkout without them says so on import)."""

    def run(self) -> None:
        super().run()
        if not self.inplace:
            self.copy_extensions_to_source()
        if not CHECKED:  # a checked build's hooks left in the checkout would not match
            for name in os.listdir("fastnn"):
                if name.startswith("_testing.") and name.endswith((".so", ".pyd")):
                    os.remove(os.path.join("fastnn", name))


# the generated C of each build kind apart: Cython's directives differ between them
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            build_dir=f"build/cython-{'checked' if CHECKED else 'release'}"),
      cmdclass={"build_ext": BuildExt})
