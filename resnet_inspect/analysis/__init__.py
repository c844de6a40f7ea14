"""The inspection engine: trace a model with hooks, count, check and account for its layers."""
