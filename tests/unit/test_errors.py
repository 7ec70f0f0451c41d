"""One user-error base class: every "fix your input" error is a FusionError, and the commands print it
without a traceback and exit 1, while a bug keeps its traceback."""

from __future__ import annotations

import pytest

from fusion.cli.common import report_user_errors
from fusion.data.cohort import CohortError, Problem
from fusion.errors import ConfigError, ExtractionError, FusionError
from fusion.fusers.base import MissingAllModalitiesError
from fusion.modalities.base import ModalityError

USER_ERRORS = [
    ConfigError("data.manifest is missing"),
    ExtractionError("patient 'P1': tile unreadable"),
    ModalityError("P1", "ct", "truncated file", "ct/P1.nii.gz"),
    MissingAllModalitiesError("batch rows [0] have none of the modalities"),
    CohortError([Problem("P1", "grade", "grade '7' is not one of the configured classes")], "cohort 'x'"),
]


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: type(e).__name__)
def test_user_errors_are_fusion_errors_and_value_errors(error):
    assert isinstance(error, FusionError) and isinstance(error, ValueError)


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: type(e).__name__)
def test_commands_print_user_errors_without_a_traceback_and_exit_1(error, capsys):
    def command():
        raise error

    with pytest.raises(SystemExit) as stop:
        report_user_errors(command)()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_a_bug_keeps_its_traceback():
    def command():
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        report_user_errors(command)()
