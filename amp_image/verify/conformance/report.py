"""Turn a conformance report (``amp-image test --conformance --report FILE``) into
the Markdown table of docs/conformance.md:

    python -m amp_image.verify.conformance.report build/conformance-report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def markdown(report: dict) -> str:
    rows = ["| scenario | feature | result | seconds |", "| --- | --- | --- | ---: |"]
    total = 0.0
    for entry in report["scenarios"]:
        total += entry["seconds"]
        extra = "".join(f"; {k} = {v}" for k, v in entry.items()
                        if k not in ("scenario", "feature", "outcome", "seconds"))
        rows.append(f"| `{entry['scenario']}` | {entry['feature']}{extra} | "
                    f"{entry['outcome']} | {entry['seconds']:.1f} |")
    passed = sum(e["outcome"] == "passed" for e in report["scenarios"])
    rows.append(f"| **total** | {passed} of {len(report['scenarios'])} passed; the whole run "
                f"(VM boots included) took {report.get('wall_seconds', '?')} s | | {total:.0f} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown(json.loads(Path(sys.argv[1]).read_text())))
