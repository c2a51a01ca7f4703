"""Deployment tools: structural re-parameterisation and BN folding, ConvBN modes, filter pruning, low rank, INT8
quantization and export."""
from blockzoo.deploy.convbn import CONVBN_MODES, convbn_mode, find_convbn_pairs  # noqa: F401
from blockzoo.deploy.export import EXPORT_FORMATS, export_model  # noqa: F401
from blockzoo.deploy.lowrank import factorize, factorize_model, layer_ranks, lowrank_project  # noqa: F401
from blockzoo.deploy.prune import PRUNE_METHODS, apply_plan, channel_groups, prune, taylor_importance  # noqa: F401
from blockzoo.deploy.quantization import QuantizedModel, convert_qat, load_quantized, prepare_qat, quantize  # noqa: F401
from blockzoo.deploy.reparam import bn_scale_shift, fuse_bn_linear, fuse_conv_bn, reparameterize  # noqa: F401
