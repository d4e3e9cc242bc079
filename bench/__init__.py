"""lpt bench: per-graph and end-to-end speed, memory and fidelity, measured side by side."""
