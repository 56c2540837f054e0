"""The output discipline every command shares (cmp/output.py): stdout once, on success only;
warnings whether the command succeeds or fails (they often explain the failure); notes on
success; the exit code the error's class carries."""

from __future__ import annotations

import pytest

from cmp.errors import ExitStatus, RegistryError
from cmp.output import Output, execute


def test_success_prints_the_result_once_and_says_warnings_before_notes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def job(output: Output) -> str:
        output.warn("the cache directory is not writable")
        output.note("override: web")
        return "kind: ConfigMap\n"

    assert execute(job, environ={}) == ExitStatus.OK
    said = capsys.readouterr()
    assert said.out == "kind: ConfigMap\n"
    assert said.err == (
        "tagpin: warning: the cache directory is not writable\ntagpin: override: web\n"
    )


def test_a_failure_prints_nothing_on_stdout_and_keeps_the_warnings_said_before_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The pin bug: a warning gathered before an exit-9 error was dropped by one command."""

    def job(output: Output) -> str:
        output.warn("the cache directory is not writable")
        output.note("not said: notes are for a success")
        raise RegistryError("ECR cannot be reached", "check the network")

    assert execute(job, environ={}) == ExitStatus.REGISTRY
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == (
        "tagpin: warning: the cache directory is not writable\n"
        "tagpin: cannot reach the registry (exit 9):\n"
        "  ECR cannot be reached\n"
        "  check the network\n"
    )


def test_an_unknown_variable_is_warned_about_on_success_and_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {"TAGPIN_CAHCE": "off"}
    assert execute(lambda output: "", environ=environ) == ExitStatus.OK
    assert "TAGPIN_CAHCE is not a tagpin setting" in capsys.readouterr().err

    def failing(output: Output) -> str:
        raise RegistryError("down")

    assert execute(failing, environ=environ) == ExitStatus.REGISTRY
    assert "TAGPIN_CAHCE is not a tagpin setting" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [
        (MemoryError(), ExitStatus.SOURCE, "needs more memory than tagpin allows one render"),
        (KeyError("bug"), ExitStatus.INTERNAL, "internal error (a bug in tagpin"),
        (KeyboardInterrupt(), ExitStatus.INTERRUPTED, ""),
    ],
)
def test_what_is_not_a_tagpin_error_still_ends_with_its_own_code_and_no_output(
    capsys: pytest.CaptureFixture[str], raised: BaseException, status: int, said: str
) -> None:
    def job(output: Output) -> str:
        output.warn("said before")
        raise raised

    assert execute(job, environ={}) == status
    printed = capsys.readouterr()
    assert printed.out == "" and said in printed.err
    assert ("said before" in printed.err) == (status != ExitStatus.INTERRUPTED)
