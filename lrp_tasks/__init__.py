"""lrp-audit: LRP explanations for every sample of a dataset, kept for analysis."""
