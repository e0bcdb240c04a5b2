"""Only the optional C accelerator of the alignment DP lives here; all metadata is in pyproject.toml.

If the compiler is missing the build continues and dpiat uses its pure-Python DP (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dpiat._dpcore",
            ["dpiat/_dpcore.c"],
            # Plain IEEE float64: no contraction or fast-math, so results equal the Python reference.
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
