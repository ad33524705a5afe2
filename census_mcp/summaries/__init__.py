"""Shaping results for a model: compact text plus structured data.

The models here are the tools' output schemas. The text is what a model reads first, so
it leads with totals and ends with the next call to make.
"""
