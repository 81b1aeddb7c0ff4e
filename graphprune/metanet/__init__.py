"""The learned, data-free criterion: unit features read from the analysis' groups
(features.py) and the small network that turns them into scores (scorer.py)."""
