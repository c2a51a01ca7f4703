"""Profiling for blockzoo: parameters, MACs/FLOPs (labelled), uncounted ops, latency, train-step time, peak memory.

``profile_model(model, input_size)`` (also ``blockzoo.profile_model``) returns a :class:`ProfileReport`;
``count_macs`` is the counter alone; ``format_report`` renders a report as a ``rich`` table. The conventions (MACs vs
FLOPs, SDPA and FFT formulas, what is ignored) are documented in :mod:`blockzoo.profile.counting`; the measurement
methods in :mod:`blockzoo.profile.core`. ``profile`` is the former name of ``profile_model``.
"""

from blockzoo.profile.core import ProfileReport, profile, profile_model
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
    "profile_model",
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
