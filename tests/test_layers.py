"""The layers of DESIGN.md, checked on the source: data flows down, never up.

Views call services, services call the store's client, tasks call services;
services reach the tasks only through services/background.py.
"""

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parent.parent / "memoryadmin" / "services"


def imported_modules(path):
    """Every module a file imports, at its top or inside functions."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_services_import_no_view_form_or_template_code():
    upward = {
        (path.name, module)
        for path in SERVICES.glob("*.py")
        for module in imported_modules(path)
        if module.endswith((".views", ".forms")) or module.startswith(("django.shortcuts", "django.template"))
    }
    assert upward == set()


def test_only_the_background_seam_imports_the_tasks():
    importers = {
        path.name
        for path in SERVICES.glob("*.py")
        if any(module.startswith("memoryadmin.tasks") for module in imported_modules(path))
    }
    assert importers == {"background.py"}
