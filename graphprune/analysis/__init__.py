"""Analyses over a normalized model: dimension flow, coupled groups, cost."""
