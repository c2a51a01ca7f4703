"""blockzoo.analysis: see what a block does inside a network (issue 15).

Effective receptive field (:func:`erf`), Eigen-CAM (:func:`eigencam`), attention maps, collapse and non-locality
(:func:`attention_report`; :mod:`.collapse`, :mod:`.locality`), loss-landscape probes (:func:`smoothness_probe`,
:class:`SmoothnessRecorder`, :func:`probe_training`, :func:`loss_slice`), LinearScope (:func:`linear_interpreter`)
and corruption robustness (:func:`robustness`); ``blockzoo analyze TOOL MODEL_OR_CHECKPOINT --out DIR`` runs them
from the command line (:mod:`.cli`). The package attributes ``erf``, ``eigencam``, ``robustness`` are the functions;
their modules are ``blockzoo.analysis.erf`` etc. (import names from them with ``from blockzoo.analysis.erf import
...``).
"""
from .attention import attention_report
from .collapse import attention_maps, attention_similarity
from .eigencam import eigencam
from .erf import erf
from .landscape import SmoothnessRecorder, loss_slice, probe_training, smoothness_probe
from .linearscope import linear_interpreter
from .locality import model_nonlocality, nonlocality
from .robustness import robustness

__all__ = ["erf", "eigencam", "attention_report", "attention_maps", "attention_similarity", "model_nonlocality",
           "nonlocality", "smoothness_probe", "SmoothnessRecorder", "probe_training", "loss_slice",
           "linear_interpreter", "robustness"]
