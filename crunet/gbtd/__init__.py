"""The GBTD toolkit: residual units as Generalized Block Term Decompositions, and collective tensor factorization.

``factors(unit)`` gives a unit's Tucker terms, ``operator(unit)`` the one convolution its linear view is, and
``collective_factorize(kernels, ...)`` the shared A3 / G and per-unit A4 of paper equation (12).
"""

from crunet.gbtd.affine import Affine
from crunet.gbtd.collective import CollectiveFactors, collective_factorize
from crunet.gbtd.factors import factors
from crunet.gbtd.linearize import is_unit, linearized
from crunet.gbtd.operator import operator
from crunet.gbtd.terms import GBTD

__all__ = ["GBTD", "Affine", "CollectiveFactors", "collective_factorize", "factors", "is_unit", "linearized",
           "operator"]
