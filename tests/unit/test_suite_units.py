"""`make test`'s workers: a group's tests run on one worker, and a module whose tests share a
module-scoped fixture is one group, so the fixture (a build, a synth) is made once
(tests/helpers/units.py). Under pytest 9.2 + xdist 3.8 the groups were silently split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = '''
import json, os, pytest

def record(name):
    with open(os.environ["RAN"], "a") as f:
        f.write(json.dumps([name, os.environ["PYTEST_XDIST_WORKER"]]) + "\\n")
'''
GROUPED = TESTS + '''
pytestmark = pytest.mark.xdist_group("stack")

@pytest.mark.parametrize("i", range(4))
def test_grouped(i):
    record("grouped")
'''
SHARED = TESTS + '''
@pytest.fixture(scope="module")
def built():
    record("built")

@pytest.mark.parametrize("i", range(4))
def test_shared(built, i):
    record("shared")

@pytest.mark.parametrize("i", range(4))
@pytest.mark.slow
def test_alone(i):
    record("alone")
'''


def test_groups_and_shared_module_fixtures_stay_on_one_worker(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_finish, pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "tests" / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "tests" / "test_shared.py").write_text(SHARED)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAN": str(tmp_path / "ran.jsonl")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder",
                           "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path / "tests" / "test_grouped.py"),
                           str(tmp_path / "tests" / "test_shared.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran: dict[str, list[str]] = {}
    for line in (tmp_path / "ran.jsonl").read_text().splitlines():
        name, worker = json.loads(line)
        ran.setdefault(name, []).append(worker)
    assert len(ran["grouped"]) == 4 and len(set(ran["grouped"])) == 1, ran
    assert len(ran["shared"]) == 4 and len(set(ran["shared"])) == 1 and len(ran["built"]) == 1, ran
    assert len(ran["alone"]) == 4  # tests that share nothing stay free to run on either worker
