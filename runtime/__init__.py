"""Engine runtime, the animation pipeline and lpt-run."""
