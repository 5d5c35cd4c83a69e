"""tests/run.sh's per-release counts and skip reasons, from pytest's JUnit XML."""
from support import junit_summary

XML = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="5">
<testcase classname="a" name="ok" /><testcase classname="a" name="bad"><failure message="x" /></testcase>
<testcase classname="a" name="broken"><error message="y" /></testcase>
<testcase classname="b" name="s1"><skipped type="pytest.skip" message="needs a CUDA device">/x/b.py:3: needs a CUDA device</skipped></testcase>
<testcase classname="c" name="s2"><skipped message="collection skipped">('/x/conftest.py', 45, 'Skipped: in-process ComfyUI tests skipped: COMFYUI_PATH is not set')</skipped></testcase>
</testsuite></testsuites>"""


def test_counts_each_outcome_and_a_missing_file_as_an_error(tmp_path):
    (tmp_path / "a.xml").write_text(XML)
    counts, reasons = junit_summary.summarize([tmp_path / "a.xml", tmp_path / "never-written.xml"])
    assert junit_summary.line(counts) == "5 tests: 1 passed, 1 failed, 2 errors, 2 skipped"
    assert reasons == {"needs a CUDA device": 1, "in-process ComfyUI tests skipped: COMFYUI_PATH is not set": 1}
