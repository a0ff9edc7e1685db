"""The main job end to end on a tiny digits configuration: steps, resume, reports, config errors."""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import yaml

from nasflow.cli import main
from nasflow.config import ConfigError
from nasflow.hw_plots import format_count
from nasflow.pipeline import PIPELINE_STEPS, load_pipeline_config, run_pipeline
from nasflow.report import pareto_front
from nasflow.strategies.evolution import Candidate
from nasflow.strategies.nsga2 import pick

TINY = {
    "model": {"channels": 4, "steps": 5},
    "autosnn": {"supernet_epochs": 1, "evaluations": 6, "rounds": 2},
    "": {"progress": False},
    "retrain": {"epochs": 1, "progress": False},
    "lava": {"samples": 6, "timeout_s": 300, "qat_epochs": 1},
}


def test_pareto_front_hand_worked():
    # (accuracy, cost): B dominates A (more accurate, cheaper); C is cheapest; D is most accurate.
    points = [(0.80, 5.0), (0.85, 4.0), (0.70, 1.0), (0.90, 9.0), (0.85, 4.0)]
    assert pareto_front(points) == [2, 1, 4, 3]


def test_bad_config_is_rejected_before_work(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text(yaml.safe_dump({"autosnn": {"evaluatons": 5}}))
    with pytest.raises(ConfigError, match="evaluatons"):
        load_pipeline_config(bad)
    bad.write_text(yaml.safe_dump({"retrain": {"epochs": "many"}}))
    with pytest.raises(ConfigError, match="retrain.epochs"):
        load_pipeline_config(bad)
    with pytest.raises(ConfigError, match="budgets.cores"):
        load_pipeline_config(None, {"autosnn.budgets": {"cores": 0}})
    with pytest.raises(ValueError, match="SCB_k9"):
        load_pipeline_config(None, {"baseline": "SCB_k9,skip,skip,skip,skip"})
    # The CLI turns it into one line and exit status 2, and writes nothing.
    out = tmp_path / "never"
    assert main(["run", "--config", str(bad), "--out", str(out)]) == 2
    assert not out.exists()


def _flat(sections: dict[str, dict]) -> dict[str, object]:
    return {f"{s}.{k}" if s else k: v for s, kv in sections.items() for k, v in kv.items()}


def test_old_layout_keys_are_refused_with_the_new_key(tmp_path):
    moved = r"search\.steps -> model\.steps; search\.evaluations -> autosnn\.evaluations"
    with pytest.raises(ConfigError, match=moved):
        load_pipeline_config(None, {"search.steps": 5, "search.evaluations": 3})
    with pytest.raises(ConfigError, match=r"snasnet\.steps -> model\.steps"):
        load_pipeline_config(None, {"snasnet.steps": 5})
    with pytest.raises(ConfigError, match=r"autosnn\.dataset -> data\.dataset"):
        load_pipeline_config(None, {"autosnn.dataset": "digits"})
    old = tmp_path / "run.yaml"
    old.write_text(yaml.safe_dump({"search": {"seed": 3}}))
    with pytest.raises(ConfigError, match=r"run\.yaml: .*search\.seed -> seed"):
        load_pipeline_config(old)
    # a run directory written with the old layout is refused on resume, naming the same keys
    run = tmp_path / "oldrun"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"space": "autosnn", "search": {"steps": 8}}))
    with pytest.raises(ConfigError, match=r"written by an older nasflow.*search\.steps -> model\.steps"):
        run_pipeline(load_pipeline_config(None), run, resume=True, log=lambda _m: None)
    assert main(["run", "--out", str(tmp_path / "x"), "--set", "search.evaluations=3"]) == 2


def test_shared_settings_reach_every_space_section():
    cfg = load_pipeline_config(None, {"model.steps": 5, "data.augment": "none", "seed": 7})
    for section in (cfg.autosnn, cfg.snasnet):
        assert (section.steps, section.augment, section.seed) == (5, "none", 7)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = load_pipeline_config(None, _flat(TINY))
    run_pipeline(cfg, out, log=lambda _m: None)
    return out


@pytest.mark.slow
def test_tiny_run_writes_every_artifact(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["schema_version"] == 1
    for role in ("winner", "baseline"):
        row = report[role]
        assert 0.0 <= row["torch_accuracy"] <= 1.0
        assert row["energy_per_sample_j"] > 0 and row["cores_used"] >= 1
        assert row["lava_accuracy"] is not None and row["lava_min_precision"] is not None
        # Fixed point on all 360 digits test samples by lava-emu, its spikes Lava fixed point's on the 6 Lava ones,
        # both running the integers of the quantisation-aware fine-tuning (on for Loihi by default).
        assert row["fixed_samples"] == 360 and row["emu_equals_lava_fixed"] is True
        assert 0.0 <= row["fixed_accuracy_all"] <= 1.0 and 0.0 <= row["fixed_accuracy_before_qat"] <= 1.0
        assert (tiny_run / f"{role}_fixed_point.npz").exists()
    steps = json.loads((tiny_run / "steps" / "simulate.json").read_text())
    for role in ("winner", "baseline"):
        sim = steps["result"][role]
        assert sim["lava_emu_samples"] == 360 and sim["lava_emu_compare"]["nodes"]
        # QAT's own evaluation on the test split is the emulator's accuracy with the same integers.
        assert sim["qat"]["fixed_accuracy_after"] == pytest.approx(sim["lava_emu_accuracy"])
    assert "all test samples (lava-emu)" in (tiny_run / "report.md").read_text()
    assert report["pareto"] and all("arch" in p for p in report["pareto"])
    for name in ("model.nir", "report.md", "report.html", "search/journal.jsonl", "config.yaml"):
        assert (tiny_run / name).exists(), name
    assert sorted(p.stem for p in (tiny_run / "steps").glob("*.json")) == sorted(PIPELINE_STEPS)


@pytest.mark.slow
def test_model_steps_reach_search_retraining_and_lava(tiny_run):
    """``model.steps=5`` (TINY) is the T of the search, of both retrainings and of the simulated samples."""
    assert yaml.safe_load((tiny_run / "search" / "config.yaml").read_text())["steps"] == 5
    header = json.loads((tiny_run / "search" / "journal.jsonl").read_text().splitlines()[0])
    assert header["steps"] == 5
    for role in ("winner", "baseline"):
        assert yaml.safe_load((tiny_run / role / "config.yaml").read_text())["model"]["steps"] == 5
        with np.load(tiny_run / f"{role}_activity.npz") as act:
            assert {act[k].shape[0] for k in act.files} == {5}


@pytest.mark.slow
def test_report_renders_in_a_real_browser(tiny_run, tmp_path):
    chromium = _chromium()
    report = (tiny_run / "report.html").resolve()
    # A wrapper page reads the report's images from an iframe (file:// needs --allow-file-access-from-files)
    # and writes into its own DOM, which --dump-dom prints, each image's natural size, its alt text and the
    # rendered text (innerText: what a reader sees, hidden elements excluded) of the figure around it.
    probe = tmp_path / "probe.html"
    probe.write_text(f"""<!doctype html><html><head><meta charset="utf-8"></head><body><iframe id="r"
src="{report.as_uri()}" width="1200" height="900"></iframe><pre id="out">pending</pre><script>
document.getElementById('r').onload = () => setTimeout(() => {{
  const imgs = [...document.getElementById('r').contentDocument.images];
  document.getElementById('out').textContent = JSON.stringify(imgs.map(i => [i.getAttribute('src'),
    i.complete, i.naturalWidth, i.naturalHeight, i.alt, i.closest('figure').innerText]));
}}, 500);
</script></body></html>""")
    dom = subprocess.run([*_headless(chromium, tmp_path / "profile-dom"), "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert '<pre id="out">' in dom.stdout, f"chromium printed no DOM (rc {dom.returncode}): {dom.stderr[-2000:]}"
    text = dom.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    images = {src: rest for src, *rest in json.loads(html.unescape(text))}
    assert len(images) >= 3, images
    for src, (complete, width, height, _alt, _caption) in images.items():
        assert complete and width >= 200 and height >= 150, f"plot {src} did not load ({width}x{height})"
    for role in ("winner", "baseline"):
        # The heatmap names each core's layer and its traffic in the page's text, as the picture draws them.
        hw = json.loads((tiny_run / f"{role}_hw" / "hw.json").read_text())
        _complete, _w, _h, alt, caption = images[f"plots/{role}_traffic.png"]
        assert "messages / sample" in caption and f"{hw['cores_used']} {hw['chip']} cores" in caption
        cells = [line.split("\t") for line in caption.splitlines() if "\t" in line]
        assert cells[0] == ["layer", "cores", "tiles (x, y)", "received messages / sample, per core"], caption
        table = {row[0]: row[1:] for row in cells[1:]}
        expected: dict[str, tuple[list[str], list[str]]] = {}
        for block, msgs in zip(hw["blocks"], hw["per_core"]["messages_in_per_sample"]):
            tiles, counts = expected.setdefault(block["layer"], ([], []))
            tiles.append(f"({block['x']}, {block['y']})")
            counts.append(format_count(msgs))
        assert list(table) == list(expected), caption
        for layer, (tiles, counts) in expected.items():
            assert layer in alt
            assert table[layer][1] == ", ".join(dict.fromkeys(tiles)), (layer, table)
            assert table[layer][2].split(", ") == counts, (layer, table)
        assert "µJ / sample" in images[f"plots/{role}_energy.png"][4]
    shot = tmp_path / "report.png"
    subprocess.run([*_headless(chromium, tmp_path / "profile-shot"), f"--screenshot={shot}", "--window-size=1200,2400",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000  # a rendered page with plots, not a blank one


def _headless(chromium: str, profile: Path) -> list[str]:
    """Flags for a quiet, offline headless run as root in a container, with a fresh empty profile."""
    profile.mkdir()
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--allow-file-access-from-files", "--virtual-time-budget=5000"]


def _chromium() -> str:
    """The browser `make browser` provides ($CHROMIUM, else chromium or chromium-browser on PATH); without one
    the test fails (the suite never skips) saying how to get it."""
    import shutil

    if os.environ.get("CHROMIUM"):
        path = os.environ["CHROMIUM"]
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.fail(f"CHROMIUM={path} is not an executable file; unset it or point it at Chromium")
        return path
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium for the browser test (looked at $CHROMIUM, chromium, chromium-browser on PATH): "
                "run `make browser` (installs Debian's chromium; `make test` runs it first) or set CHROMIUM=/path")


@pytest.mark.slow
def test_killed_search_resumes_without_reevaluating(tmp_path):
    """A killed NSGA-II main job resumes by replay from its journal, then deploys the front's knee."""
    out = tmp_path / "run"
    sets = [f"--set={k}={json.dumps(v)}" for k, v in _flat(TINY).items()]
    sets = [s for s in sets if "evaluations" not in s] + [
        "--set=autosnn.evaluations=12", "--set=autosnn.strategy=nsga2", "--set=autosnn.population=4"]
    cmd = [sys.executable, "-m", "nasflow.cli", "run", "--out", str(out), *sets]
    journal = out / "search" / "journal.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _lines(journal) < 3 and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    before = _lines(journal)
    assert 3 <= before < 12, f"the search should have been killed midway, journal has {before} lines"
    assert not (out / "steps" / "search.json").exists()
    assert main(["run", "--out", str(out), "--resume", *sets]) == 0
    search = json.loads((out / "search" / "search.json").read_text())
    assert search["journal_hits"] >= before  # every candidate evaluated before the kill came from the journal
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    archs = [r["arch"] for r in rows if r["type"] == "candidate"]
    assert len(archs) == len(set(archs)) == len(search["evaluated"]), "a candidate was evaluated twice"
    cands = [Candidate(r["arch"], r["accuracy"], r["costs"], r["fitness"]) for r in search["evaluated"]]
    knee = pick(cands, ("accuracy", "energy:loihi"), "knee")
    assert search["objectives"] == ["accuracy", "energy:loihi"] and search["best"]["arch"] == knee.arch
    report = json.loads((out / "report.json").read_text())
    assert report["winner"]["arch"] == knee.arch and report["search"]["pick"] == "knee"
    assert report["pareto_cost"] == "energy:loihi"


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if '"type": "candidate"' in line)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_snasnet_space_runs_the_same_steps(tmp_path):
    sets = {"space": "snasnet", "snasnet.candidates": 3, "model.channels": 4, "model.steps": 4,
            "snasnet.epochs": 1, "snasnet.score_batch": 32, "progress": False, "retrain.epochs": 1,
            "retrain.progress": False, "lava.samples": 4, "lava.qat": "off"}
    report = run_pipeline(load_pipeline_config(None, sets), tmp_path / "sn", log=lambda _m: None)
    with np.load(tmp_path / "sn" / "winner_activity.npz") as act:  # the SNASNet winner simulated at model.steps
        assert {act[k].shape[0] for k in act.files} == {4}
    from nasflow.spaces.snasnet import parse_cell

    parse_cell(report["winner"]["arch"])  # the winner is a cell in matrix notation
    assert report["winner"]["lava_min_precision"] >= 0.999 and report["winner"]["lava_min_recall"] >= 0.999
    assert report["winner"]["energy_per_sample_j"] > 0 and report["search"]["value"].endswith("score")
    assert any(word in str(report["netx"]["winner"]) for word in ("residual", "recurrence", "Error", ".net"))
    with pytest.raises(ConfigError, match="space"):
        load_pipeline_config(None, {"space": "darts"})


@pytest.mark.slow
def test_in_training_darts_runs_the_main_job(tmp_path):
    """The in-training strategy end to end through the main job: search -> decode -> retrain -> NIR -> Lava -> cost."""
    sets = {**_flat({k: v for k, v in TINY.items() if k != "autosnn"}), "model.steps": 3,
            "autosnn.strategy": "darts", "autosnn.supernet_epochs": 1, "autosnn.cost": "spikes", "lava.samples": 4,
            "lava.qat": "off"}
    report = run_pipeline(load_pipeline_config(None, sets), tmp_path / "darts", log=lambda _m: None)
    search = json.loads((tmp_path / "darts" / "search" / "search.json").read_text())
    assert search["strategy"] == "darts" and search["trajectory"] and search["best"]["arch"] == report["winner"]["arch"]
    assert len(report["winner"]["arch"].split(",")) == 5
    assert report["winner"]["lava_accuracy"] is not None and report["winner"]["energy_per_sample_j"] > 0
    with pytest.raises(ConfigError, match="strategy 'darts' prices spikes only"):
        load_pipeline_config(None, {"autosnn.strategy": "darts"})  # the default cost is energy:loihi


def test_temporal_search_settings_are_checked_before_work():
    with pytest.raises(ConfigError, match="chip 'loihi' cannot run the HNS winner's analog"):
        load_pipeline_config(None, {"search.temporal": "hns"})  # the main job's default chip is Loihi
    with pytest.raises(ConfigError, match="ALIF"):
        load_pipeline_config(None, {"search.temporal": "hns", "search.types": "lif,alif", "chip": "loihi2"})
    with pytest.raises(ConfigError, match="search.temporal must be one of none, tps, hns"):
        load_pipeline_config(None, {"search.temporal": "pns"})
    with pytest.raises(ConfigError, match="search.evaluations -> autosnn.evaluations"):
        load_pipeline_config(None, {"search.evaluations": 3})  # the old AutoSNN section is still named
    assert load_pipeline_config(None, {"search.temporal": "hns", "search.types": "lif"}).search.temporal == "hns"


@pytest.mark.slow
def test_main_job_with_hns_on_the_winner_deploys_a_hybrid(tmp_path):
    """search.temporal=hns: the winner's types are searched, retrained with them, exported with its ReLU layers,
    refused by Lava by name, run on the torch reference and costed with MACs on a chip that prices them."""
    sets = {**_flat(TINY), "lava.samples": 2, "lava.fixed_point": False, "search.temporal": "hns",
            "search.temporal_epochs": 2, "search.every": 4, "search.lambda_e": 0.0, "chip": "generic-45nm-fp32",
            "autosnn.cost": "energy:generic-45nm-fp32"}
    report = run_pipeline(load_pipeline_config(None, sets), tmp_path / "h", log=lambda _m: None)
    temporal = report["search"]["temporal"]
    assert temporal["method"] == "hns" and temporal["energy"]["accounting"] == "per-step"
    relus = [item.partition(":")[0] for item in temporal["arch"].split(";") if item.endswith("type=relu")]
    assert relus, "λ_E = 0 on digits should pick some ReLU layers"
    graph = nir.read(tmp_path / "h" / "model.nir")
    assert all(graph.nodes[n].metadata.get("nasflow.activation") == "relu" for n in relus)
    assert report["winner"]["lava_accuracy"] is None and "analog ReLU layer" in report["winner"]["lava_refused"]
    assert report["winner"]["energy_per_sample_j"] > 0 and report["winner"]["torch_accuracy"] > 0
    assert "Lava did not run the winner" in (tmp_path / "h" / "report.md").read_text()


@pytest.mark.parametrize("space, arch", [("autosnn", "SCB_k3,SRB_k3,skip,SCB_k5,SRB_k5"), ("snasnet", None),
                                         ("spikedhs", None)])
@pytest.mark.parametrize("method", ["tps", "hns"])
def test_the_temporal_step_searches_the_winner_of_every_space(space, arch, method):
    """The TPS/HNS config the main job derives for its winner builds that winner with the run's T, C and neuron."""
    from nasflow.snn.neuron_types import type_layers
    from nasflow.temporal_step import _config

    sets = {"space": space, "model.steps": 3, "model.channels": 4, "search.temporal": method,
            "chip": "generic-45nm-fp32"}
    cfg = load_pipeline_config(None, sets)
    if arch is None:  # the space's own default winner: SNASNet's released cell, SpikeDHS's baseline genotype
        arch = {"snasnet": "0303 0030 2002 0200", "spikedhs": None}[space]
    tcfg = _config(cfg, arch)
    assert type(tcfg).__name__ == ("TPSConfig" if method == "tps" else "HNSConfig")
    assert (tcfg.steps, tcfg.channels, tcfg.dataset) == (3, 4, "digits")
    net = tcfg.space().build(in_shape=(1, 8, 8), num_classes=10, channels=4, steps=3, neuron=tcfg.neuron)
    assert type_layers(net) and net.steps == 3


def test_strings_from_files_render_as_text(tiny_run, tmp_path):
    """An architecture string from a tampered step file (``<script>``, table pipes, Markdown emphasis) is text in
    report.html (checked in headless Chromium: the script never runs) and in report.md."""
    chromium = _chromium()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    evil = '<script>document.title="pwned"</script>|*x*'
    step = run / "steps" / "search.json"
    data = json.loads(step.read_text())
    for row in data["result"]["evaluated"]:
        row["arch"] = evil
    step.write_text(json.dumps(data))
    (run / "steps" / "report.json").unlink()  # every other step is done: only the reports are rebuilt
    sets = [f"--set={k}={json.dumps(v)}" for k, v in _flat(TINY).items()]
    assert main(["run", "--out", str(run), "--resume", *sets]) == 0
    page = (run / "report.html").read_text()
    assert evil not in page and "&lt;script&gt;document.title" in page
    dom = subprocess.run([*_headless(chromium, tmp_path / "profile"), "--dump-dom", (run / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "<title>pwned</title>" not in dom.stdout and "&lt;script&gt;document.title" in dom.stdout, dom.stderr[-500:]
    md = (run / "report.md").read_text()
    assert "&lt;script&gt;document.title=\"pwned\"&lt;/script&gt;\\|\\*x\\*" in md
