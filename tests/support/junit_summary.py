"""One line of counts from pytest's JUnit XML files, for tests/run.sh's per-release summary.

    python junit_summary.py [--reasons] FILE.xml ...

prints "N tests: P passed, F failed, E errors, S skipped" (a file that is missing, because
pytest died before writing it, counts as an error). With --reasons, each distinct skip
reason follows on its own indented line with its count.
"""
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def _cases(path: Path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        yield from suite.iter("testcase")


def _reason(skipped) -> str:
    message = (skipped.get("message") or "").strip()
    if message == "collection skipped":  # a module skipped whole: the text is (path, line, "Skipped: why")
        found = re.search(r"'Skipped: (.*)'\)\s*$", skipped.text or "", re.DOTALL)
        return found.group(1) if found else (skipped.text or message).strip()
    return message or (skipped.get("type") or "skipped")


def summarize(paths: list[Path]) -> tuple[Counter, Counter]:
    counts, reasons = Counter(), Counter()
    for path in paths:
        if not path.exists():
            counts["errors"] += 1
            continue
        for case in _cases(path):
            counts["tests"] += 1
            if case.find("failure") is not None:
                counts["failed"] += 1
            elif case.find("error") is not None:
                counts["errors"] += 1
            elif (skipped := case.find("skipped")) is not None:
                counts["skipped"] += 1
                reasons[_reason(skipped)] += 1
            else:
                counts["passed"] += 1
    return counts, reasons


def line(counts: Counter) -> str:
    return (f"{counts['tests']} tests: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['errors']} errors, {counts['skipped']} skipped")


def main(argv: list[str]) -> int:
    with_reasons = "--reasons" in argv
    counts, reasons = summarize([Path(arg) for arg in argv if arg != "--reasons"])
    print(line(counts))
    if with_reasons:
        for reason, n in reasons.most_common():
            print(f"    skipped {n}x: {reason[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
