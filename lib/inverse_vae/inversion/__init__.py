"""Inverting the decoder.

table        the one table of decoder layer kinds (forward, inverse, clamp, derivative, range)
chain        InverseChain (the pseudo-inverse chain: invert, trace) and realizable (x = D(z))
attribution  which layer and cause each failed realizable sample is charged to
plain, timing  the decoder as plain tensors for the solvers; MethodResult and the methods' clock
solvers      box-constrained least squares, Adam, L-BFGS, Levenberg-Marquardt, optimize
methods      the named methods (closed form, layer-wise, encoder, hybrids, MAP, SVI), METHODS, run_method
peer         the SciPy references (least_squares; L-BFGS-B for MAP), one image at a time
posterior    the VAE's posterior per image: MAP's negative log joint, SVI, the amortization gap
"""
