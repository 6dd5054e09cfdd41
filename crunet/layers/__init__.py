"""Building blocks: pre-activation convolutions, the GBTD residual unit, its stage, stem and shared factors, the DSFB
blocks, the folded (inference) forms, and the analytic complexity counters beside them."""

from crunet.layers.bn_act_conv import BnAct, BnActConv
from crunet.layers.residual_unit import ResidualUnit
from crunet.layers.shared_factors import SharedFactors
from crunet.layers.stage import Stage
from crunet.layers.stem import PreActStem

__all__ = ["BnAct", "BnActConv", "PreActStem", "ResidualUnit", "SharedFactors", "Stage"]
