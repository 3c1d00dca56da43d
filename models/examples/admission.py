"""An admission check for tests and demos: refuses the models named in `STREAMSERVE_EXAMPLE_REFUSE` (comma-separated).

The real one is the backdoor scanner (`models.backdoor.admission:check`); both have the signature
`serve/admission.py` expects: `(spec, version) -> reason | None`.
"""
import os


def refuse_listed(spec, version: int) -> str | None:
    listed = {name.strip() for name in os.environ.get("STREAMSERVE_EXAMPLE_REFUSE", "").split(",") if name.strip()}
    return "listed in STREAMSERVE_EXAMPLE_REFUSE" if spec.name in listed else None
