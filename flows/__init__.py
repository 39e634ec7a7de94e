"""Prefect flows that run lrp-audit across a Ray cluster."""
