"""The paper layer: cached sweeps, readings of curves with intervals, one computation per
chapter, the alternatives, plots and the book driver. The only place pandas and matplotlib live.
"""
