"""Analysis of run folders (gradient conflicts, scale gains, gate convergence): to come."""
