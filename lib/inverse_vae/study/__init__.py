"""What the notebooks compute: evaluation (02), inversion experiments (03), failure analysis (04),
the methods comparison (05), and the figures."""
