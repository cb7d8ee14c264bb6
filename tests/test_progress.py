"""What ``optimize`` shows while it runs: the cell-by-cell search's phase lines and bar, and the
elapsed time at its end."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from optuna_spikenas.config import load_config
from optuna_spikenas.objective_factory import make_objective
from optuna_spikenas.recovery import WORKER_KEY
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.samplers.cellbycell import SLOT_KEY, CellByCellSampler
from optuna_spikenas.space import distinct_cells, suggest_architecture
from optuna_spikenas.summary import PhaseProgress, duration_text, phase_name

optuna.logging.set_verbosity(optuna.logging.WARNING)
BIN = Path(sys.executable).parent
PHASE_LINE = re.compile(
    r"^phase (?P<k>\d+) \((?:cells 1-2|cell \d+)\): (?P<count>\d+) candidates?"
    r"(?: \((?P<over>\d+) more over the budget\))? in (?P<phase>.+?) \(total (?P<total>.+?)\); "
    r"winner trial (?P<trial>\d+), score (?P<score>-?\d+\.\d{4}): (?P<arch>.+)$"
)
CANDIDATES = len(distinct_cells(("skip", "conv3x3")))  # 39 (test_cellbycell checks the number)

# Two phases in seconds on a 2-core machine: 39 two-cell candidates, then the 10 third cells that
# keep the network within 10,000 parameters (29 do not).
CONFIG = """
seed = 3
[dataset]
name = "digits"
[space]
macro = "light"
num_cells = [2, 3]
widths = [4]
shared_cell = false
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 10000
[search]
sampler = "cellbycell"
"""


def lines_of(stderr: str) -> list[str]:
    """What a terminal keeps: each ``\\r`` or ``\\n`` starts a new line."""
    return [line.strip() for line in re.split(r"[\r\n]", stderr) if line.strip()]


def seconds_of(text: str) -> float:
    """The inverse of ``duration_text`` (to its precision)."""
    if m := re.fullmatch(r"([\d.]+) s", text):
        return float(m[1])
    if m := re.fullmatch(r"(\d+) min (\d+) s", text):
        return 60 * int(m[1]) + int(m[2])
    m = re.fullmatch(r"(\d+) h (\d+) min", text)
    assert m, text
    return 3600 * int(m[1]) + 60 * int(m[2])


def expected_phases(study: optuna.Study) -> list[dict]:
    """Each phase's candidates and winner from the trials themselves: phase k's trials are the
    sampler's slots (not its final re-proposals) with k cells; the winner scores highest, the
    lowest trial number on a tie."""
    slotted = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get(SLOT_KEY, -1) >= 0]
    phases = []
    for k in sorted({t.params["num_cells"] for t in slotted}):
        tried = [t for t in slotted if t.params["num_cells"] == k]
        winner = max(tried, key=lambda t: (t.value, -t.number))
        phases.append({"k": k, "count": len(tried), "winner": winner})
    return phases


def test_each_worker_prints_every_phase_with_its_winner_as_the_sampler_sees_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'cbc.db'}"
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    config = tmp_path / "cbc.toml"
    config.write_text(CONFIG)
    command = [
        *(str(BIN / "optuna-spikenas"), "optimize", "--storage", url, "--study-name", "s"),
        *("--config", str(config), "--threads", "1", "--no-artifacts"),
    ]
    started = time.monotonic()
    workers = [
        subprocess.Popen(command + extra, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for extra in ([], [], ["--quiet"])
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    wall = time.monotonic() - started
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err

    study = optuna.load_study(study_name="s", storage=url)
    loaded = load_config(config)
    objective = make_objective(loaded)
    sampler = make_sampler(
        "cellbycell",
        0,
        space=objective.space,
        ops=loaded.search.ops,
        fits_budget=objective.fits_budget,
    )
    assert isinstance(sampler, CellByCellSampler)
    state = sampler.state(study)
    assert state.complete and len(state.winners) == 2
    expected = expected_phases(study)
    assert [p["k"] for p in expected] == [phase.k for phase in state.phases] == [2, 3]
    # the quiet worker's trials count in the others' lines; it printed nothing
    quiet_out, quiet_err = outputs[2]
    assert quiet_err == ""
    by_worker = {t.system_attrs.get(WORKER_KEY) for t in study.get_trials(deepcopy=False)}
    assert len(by_worker) >= 2  # several workers shared the phases

    printed = []
    for _, err in outputs[:2]:
        lines = lines_of(err)
        phase_lines = [m for line in lines if (m := PHASE_LINE.match(line))]
        printed.append([m.group(0) for m in phase_lines])
        assert len(phase_lines) == 2, err
        totals = []
        for m, want, phase, slot in zip(
            phase_lines, expected, state.phases, state.winners, strict=True
        ):
            winner = want["winner"]
            assert int(m["k"]) == want["k"] == phase.k
            assert int(m["count"]) == want["count"] == len(phase.candidates)
            assert int(m["over"] or 0) == CANDIDATES - want["count"]
            assert int(m["trial"]) == winner.number
            assert winner.system_attrs[SLOT_KEY] == slot  # the sampler's own winner
            assert float(m["score"]) == pytest.approx(winner.value, abs=5e-5)
            assert m["arch"] == winner.user_attrs["architecture"]
            assert 0 <= seconds_of(m["phase"]) <= seconds_of(m["total"]) + 0.1
            totals.append(seconds_of(m["total"]))
        assert totals == sorted(totals) and totals[-1] <= wall + 1
        # the grown network is the last phase's winner
        assert int(phase_lines[-1]["trial"]) == sampler.result(study).number
        # the bar counts the phase's candidates out of its total (phase 3 may pass between two
        # looks of this worker: no bar of it is required)
        for phase in state.phases:
            bar = re.escape(f"{phase_name(phase.k)}: ") + r"(\d+)/(\d+) candidates \|"
            counts = [(int(m[1]), int(m[2])) for line in lines if (m := re.match(bar, line))]
            assert counts or phase.k == 3, err
            assert all(0 <= n < total == len(phase.candidates) for n, total in counts), err
        ran = [line for line in lines if line.startswith("search ran ")]
        assert len(ran) == 1 and seconds_of(ran[0].split(";")[0][len("search ran ") :]) <= wall
    # storage is the state: every worker prints the same lines, times included
    assert printed[0] == printed[1]


def phase_score(arch) -> float:
    """Deterministic scores whose 3-cell networks all score below the best 2-cell one, so that
    a bar showing the study's best would show phase 2's during phase 3."""
    return -100.0 * arch.num_cells + sum(int(c) for c in str(arch).replace(" ", "")[:16]) / 7


def test_the_bar_counts_the_phase_and_shows_the_phases_best(capsys):
    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=3, width=4, poll_seconds=0.01)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    seen: list[tuple[int, float]] = []  # (cells, score) of each trial, in order
    bars: list[tuple[str, int, int, str]] = []

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, sampler.space)
        seen.append((arch.num_cells, phase_score(arch)))
        return seen[-1][1]

    with PhaseProgress(study) as progress:

        def look(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if progress.bar is not None:
                bar = progress.bar
                bars.append((str(bar.desc), int(bar.n), int(bar.total), str(bar.postfix)))

        study.optimize(objective, callbacks=[progress, look])
    err = capsys.readouterr().err

    assert len(seen) == 2 * CANDIDATES  # no budget: 39 candidates in each phase
    # during phase 3 the bar counts phase 3's trials and shows their best, not phase 2's
    phase2 = [bar for bar in bars if bar[0] == phase_name(2)]
    phase3 = [bar for bar in bars if bar[0] == phase_name(3)]
    assert [n for _, n, _, _ in phase2] == list(range(1, CANDIDATES))  # one more per trial
    assert [n for _, n, _, _ in phase3] == list(range(CANDIDATES))  # opened when phase 2 ended
    best2 = max(s for cells, s in seen if cells == 2)
    for _, n, total, postfix in phase3[1:]:
        scores = [s for cells, s in seen if cells == 3][:n]
        assert total == CANDIDATES
        assert postfix == f"best {max(scores):.4f}"
        assert max(scores) < best2
    lines = [m.group(0) for line in lines_of(err) if (m := PHASE_LINE.match(line))]
    assert [int(PHASE_LINE.match(line)["k"]) for line in lines] == [2, 3]
    assert float(PHASE_LINE.match(lines[0])["score"]) == pytest.approx(best2, abs=5e-5)
    assert progress.bar is None  # closed when the search ended

    # a worker that joins later prints the finished phases, read from storage, the same way
    with PhaseProgress(study):
        pass
    again = [line for line in lines_of(capsys.readouterr().err) if PHASE_LINE.match(line)]
    assert again == lines


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(8.44, "8.4 s"), (59.96, "1 min 00 s"), (192.4, "3 min 12 s"), (3900, "1 h 05 min")],
)
def test_durations_read_as_a_person_writes_them(seconds, text):
    assert duration_text(seconds) == text
