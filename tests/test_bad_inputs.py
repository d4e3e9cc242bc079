"""Issue 7's bad-input corpus: every hostile or broken input, run through the real ``lpt-run`` / ``lpt``
process, fails in one line, at once, leaving nothing behind; the payloads never run. The cases run once,
two at a time; the table of outcomes is printed at the end of the session."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.bad_inputs import corpus
from tests.bad_inputs.run import Outcome, program, run_case, table

from .conftest import shared_file

Results = tuple[dict[str, Outcome], dict[str, str], dict[str, Path]]  # outcomes, skipped (why), case folders


def _shared_assets() -> dict[str, Path]:
    found = {}
    for needs in {spec.needs for spec in corpus.CASES.values() if spec.needs}:
        try:
            found[needs] = shared_file(needs)
        except pytest.skip.Exception:
            pass
    return found


class _PrintAtTheEnd:
    """A plugin registered once the corpus ran: its table closes the session's output, with or without -s."""

    def __init__(self, text: str) -> None:
        self.text = text

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("bad-input corpus (issue 7)")
        terminalreporter.write_line(self.text)


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Results:
    root = tmp_path_factory.mktemp("bad_inputs")
    inputs = corpus.make_inputs(root / "valid", _shared_assets())
    skipped = {name: f"needs ../shared/{spec.needs}" for name, spec in corpus.CASES.items()
               if spec.needs and spec.needs not in inputs.assets}
    folders = {name: root / name for name in corpus.CASES if name not in skipped}
    cases = {}
    for name, folder in folders.items():
        folder.mkdir()
        cases[name] = corpus.CASES[name].build(folder, inputs)
    with ThreadPoolExecutor(max_workers=2) as pool:  # each case is mostly one process's start-up
        outcomes = dict(zip(cases, pool.map(run_case, cases.values(), folders.values())))
    titles = {name: spec.title for name, spec in corpus.CASES.items()}
    request.config.pluginmanager.register(_PrintAtTheEnd(table(outcomes, skipped, titles)))
    return outcomes, skipped, folders


@pytest.mark.parametrize("name", list(corpus.CASES))
def test_bad_input_fails_in_one_line_and_leaves_nothing(name: str, corpus_results: Results) -> None:
    outcomes, skipped, _ = corpus_results
    if name in skipped:
        pytest.skip(skipped[name])
    outcome = outcomes[name]
    assert outcome.problems() == [], f"{name}: {outcome.problems()}\nstderr:\n{outcome.stderr}"


@pytest.mark.parametrize("name,load", [
    ("pickle-payload", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"),
    ("checkpoint-payload", "import sys, torch; torch.load(sys.argv[1], weights_only=False)"),
])
def test_the_payloads_are_live(name: str, load: str, corpus_results: Results) -> None:
    """The control: the same file loaded the unsafe way does run its command, so its marker's absence after
    the corpus run means lpt refused it, not that the payload was a dud."""
    outcomes, _, folders = corpus_results
    marker = next(path for path in outcomes[name].case.absent if path.name.endswith("payload-ran"))
    assert not marker.exists()
    payload = folders[name] / ("evil.pkl" if name == "pickle-payload" else corpus.F_FILE)
    subprocess.run([sys.executable, "-c", load, str(payload)], capture_output=True, check=False, timeout=60)
    assert marker.exists()


def test_engines_check_passes_engines_that_match(tmp_path: Path) -> None:
    """The other side of the engine cases: the same check accepts an intact engine for the target."""
    corpus.engine_folder(tmp_path, "11.4.0.106", tamper=False)

    def check(*target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([program("lpt"), "engines", "check", "engines", *target], cwd=tmp_path,
                              capture_output=True, text=True, check=False, timeout=60)

    for target in (("--trt-version", "11.4", "--gpu", "sm90"), ("--trt-version", "11.4.0.106", "--gpu", "9.0")):
        done = check(*target)
        assert done.returncode == 0 and done.stderr == "" and done.stdout.splitlines()[1].endswith("ok"), done
    assert check("--trt-version", "11.40", "--gpu", "sm90").returncode == 1  # 11.4 is not 11.40
    assert check("--trt-version", "11.4", "--gpu", "sm89").returncode == 1
    bad = check("--trt-version", "11.4", "--gpu", "hopper")
    assert bad.returncode == 2 and "sm90" in bad.stderr and "Traceback" not in bad.stderr
