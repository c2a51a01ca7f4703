"""Profiling for blockzoo: parameters, MACs/FLOPs (labelled), uncounted ops, latency, train-step time, peak memory.

``profile(model, input_size)`` returns a :class:`ProfileReport`; ``count_macs`` is the counter alone;
``format_report`` renders a report as a ``rich`` table. The conventions (MACs vs FLOPs, SDPA and FFT formulas, what is
ignored) are documented in :mod:`blockzoo.profile.counting`; the measurement methods in :mod:`blockzoo.profile.core`.

``blockzoo.profile`` may resolve to this package (once any ``blockzoo.profile.*`` import has run, Python binds the
subpackage as the attribute) or to the function (through ``blockzoo.__getattr__`` / a re-export). The package is made
callable so that ``blockzoo.profile(model, input_size)`` works either way.
"""

import sys
import types

from blockzoo.profile.core import ProfileReport, profile
from blockzoo.profile.counting import (
    FFT_CONVENTION,
    SDPA_CONVENTION,
    MacCount,
    classify_op,
    count_macs,
    extra_flop_formulas,
    fft_macs,
    register_flop_formulas,
    sdpa_macs,
)
from blockzoo.profile.formatting import format_report, human_count

__all__ = [
    "profile",
    "count_macs",
    "ProfileReport",
    "format_report",
    "MacCount",
    "classify_op",
    "extra_flop_formulas",
    "register_flop_formulas",
    "fft_macs",
    "sdpa_macs",
    "human_count",
    "FFT_CONVENTION",
    "SDPA_CONVENTION",
]


class _CallableModule(types.ModuleType):
    """The ``blockzoo.profile`` package, callable as :func:`blockzoo.profile.core.profile`."""

    def __call__(self, *args, **kwargs) -> ProfileReport:
        return profile(*args, **kwargs)


_CallableModule.__call__.__doc__ = profile.__doc__
sys.modules[__name__].__class__ = _CallableModule
