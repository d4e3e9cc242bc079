"""TensorRT engines: ``lpt build`` (plan, build, sidecar) and ``lpt parity-engines``.

``plan`` and ``sidecar`` are pure Python (names, profiles, up-to-date and compatibility checks); ``build``,
``environment`` and ``parity`` import TensorRT and Polygraphy inside their functions.
"""
