"""`GET /labs`: the labs, each with the commands that run it and its last report.

A lab's report is what `shop lab run` or `shop lab check` last wrote to
var/labs/NAME-VARIANT.json (shop/labs/runner.py) in the directory the shop runs in; a lab
never run here shows its commands only. The dashboard links each queue to its lab here
(`/labs#NAME`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, render_template

from shop.labs import LABS
from shop.labs.runner import REPORTS

blueprint = Blueprint("labs", __name__, template_folder="templates")


def last_report(name: str, variant: str, directory: Path = REPORTS) -> dict[str, Any] | None:
    """The last report of a lab's variant, or None (never run here, or unreadable)."""
    try:
        report = json.loads((directory / f"{name}-{variant}.json").read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


@blueprint.get("/labs")
def labs_page() -> str:
    labs = [
        {
            "number": number,
            "lab": lab,
            "reports": {variant: last_report(lab.name, variant) for variant in ("sound", "broken")},
        }
        for number, lab in enumerate(LABS, start=1)
    ]
    return render_template("labs.html", labs=labs)
