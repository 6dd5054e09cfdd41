"""Analysis: analytic complexity and the paper's tables."""
