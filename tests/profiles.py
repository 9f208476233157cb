"""The test profile of this run, for conftest.py and the test modules.

Test modules import these from here, never from conftest.py: importing conftest.py a
second time (as ``tests.conftest``) would run its set-up again, with a second route
recorder.
"""
import os

#: Hypothesis profile: ci (default), dev or thorough (HYPOTHESIS_PROFILE).
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
#: The thorough profile also runs what the default run thins out (see docs/testing.md).
THOROUGH = PROFILE == "thorough"

# The GGUF types whose kernels the default run compiles (each type's first call compiles
# its own kernels, several seconds each); the thorough profile runs every type.  One of
# each family: plain floats, the legacy blocks with and without a minimum, the lattice
# (IQ4), the ternary, MXFP4, and the K-quants with and without a minimum (Q4_K, which
# the notebook on formats also calls, and Q6_K).
GGUF_DEFAULT_TYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q5_1", "IQ4_NL", "TQ2_0", "MXFP4",
                      "Q4_K", "Q6_K")
