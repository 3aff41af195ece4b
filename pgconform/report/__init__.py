"""Presentation of runs and verdicts: the race diagram, the HTML timeline, the summary."""
