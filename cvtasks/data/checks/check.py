"""Check a data set as training reads it: the data module's readers, datasets and loaders.

:func:`check_datamodule` takes a data module built from the run's config (not yet set up), reads
its annotations with the readers in their collecting mode (``on_bad_annotation=skip``, every
skipped problem collected), then reads every image of every split with the split's own dataset.
Nothing is parsed a second way: what the report counts is what training would see.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from cvtasks.data.annotations import AnnotationWarning, collecting_issues
from cvtasks.data.checks.faults import Fault
from cvtasks.data.checks.report import (
    DataReport,
    SplitSummary,
    duplicate_fault,
    duplicates_across_splits,
)
from cvtasks.data.checks.samples import inspect_split, split_datasets
from cvtasks.data.identity_folders import IdentityDataWarning
from cvtasks.data.images import BadImageWarning

#: data config keys set for a check, where the data set takes them: problems are collected
#: instead of stopping the read at the first, and no image is held in memory once checked
CHECK_SETTINGS = {"on_bad_annotation": "skip", "on_single_image": "skip", "cache_images": False}


def reader_fault(message: str) -> Fault:
    """A problem a reader skipped, placed at the file its message starts with."""
    where = message.split(": ", 1)[0] if ": " in message else message
    return Fault("annotation", where, message)


def read_annotations(datamodule: Any) -> list[Fault]:
    """Prepare and set up ``datamodule``, collecting what its readers skip.

    Returns:
        The readers' faults; a problem that stops the reading (an annotation file that cannot be
        parsed, flip pairs that pair a point twice, a missing folder) is one ``unusable`` fault.
    """
    with collecting_issues() as found, warnings.catch_warnings():
        # each skipped problem is reported one by one; the readers' summary warnings would
        # only repeat them
        for category in (AnnotationWarning, IdentityDataWarning, BadImageWarning):
            warnings.simplefilter("ignore", category)
        try:
            datamodule.prepare_data()
            datamodule.setup("fit")
        except (ValueError, OSError) as err:  # AnnotationError, BadImageError, missing files
            where = getattr(err, "path", None) or str(getattr(datamodule, "root", "data"))
            return [reader_fault(m) for m in found] + [Fault("unusable", str(where), str(err))]
    faults = [reader_fault(m) for m in found]
    root = getattr(datamodule, "root", None)
    for name in getattr(datamodule, "skipped_identities", []):
        faults.append(
            Fault(
                "single_identity",
                name,
                f"{name}: training identity (under {root}) has one image, which cannot form a "
                "positive pair; add images or leave it out",
                "train",
            )
        )
    return faults


def check_datamodule(datamodule: Any, data_name: str) -> DataReport:
    """Read every split of a data module as training would and report what is wrong.

    Args:
        datamodule: the data module built from the config (with :data:`CHECK_SETTINGS`), not
            yet set up.
        data_name: its config name, for the report.

    Returns:
        The report: per split the images, counts and image sizes; every fault, each naming its
        file (and entry); duplicate images across splits.
    """
    root = getattr(datamodule, "root", None)
    report = DataReport(data_name, None if root is None else str(root))
    report.faults = read_annotations(datamodule)
    if any(f.kind == "unusable" for f in report.faults):
        return report
    files, digests = {}, {}
    for split, dataset in split_datasets(datamodule):
        samples = inspect_split(dataset, datamodule)
        report.splits[split] = SplitSummary.of(samples)
        files[split] = [record.path for record in samples.records]
        digests.update({r.path: r.digest for r in samples.records if r.digest})
        report.faults += [replace(f, split=split) for r in samples.records for f in r.faults]
    report.duplicates = duplicates_across_splits(files, digests)
    report.faults += [duplicate_fault(group) for group in report.duplicates]
    return report
