"""Infotext: the A1111 "generation parameters" text stored in every image (spec §4).

Pure (no torch). ``format`` writes it (``create_infotext``), ``parse`` reads it
(``parse_generation_parameters``), ``paste`` maps parsed values onto ``GenerationParams``,
``storage`` reads and writes it inside image files, ``samplers`` holds the A1111 sampler names
both directions need. Import the module you need; this package re-exports nothing.
"""
