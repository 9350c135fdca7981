"""Data sources, splits, the prepared-set cache and the synthetic demo set."""
