"""The ``benchmark-run`` directive: the recorded benchmark run as tables on the performance page.

The run comes from one of two files, whichever the page names first that exists:

* a JSON file written by ``python -m fastnn bench --json PATH`` (``docs/_data/benchmark.json``
  once the lead commits one): its ``cases`` (each with its workload, label and every
  contender's median, ratio or status), ``peak_gflops``, ``goals`` and ``environment``;
* ``BENCHMARKS.md``: the fenced blocks under its heading ``## The recorded run``, which hold
  the command's printed report: ``== title`` sections, each a text table (a header line, a
  line of dashes that gives the columns' extents, then the rows) with notes after it, and
  the ``[PASS]`` / ``[FAIL]`` lines of the goals.

Both are read into the same sections (title, header, rows, notes) and goals, and rendered
as docutils tables, so the page changes with a new run and nothing else. The section titles
and the time format are the harness's own (``fastnn.benchmark``)::

    .. benchmark-run::
       :sources: _data/benchmark.json ../BENCHMARKS.md

Paths are relative to the page's folder. The files are recorded as the page's dependencies:
Sphinx rebuilds the page when they change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

from fastnn.benchmark.cases import TITLES, WORKLOADS
from fastnn.benchmark.report import fmt_time

RECORDED_RUN = "## The recorded run"
MACHINE = "## The machine"
GOALS = "goals"  # the title of the report's last section, its verdict lines
VERDICT = re.compile(r"^\[((?:PASS|FAIL|N/A)(?: \(borderline\))?)\]\s*(.*)$")

MICROSECONDS = re.compile(r"(\d) us\b")


def _micro(text: str) -> str:
    return MICROSECONDS.sub("\\1 µs", text)


@dataclass
class Section:
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    source: str
    preamble: list[str]
    sections: list[Section]
    goals: list[tuple[str, str]]  # (verdict, text)
    closing: list[str]
    machine: list[tuple[str, str]] = field(default_factory=list)  # (what, value)


# -- reading the printed report (BENCHMARKS.md) ------------------------------------------

def recorded_block(markdown: str) -> list[str]:
    """The lines of the fenced blocks under the ``## The recorded run`` heading (up to the
    next ``## `` heading), one after the other."""
    _, found, rest = markdown.partition(RECORDED_RUN)
    if not found:
        raise ValueError(f"no {RECORDED_RUN!r} heading")
    section = re.split(r"^## ", rest, maxsplit=1, flags=re.M)[0]
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", section, flags=re.S | re.M)
    if not blocks:
        raise ValueError(f"no fenced block after {RECORDED_RUN!r}")
    return [line for block in blocks for line in block.splitlines()]


def machine_table(markdown: str) -> list[tuple[str, str]]:
    """The rows of the two-column table under the ``## The machine`` heading (markup
    stripped), or [] when there is none."""
    _, found, rest = markdown.partition(MACHINE)
    rows = []
    for line in rest.splitlines()[1:] if found else []:
        if line.startswith("#"):
            break
        cells = [c.strip().replace("`", "").replace("**", "") for c in line.strip("| ").split("|")]
        if len(cells) == 2 and cells[0] and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1]))
    return rows


def _extents(rule: str) -> list[tuple[int, int]]:
    """The (start, end) columns of each run of dashes in a table's rule line."""
    return [m.span() for m in re.finditer(r"-+", rule)]


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str] | None:
    """``line`` cut at the table's columns, or None when it is not a row of the table (it
    runs past the last column, or has text where the columns leave a gap)."""
    if len(line) > spans[-1][1]:
        return None
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if line[end:start].strip():
            return None
    return [line[start:end].strip() for start, end in spans]


def parse_report(lines: list[str], source: str) -> Run:
    """The printed report of ``python -m fastnn bench`` as a Run."""
    run = Run(source, [], [], [], [])
    section = None
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("== "):
            section = Section(line[3:].strip())
            if section.title.startswith(GOALS):
                section = None
                k += 1
                while k < len(lines):
                    verdict = VERDICT.match(lines[k])
                    if verdict:
                        run.goals.append((verdict.group(1), verdict.group(2)))
                    elif lines[k].strip():
                        run.closing.append(lines[k].strip())
                    k += 1
                break
            run.sections.append(section)
        elif section is None:
            if line.strip():
                run.preamble.append(line.strip())
        elif k + 1 < len(lines) and re.fullmatch(r"-+( +-+)*", lines[k + 1].strip()) \
                and not section.header:
            spans = _extents(lines[k + 1])
            section.header = _cells(line.ljust(spans[-1][1]), spans) or []
            k += 2
            while k < len(lines) and lines[k].strip():
                cells = _cells(lines[k], spans)
                if cells is None:
                    break
                section.rows.append(cells)
                k += 1
            continue
        elif line.strip():
            section.notes.append(line.strip())
        k += 1
    if not run.sections:
        raise ValueError(f"{source}: no '== ' sections in the recorded run")
    return run


# -- reading a JSON run (python -m fastnn bench --json) ----------------------------------

def _cell(entry: dict, base: str, name: str) -> str:
    """A contender's cell as the report prints it: its time, then its ratio to the base."""
    if "median_s" not in entry:
        return entry.get("status", "n/a")
    if name != base and entry.get("ratio") is not None:
        return f"{fmt_time(entry['median_s'])} ({entry['ratio']:.2f}x)"
    return fmt_time(entry["median_s"])


def parse_json(payload: dict, source: str) -> Run:
    """The ``--json`` payload of ``python -m fastnn bench`` as a Run."""
    env = payload.get("environment", {})
    machine = env.get("machine", {})
    preamble = [f"mode: {payload.get('mode', '?')}"]
    if machine:
        preamble.append(f"machine: {machine.get('cpu')}, {machine.get('cpus')} cpus, "
                        f"{machine.get('os')}, Python {machine.get('python')}")
    versions = list(dict.fromkeys(f"{facts.get('library', name)} {facts['version']}"
                                  for name, facts in env.get("contenders", {}).items()
                                  if "version" in facts))
    if versions:
        preamble.append("versions: " + ", ".join(versions))
    peak = payload.get("peak_gflops")
    sections = []
    cases = payload.get("cases", [])
    for workload in sorted({c["workload"] for c in cases},
                           key=lambda w: WORKLOADS.index(w) if w in WORKLOADS else len(WORKLOADS)):
        rows = [c for c in cases if c["workload"] == workload]
        names = list(dict.fromkeys(n for c in rows for n in c["contenders"]))
        flops = any(c.get("flops_per_step") for c in rows)
        section = Section(TITLES.get(workload, workload),
                          ["case", *names, *(["GFLOP/s", "% peak"] if flops else [])])
        for c in rows:
            row = [c["label"], *(_cell(c["contenders"].get(n, {"status": ""}), c["base"], n)
                                 for n in names)]
            if flops:
                mine = c["contenders"].get(c["base"], {})
                row.append(f"{mine['gflops']:.1f}" if mine.get("gflops") else "")
                row.append(f"{mine['percent_of_peak']:.0f}%"
                           if mine.get("percent_of_peak") is not None else "")
            section.rows.append(row)
        if workload == "peak" and peak:
            section.notes.append(f"GEMM peak: {peak:.1f} GFLOP/s")
        sections.append(section)
    goals = []
    for g in payload.get("goals", []):
        verdict = g["verdict"].upper() + (" (borderline)" if g.get("borderline") else "")
        goals.append((verdict, f"issue {g['issue']}: {g['title']} ({g['wants']}): "
                               f"{g['measured']}"))
    closing = []
    if payload.get("other_cpu") is not None:
        closing.append(f"other processes used {100 * payload['other_cpu']:.1f}% of the CPUs "
                       "during the run")
    if payload.get("elapsed_s") is not None:
        closing.append(f"{payload['elapsed_s']:.0f} s")
    return Run(source, preamble, sections, goals, closing)


def read_run(path: Path) -> Run:
    if path.suffix == ".json":
        return parse_json(json.loads(path.read_text()), path.name)
    markdown = path.read_text()
    run = parse_report(recorded_block(markdown), path.name)
    run.machine = machine_table(markdown)
    return run


# -- rendering -----------------------------------------------------------------------------

def _table(header: list[str] | None, rows: list[list[str]], numeric: bool = True
           ) -> nodes.table:
    """A docutils table of text cells; the columns after the first right-aligned
    (``numeric``); no header row when ``header`` is None."""
    table = nodes.table(classes=["benchmark-table" if numeric else "benchmark-facts"])
    group = nodes.tgroup(cols=len(rows[0] if rows else header))
    table += group
    for _ in range(group["cols"]):
        group += nodes.colspec(colwidth=1)
    parts = [(nodes.thead(), [header])] if header else []
    parts.append((nodes.tbody(), rows))
    for part, lines in parts:
        group += part
        for cells in lines:
            row = nodes.row()
            for i, text in enumerate(cells):
                entry = nodes.entry(classes=["numeric"] if i and numeric else [])
                entry += nodes.paragraph(text=_micro(text))
                row += entry
            part += row
    return table


class BenchmarkRun(SphinxDirective):
    has_content = False
    option_spec = {"sources": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        here = Path(self.env.doc2path(self.env.docname)).parent
        paths = [(here / name).resolve() for name in self.options["sources"].split()]
        for path in paths:
            self.env.note_dependency(str(path))
        found = next((p for p in paths if p.is_file()), None)
        if found is None:
            raise self.error(f"benchmark-run: none of {[str(p) for p in paths]} exists")
        try:
            run = read_run(found)
        except (ValueError, KeyError) as exc:
            raise self.error(f"benchmark-run: cannot read {found}: {exc}") from exc
        out: list[nodes.Node] = [nodes.paragraph(
            "", "", nodes.Text("Generated from "), nodes.literal(text=run.source),
            nodes.Text(" when this site was built.")), ]
        if run.machine:
            out.append(_table(None, [list(row) for row in run.machine], numeric=False))
        for line in run.preamble:
            out.append(nodes.paragraph(text=line))
        for section in run.sections:
            out.append(nodes.rubric(text=section.title))
            if section.rows:
                out.append(_table(section.header, section.rows))
            for note in section.notes:
                out.append(nodes.paragraph(text=_micro(note)))
        if run.goals:
            out.append(nodes.rubric(text="The goals, from this run"))
            items = nodes.bullet_list()
            for verdict, text in run.goals:
                item = nodes.list_item()
                item += nodes.paragraph("", "", nodes.strong(text=verdict), nodes.Text(" " + text))
                items += item
            out.append(items)
        if run.closing:
            out.append(nodes.paragraph(text="; ".join(run.closing)))
        return out


def setup(app):
    app.add_directive("benchmark-run", BenchmarkRun)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
