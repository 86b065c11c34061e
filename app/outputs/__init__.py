"""Outputs: what a job leaves on disk (spec §9.4). Pure (PIL, no torch).

``save`` writes images, grids and ``params.txt`` the A1111 way; ``filenames`` expands A1111's
file-name patterns; ``fileio`` holds the atomic text/JSON writes that settings, caches and styles
use too. Import the module you need; this package re-exports nothing.
"""
