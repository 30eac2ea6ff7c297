"""`fastrec verify`'s check of a combined index (`fastrec index`): one index over the .rec files
of a chunked pack, as DALI's `readers.mxnet` reads them. Kept beside verify.py's per-file checks,
which it does not change: it reports in the same form."""
from __future__ import annotations

import os

from fastrec.formats.combined_index import check_combined_index, combined_index_path
from fastrec.errors import FastrecError
from fastrec.reports.verify import Report


def default_combined_index(prefix: str) -> str | None:
    """PREFIX.idx when it is a combined index (there is no PREFIX.rec it would belong to)."""
    try:
        path = combined_index_path(prefix)
    except FastrecError:
        return None
    return path if os.path.isfile(path) else None


def verify_combined_index(prefix: str, index: str) -> Report:
    """A report on INDEX as the one index over PREFIX's .rec files (faults name its lines)."""
    report = Report(index)
    try:
        report.records, faults = check_combined_index(prefix, index)
    except FastrecError as err:
        report.fault(None, None, str(err))
        return report
    report.bytes = os.path.getsize(index)
    report.notes.append("one index over the .rec files of the prefix, in list order (DALI's readers.mxnet)")
    for fault in faults:
        report.fault(None, None, f"line {fault.line}: {fault.what}" if fault.line else fault.what)
    if report.fault_count:
        report.notes.append(f"rewrite it with `fastrec index {prefix}` after verifying the .rec files")
    return report
