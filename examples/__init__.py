"""The bundled example: the sample shop (``examples/shop``), its corpus of changes
(``examples/shop/changes``), and :mod:`examples.corpus`, which reads the corpus manifest, turns
a change into a git repository (base + head) and serves the shop on the host (tests,
benchmarks, ``make demo``). Not part of the ``diffie`` library."""
