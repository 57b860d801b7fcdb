#!/usr/bin/python3
"""Writes a JUnit XML file from smoke.sh's result lines.

  junit.py RESULTS.tsv OUT.xml SUITE
RESULTS.tsv lines: name<TAB>pass|fail|skip<TAB>seconds<TAB>message-file
"""
import sys
import xml.etree.ElementTree as ET


def main():
    results, out, suite_name = sys.argv[1], sys.argv[2], sys.argv[3]
    cases = []
    with open(results) as f:
        for line in f:
            name, status, seconds, msg_file = line.rstrip("\n").split("\t")
            try:
                with open(msg_file, errors="replace") as m:
                    message = m.read()[-4000:]
            except OSError:
                message = ""
            cases.append((name, status, seconds, message))
    suite = ET.Element("testsuite", name=suite_name, tests=str(len(cases)),
                       failures=str(sum(c[1] == "fail" for c in cases)),
                       skipped=str(sum(c[1] == "skip" for c in cases)),
                       time=str(sum(float(c[2]) for c in cases)))
    for name, status, seconds, message in cases:
        case = ET.SubElement(suite, "testcase", classname=suite_name,
                             name=name, time=seconds)
        if status == "fail":
            ET.SubElement(case, "failure",
                          message=message.splitlines()[-1] if message else
                          "failed").text = message
        elif status == "skip":
            ET.SubElement(case, "skipped",
                          message=message.strip()[:500])
        else:
            ET.SubElement(case, "system-out").text = message
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(out, encoding="unicode", xml_declaration=True)


if __name__ == "__main__":
    main()
