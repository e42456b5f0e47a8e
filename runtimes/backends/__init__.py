"""Backends: the one Runner interface, the registry, one module per runner, the Core ML evaluator."""
