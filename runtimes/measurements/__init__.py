"""Measurements: parity, latency (bench, sweep, benchmark), quality (evaluate), memory."""
