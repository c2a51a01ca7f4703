"""A stand-in for torchvision, just enough for ``import timm`` and building timm's models (no data pipeline).

There is no working torchvision build on this machine; timm imports a few names from it at import time
(``torchvision.ops.misc.FrozenBatchNorm2d``, ``torchvision.transforms`` classes, ``InterpolationMode``,
``torchvision.datasets`` classes). ``benchmarks/speed_vs_timm.py`` puts ``benchmarks/timm_shim`` on ``sys.path``;
nothing in the blockzoo package imports this. Using a transform or a dataset raises ``NotImplementedError``.
"""
__version__ = "0.0.0+blockzoo-shim"
