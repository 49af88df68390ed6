"""The pytest-benchmark view of fastnn's benchmark cases (``fastnn.benchmark.cases``).

Run every case once, untimed, as CI does so that the suite never rots::

    pytest bench --benchmark-disable -q

Time them, one group per case::

    pytest bench --benchmark-only --benchmark-group-by=group

Here every contender runs in the pytest process, after ``import fastnn`` (the
``--same-process`` view of ``python -m fastnn bench``): use it to profile or to watch one
case, and quote ``python -m fastnn bench``, which runs each contender in a process of its
own under the user's environment, for ratios. The sparse case (a fit of minutes) runs only
with ``--bench-sparse``. A peer that is not installed is skipped; a contender whose result
disagrees with fastnn's fails.
"""

import shutil
import tempfile

import pytest

from fastnn.benchmark.runner import CaseRun, Pool, Settings


def pytest_addoption(parser):
    parser.addoption("--bench-sparse", action="store_true",
                     help="also run the sparse case (20,000 x 2^18 CSR; minutes)")


class Prepared:
    """The case being benchmarked, set up and checked in every contender (one at a time:
    the tests run case by case)."""

    def __init__(self):
        self.pool = Pool(same_process=True)
        self.root = tempfile.mkdtemp(prefix="fastnn-bench-")
        self.current = None

    def __call__(self, case):
        if self.current is None or self.current.case.id != case.id:
            folder = tempfile.mkdtemp(prefix=case.workload + "-", dir=self.root)
            self.current = CaseRun(case, self.pool, Settings(), folder)
            self.current.prepare()
        return self.current

    def close(self):
        self.pool.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared():
    p = Prepared()
    yield p
    p.close()
