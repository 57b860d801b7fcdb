#!/usr/bin/python3
"""Adds up test cases from Bazel's and pytest's JUnit XML and prints the
closing line `N passed, N failed` (with `, N skipped` when any were skipped).

usage: summarize_tests.py BAZEL_LOG TESTLOGS_DIR [BAZEL_LOG TESTLOGS_DIR ...]
                          [JUNIT_XML ...]

Each BAZEL_LOG (a file ending in .log) is the output of one `bazel test` run
(the plain one, and one per sanitizer), followed by that run's testlogs
directory; its per-target status lines decide which targets ran in that run
(stale XML of removed targets is ignored) and catch targets that failed
without writing a failing case (crash, timeout). A missing JUNIT_XML counts
as one failure.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

STATUS = re.compile(r"^(//\S+)\s+(?:\(cached\)\s+)?(PASSED|FAILED|TIMEOUT|"
                    r"FLAKY|NO STATUS|FAILED TO BUILD|INCOMPLETE)\b")


def count_xml(path):
    passed = failed = skipped = 0
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("status") == "notrun":
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def count_bazel(bazel_log, testlogs):
    passed = failed = skipped = 0
    with open(bazel_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = STATUS.match(line.strip())
            if not m:
                continue
            target, status = m.groups()
            xml = os.path.join(testlogs, target[2:].replace(":", "/"), "test.xml")
            p = fl = s = 0
            if os.path.exists(xml):
                try:
                    p, fl, s = count_xml(xml)
                except ET.ParseError:
                    pass
            if status in ("PASSED", "FLAKY") and p + fl == 0:
                p = 1
            if status not in ("PASSED", "FLAKY") and fl == 0:
                fl = 1
            passed, failed, skipped = passed + p, failed + fl, skipped + s
    return passed, failed, skipped


def main(argv):
    args = argv[1:]
    passed = failed = skipped = 0
    while len(args) >= 2 and args[0].endswith(".log"):
        p, fl, s = count_bazel(args[0], args[1])
        passed, failed, skipped = passed + p, failed + fl, skipped + s
        args = args[2:]
    for xml in args:
        if os.path.exists(xml):
            p, fl, s = count_xml(xml)
            passed, failed, skipped = passed + p, failed + fl, skipped + s
        else:
            failed += 1
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
