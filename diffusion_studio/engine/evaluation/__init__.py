"""Measuring generated digits: FID, the offline classifier metrics, memorisation, and the report."""
