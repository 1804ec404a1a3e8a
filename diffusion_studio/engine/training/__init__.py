"""Training: Algorithm 1 with early stopping, planned (new, resume, continue) and run as records."""
