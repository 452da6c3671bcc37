"""The outlier step of the int8 recipes: diagnose activation outliers, smooth, rotate, keep wide."""
