"""The bundled demo stream: a week of invented posts about the fictional brand Kettlebird.

``demo.jsonl.gz`` (next to this file) is built by ``python -m xwatch.demo.generate`` with a
fixed seed; see ``xwatch.demo.generate`` for how, and for ``bundled_demo_path()``.
"""
