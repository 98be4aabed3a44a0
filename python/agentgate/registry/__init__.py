"""Template registry: versions, canonical digests, signatures, trust roots and search."""
