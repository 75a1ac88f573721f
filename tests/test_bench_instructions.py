"""bench/instructions.py's reading of cachegrind's output, on small fixtures (valgrind itself
never runs in the tests: it is slow, and the CI machine may not have it)."""

from __future__ import annotations

import pytest

from bench.instructions import function_i_refs, summary_i_refs, top_functions, valgrind_i_refs

#: The shape of `valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=...`'s
#: file (valgrind 3.19): sqlite3VdbeExec is met under two files (inlined code).
OUT_FILE = """\
desc: I1 cache:         32768 B, 64 B, 8-way associative
desc: D1 cache:         32768 B, 64 B, 8-way associative
desc: LL cache:         268435456 B, 64 B, direct-mapped
cmd: /work/main/.venv/bin/python bench/instructions.py --driver --messages 3000
events: Ir
fl=./csu/../csu/libc-start.c
fn=__libc_start_main@@GLIBC_2.34
128 2
134 3
fl=sqlite3.c
fn=sqlite3VdbeExec
90000 1000
90001 24
fn=sqlite3BtreeInsert
70000 500
fl=sqlite3.h
fn=sqlite3VdbeExec
12 6
fl=???
fn=???
0 365
summary: 1900
"""

STDERR = """\
==4242== Cachegrind, a cache and branch-prediction profiler
instructions driver: posventa.core.inbox is /tmp/x/core/inbox.py
==4242== I   refs:      7,857,427,624
"""


def test_the_summary_line_is_the_total():
    assert summary_i_refs(OUT_FILE) == 1900


def test_functions_are_summed_over_their_files_and_add_up_to_the_summary():
    counts = function_i_refs(OUT_FILE)
    assert counts == {"__libc_start_main@@GLIBC_2.34": 5, "sqlite3VdbeExec": 1030, "sqlite3BtreeInsert": 500,
                      "???": 365}
    assert sum(counts.values()) == summary_i_refs(OUT_FILE)


def test_the_ir_column_is_found_when_more_events_are_counted():
    text = "events: Dr Ir\nfl=a.c\nfn=f\n1 7 3\n2 1 2\nsummary: 8 5\n"
    assert summary_i_refs(text) == 5
    assert function_i_refs(text) == {"f": 5}


def test_valgrind_s_closing_line_is_read_from_stderr():
    assert valgrind_i_refs(STDERR) == 7_857_427_624
    assert valgrind_i_refs("no valgrind here\n") is None


def test_a_file_that_is_not_cachegrind_s_is_refused():
    with pytest.raises(ValueError):
        summary_i_refs("hello\n")


def test_top_functions_are_ordered_by_the_size_of_their_difference():
    rows = top_functions({"a": 10.0, "b": 5.0, "c": 1.0}, {"a": 9.0, "b": 25.0, "d": 4.0}, 3)
    assert [(r["function"], r["difference"]) for r in rows] == [("b", 20.0), ("d", 4.0), ("a", -1.0)]
