"""Inverting the decoder: the layer table, the pseudo-inverse chain and its failure attribution, the solvers
and their SciPy peers, the named methods and the posterior (docs/layout.md says which module holds what)."""
