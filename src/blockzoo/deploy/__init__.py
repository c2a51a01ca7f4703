"""Deployment tools: structural re-parameterisation and BN folding (more in later issues)."""
from blockzoo.deploy.export import EXPORT_FORMATS, export_model  # noqa: F401
from blockzoo.deploy.reparam import bn_scale_shift, fuse_bn_linear, fuse_conv_bn, reparameterize  # noqa: F401
