"""Calibration data of the real inputs each network sees, for INT8."""
