"""Every case of ``python -m fastnn bench`` for every contender, as pytest-benchmark tests:
one group per case (``fastnn.benchmark.cases`` has the grid; see conftest.py)."""

import pytest

from fastnn.benchmark.cases import cases

PAIRS = [(case, name) for case in cases() for name in case.contenders]


@pytest.mark.parametrize("case,contender", PAIRS,
                         ids=[f"{case.id}:{name}" for case, name in PAIRS])
def test_case(benchmark, prepared, request, case, contender):
    if case.opt_in and not request.config.getoption("--bench-sparse"):
        pytest.skip("opt-in case: run with --bench-sparse")
    run = prepared(case)
    outcome = run.outcomes[contender]
    if outcome.status.startswith("n/a") or outcome.status == "unsupported":
        pytest.skip(f"{contender}: {outcome.status}")
    assert outcome.status == "ok", f"{contender}: {outcome.status}"
    task = run.workers[contender].handler.task
    benchmark.group = case.id
    benchmark.extra_info.update(workload=case.workload, contender=contender,
                                steps_per_call=case.steps, flops_per_step=case.flops)
    benchmark(task.run)
    if case.single_shot:  # the timed fit's held-out accuracy
        run.check()
        assert run.outcomes[contender].status == "ok", run.outcomes[contender].status

