"""The bad-input corpus of issue 7: hostile and broken inputs, generated on demand (``corpus``), each run
through the real ``lpt-run`` or ``lpt`` process and judged (``run``). ``tests/test_bad_inputs.py`` runs it."""
