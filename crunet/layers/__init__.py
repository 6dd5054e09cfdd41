"""Building blocks: pre-activation convolutions, the GBTD residual unit, its stage and shared factors."""

from crunet.layers.bn_act_conv import BnAct, BnActConv
from crunet.layers.residual_unit import ResidualUnit
from crunet.layers.shared_factors import SharedFactors
from crunet.layers.stage import Stage

__all__ = ["BnAct", "BnActConv", "ResidualUnit", "SharedFactors", "Stage"]
