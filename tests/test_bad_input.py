"""Malformed configs, sweep files, IDX files and checkpoints: one clear maskstudy error, never a
KeyError/TypeError/AttributeError or a deep library traceback, and never code run from a file."""

from __future__ import annotations

import ast
import gzip
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maskstudy.analysis.lmc import lmc_probe
from maskstudy.cli import main
from maskstudy.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_idx
from maskstudy.demo import demo
from maskstudy.errors import ConfigError, DataError, StoreError
from maskstudy.runs.config import RunConfig, field_paths, parse_value
from maskstudy.runs.executors import run_sweep
from maskstudy.runs.run import branch, run
from maskstudy.runs.store import Run, create_run
from maskstudy.runs.sweep import TOP_LEVEL, open_sweep, parse_sweep, prepare_sweep_dir

EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FIELDS = field_paths()
SECTIONS = sorted({p.rsplit(".", 1)[0] for p in FIELDS if "." in p})


def refused() -> None:
    """Tally refused inputs (``pytest --hypothesis-show-statistics`` shows the share)."""
    event("refused")


# --- values: plausible ones (to get past the first check) mixed with anything JSON/TOML holds ----
PLAUSIBLE = st.sampled_from(
    [0, 1, 3, -1, 0.5, 1.5, 0.0, 1e-3, 2**70, True, False, "", "sgd", "adam", "10ep", "5it",
     "2ep3it", "ten", "magnitude", "random", "rewind", "global", "mnist", "synthetic", "lenet5",
     "output", "fc1.weight", [1, 8, 8], [], ["80ep"], {"output": 0.1}, {"fc1.weight": "x"}]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
ANY = st.recursive(
    st.one_of(PLAUSIBLE, SCALARS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.one_of(st.sampled_from(FIELDS + SECTIONS), st.text(max_size=10))


def key_paths(tree: object, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every dotted run of consecutive keys in nested dicts and lists ('train', 'train.lr', 'lr')."""
    out: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = (*prefix, str(key))
            out |= {".".join(path[i:]) for i in range(len(path))}
            out |= key_paths(value, path)
    if isinstance(tree, list):
        for value in tree:
            out |= key_paths(value, prefix)
    return out


def mentions(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as written or as its repr (quoted, odd characters
    escaped: how an empty or unprintable name shows)."""
    return repr(name) in message or (
        bool(name) and (name in message or repr(name)[1:-1] in message)
    )


def assert_names_a_field(error: ConfigError, tree: object) -> None:
    message = str(error)
    named = [p for p in key_paths(tree) if mentions(message, p)]
    assert named, f"{message!r} names none of the fields given"


# --- RunConfig --------------------------------------------------------------------------------------
@EXAMPLES
@given(path=KEYS, value=ANY)
def test_any_single_override_is_applied_or_refused_naming_its_field(path, value):
    try:
        cfg = RunConfig().replace({path: value})
    except ConfigError as e:
        refused()
        assert mentions(str(e), path.split(".")[0]), str(e)
        return
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # what was accepted round-trips


SECTION_TREES = st.fixed_dictionaries(
    {},
    optional={
        s: st.dictionaries(
            st.one_of(st.sampled_from([p.split(".")[1] for p in FIELDS if p.startswith(s + ".")]),
                      st.text(max_size=6)),
            ANY,
            max_size=4,
        )
        | ANY
        for s in SECTIONS
    }
    | {p: ANY for p in FIELDS if "." not in p},
)  # fmt: skip
TREES = st.one_of(SECTION_TREES, st.dictionaries(KEYS, ANY, max_size=4), ANY)


@EXAMPLES
@given(tree=TREES)
def test_from_dict_builds_a_config_or_names_the_bad_field(tree):
    try:
        cfg = RunConfig.from_dict(tree)
    except ConfigError as e:
        refused()
        if isinstance(tree, dict) and tree:
            assert_names_a_field(e, tree)
        else:
            assert "config must be a table" in str(e)
        return
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@EXAMPLES
@given(path=st.sampled_from(FIELDS), text=st.text(max_size=16))
def test_command_line_values_parse_or_are_refused_naming_the_field(path, text):
    try:
        RunConfig().replace({path: parse_value(text)})
    except ConfigError as e:
        refused()
        assert mentions(str(e), path.split(".")[0]), str(e)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"train.lr": math.nan}, r"train\.lr = nan must be a finite number > 0"),
        ({"train.lr": math.inf}, r"train\.lr = inf must be a finite number > 0"),
        ({"model.width": math.inf}, r"model\.width = inf"),
        ({"train.lr": 10**400}, r"train\.lr = 1000.* must be a finite number"),
        ({"data.name": "imagenet"}, r"data\.name: unknown dataset 'imagenet'; valid datasets: "),
        ({"model.name": "mlp"}, r"model\.name: unknown model 'mlp'; valid models: "),
        ({"prune.criterion": "x"}, r"prune\.criterion: unknown criterion 'x'; valid criterions: "),
    ],
)
def test_what_the_properties_found_is_refused_by_name(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        RunConfig().replace(overrides)


def test_from_dict_with_non_string_keys_names_them():
    with pytest.raises(ConfigError, match="unknown config field '1'"):
        RunConfig.from_dict({1: 2, "seed": 0})


# --- sweep files -------------------------------------------------------------------------------------
def toml_value(value: object) -> str:
    """A TOML inline value (strings via JSON escapes, which TOML basic strings share)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # TOML also wants DEL escaped, and no surrogate pairs
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(doc: dict) -> str:
    return "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in doc.items())


TOML_SCALARS = st.one_of(
    PLAUSIBLE.filter(lambda v: not (isinstance(v, int) and abs(v) >= 2**63)),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=8),
)
TOML_ANY = st.recursive(
    TOML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
AXES = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), KEYS), st.lists(TOML_SCALARS, min_size=0, max_size=3) | TOML_ANY,
    max_size=3,
)  # fmt: skip
SWEEPS = st.fixed_dictionaries(
    {},
    optional={
        "preset": st.sampled_from(["lenet300_digits", "nope"]) | TOML_ANY,
        "levels": st.integers(-2, 4) | TOML_ANY,
        "seeds": st.lists(st.integers(-1, 3), max_size=3) | TOML_ANY,
        "base": st.dictionaries(KEYS, TOML_ANY, max_size=3) | TOML_ANY,
        "grid": AXES | TOML_ANY,
        "tied": st.lists(AXES, max_size=2) | TOML_ANY,
        "slurm": st.dictionaries(st.text(max_size=8), TOML_SCALARS, max_size=2) | TOML_ANY,
        "name": TOML_ANY,
    },
) | st.dictionaries(st.text(max_size=8), TOML_ANY, max_size=3)


def expected_runs(doc: dict) -> int:
    """Independent count of a valid sweep's runs: grid × tied groups × seeds."""
    n = math.prod(len(v) for v in _leaves(doc.get("grid", {})))
    n *= math.prod(len(next(iter(_leaves(g)))) for g in doc.get("tied", []))
    return n * len(doc.get("seeds", [0]))


def _leaves(table: dict) -> list:
    out = []
    for value in table.values():
        out += _leaves(value) if isinstance(value, dict) else [value]
    return out


@EXAMPLES
@given(doc=SWEEPS)
def test_any_sweep_structure_parses_or_names_the_bad_key(doc):
    try:
        spec = parse_sweep(toml_document(doc), "my.toml")
    except ConfigError as e:
        refused()
        assert str(e).startswith("my.toml"), str(e)
        assert_names_a_field(e, {**doc, "seed": None} if "seeds" in doc else doc)  # seeds → seed
        return
    assert len(spec.configs) == expected_runs(doc)
    assert set(doc) <= set(TOP_LEVEL)


@EXAMPLES
@given(text=st.text(max_size=60))
def test_any_text_is_a_sweep_or_a_config_error(text):
    try:
        parse_sweep(text, "my.toml")
    except ConfigError as e:
        refused()
        assert str(e).startswith("my.toml")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("base = 3", "base must be a table"),
        ("grid = [1]", "grid must be a table"),
        ("tied = {a = [1]}", r"write tied axes as \[\[tied\]\]"),
        ("tied = [1]", r"tied group 1 must be a table"),
        ("[[tied]]\n", "tied group 1 is empty"),
        ("slurm = 3", "slurm must be a table"),
        ("preset = [1]", "preset = \\[1\\] must be the name of a preset"),
    ],
)
def test_what_the_sweep_properties_found_is_refused_by_name(text, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_sweep(text, "my.toml")


# --- IDX files ---------------------------------------------------------------------------------------
def idx_bytes(magic: int, shape: tuple[int, ...]) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + bytes(math.prod(shape))


@EXAMPLES
@given(data=st.binary(max_size=200), gzipped=st.booleans(), cut=st.integers(0, 300))
def test_any_bytes_in_an_idx_file_give_a_data_error_naming_it(tmp_path_factory, data, gzipped, cut):
    path = tmp_path_factory.mktemp("idx") / "train-labels-idx1-ubyte.gz"
    good = idx_bytes(LABELS_MAGIC, (5,))
    raw = data if not gzipped else gzip.compress(good + data)[:cut]
    path.write_bytes(raw)
    try:
        labels = read_idx(path, LABELS_MAGIC)
    except DataError as e:
        refused()
        assert str(path) in str(e)
        return
    assert labels.shape == (5,) and not data  # only the intact file parses


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"\x00\x00", r"magic number is 0x00000000"),
        (idx_bytes(IMAGES_MAGIC, (2, 28, 28))[:20], "header is cut short|data bytes"),
        (idx_bytes(IMAGES_MAGIC, (2, 28, 28))[:-1], r"1567 data bytes, but .*\(2, 28, 28\) need 1568"),
        (idx_bytes(LABELS_MAGIC, (3,)), r"magic number is 0x00000801 \(a labels file\)"),
    ],
)  # fmt: skip
def test_idx_contents_are_checked_by_name(raw, needle):
    with pytest.raises(DataError, match=needle) as err:
        parse_idx(raw, IMAGES_MAGIC, "f.gz")
    assert "f.gz" in str(err.value)


# --- safe loading -------------------------------------------------------------------------------------
SOURCE = Path(__file__).resolve().parents[1] / "maskstudy"
UNSAFE = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("dill", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("joblib", "load"),
}


def unsafe_calls(tree: ast.AST) -> list[str]:
    """Calls that can run code from a file: unpickling, torch.load without weights_only=True,
    numpy loads that allow pickles, eval/exec."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:  # subclassing pickle.Unpickler must restrict find_class
                if ast.unparse(base) == "pickle.Unpickler":
                    methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                    if "find_class" not in methods:
                        found.append(f"{node.name} unpickles without find_class")
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        parts = tuple(name.rsplit(".", 1)) if "." in name else ("", name)
        if parts in UNSAFE or name in ("eval", "exec"):
            found.append(name)
        if name == "torch.load" and keywords.get("weights_only") != "True":
            found.append("torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and keywords.get("allow_pickle") not in (
            None,
            "False",
        ):
            found.append("np.load(allow_pickle=...)")
    return found


def test_nothing_in_maskstudy_unpickles_or_evaluates_file_contents():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 30
    report = {}
    for path in files:
        found = unsafe_calls(ast.parse(path.read_text(), str(path)))
        if found:
            report[str(path.relative_to(SOURCE))] = found
    assert report == {}
    loads = [p for p in files if re.search(r"torch\.load\(", p.read_text())]
    assert [p.name for p in loads] == ["foreign.py"]  # the one reader of external checkpoints


def test_the_scan_catches_each_unsafe_pattern():
    snippets = {
        "pickle.load(f)": "pickle.load",
        "torch.load(p)": "torch.load without weights_only=True",
        "torch.load(p, weights_only=False)": "torch.load without weights_only=True",
        "np.load(p, allow_pickle=True)": "np.load(allow_pickle=...)",
        "eval(text)": "eval",
        "class U(pickle.Unpickler):\n    pass": "U unpickles without find_class",
    }
    for code, finding in snippets.items():
        assert unsafe_calls(ast.parse(code)) == [finding], code
    assert unsafe_calls(ast.parse("torch.load(p, map_location='cpu', weights_only=True)")) == []


# --- named errors instead of raw tracebacks (#15) ----------------------------------------------------
TINY_SWEEP = """\
levels = 1
seeds = {seeds}
[base]
data.name = "synthetic"
data.synthetic_size = 64
train.batch_size = 32
train.duration = "4it"
train.eval_every = "4it"
"""
LATIN1 = "levels = 1\n# réglages\n".encode("latin-1")  # é is one byte, not UTF-8


def tiny_sweep(tmp_path: Path, extra: str = "", seeds: str = "[0, 1]") -> Path:
    """A sweep file of tiny synthetic runs (LeNet-300-100 on 64 8×8 inputs, 4 iterations a level)."""
    path = tmp_path / "grid.toml"
    path.write_text(TINY_SWEEP.format(seeds=seeds) + extra)
    return path


def tiny_config(**changes: object) -> RunConfig:
    """One run of the tiny sweep, with dotted-name ``changes``."""
    return parse_sweep(TINY_SWEEP.format(seeds="[0]")).configs[0].replace(changes)


def cli_error(capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run the command line, which must stop with a named error (exit 2); what it printed."""
    assert main(list(args)) == 2
    return capsys.readouterr().err


def sweep_dir(tmp_path: Path) -> Path:
    """A sweep directory holding sweep.toml and no run yet."""
    prepare_sweep_dir(tiny_sweep(tmp_path), tmp_path / "out")
    return tmp_path / "out"


def test_a_sweep_file_that_is_not_utf8_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(LATIN1)
    err = cli_error(capsys, "sweep", str(path), "--out", str(tmp_path / "out"))
    assert f"sweep file {path} is not UTF-8 text (byte 14 is b'\\xe9')" in err
    assert "save it as UTF-8" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["status", "analyze", "sweep", "verify"])
def test_a_sweep_toml_that_is_not_utf8_is_named_by_every_reader(tmp_path, capsys, command):
    out = sweep_dir(tmp_path)
    (out / "sweep.toml").write_bytes(LATIN1)
    if command == "verify":  # verify reports it as a damaged file among the others
        from maskstudy.runs.verify import verify

        assert "sweep.toml is not UTF-8 text" in " ".join(verify(out)["detail"])
        return
    extra = [str(tmp_path / "grid.toml"), "--out"] if command == "sweep" else []
    err = cli_error(capsys, command, *extra, str(out))
    assert f"{out / 'sweep.toml'} is not UTF-8 text" in err
    assert (out / "sweep.toml").read_bytes() == LATIN1  # the user's file is kept as it is


def test_status_shows_a_run_whose_error_txt_is_binary_as_failed(tmp_path, capsys):
    out = sweep_dir(tmp_path)
    run_dir = out / parse_sweep(TINY_SWEEP.format(seeds="[0, 1]")).configs[0].run_id()
    run_dir.mkdir()
    (run_dir / "error.txt").write_bytes(b"\xff\xfeRuntimeError: boom\n\x00\x81")
    assert main(["status", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "failed" in shown and "RuntimeError: boom" in shown and "1 failed, 1 pending" in shown


@pytest.mark.parametrize("seed", [2**63, 2**64, 10**30])
def test_a_seed_beyond_64_bits_is_refused_with_the_range(seed):
    with pytest.raises(
        ConfigError, match=rf"seed = {seed} must be an integer from 0 to {2**63 - 1}"
    ):
        RunConfig().replace({"seed": seed})
    assert RunConfig().replace({"seed": 2**63 - 1}).seed == 2**63 - 1


@pytest.mark.parametrize("levels", ["1e12", "1000000", "1001"])
def test_levels_beyond_1000_are_refused_with_the_reason(levels):
    with pytest.raises(
        ConfigError, match=r"my.toml: levels = \d+ must be an integer from 0 to 1000 "
    ):
        parse_sweep(f"levels = {levels}", "my.toml")
    assert parse_sweep("levels = 1000").configs[0].levels == 1000


def test_a_width_no_tensor_can_hold_is_refused_before_allocating(tmp_path):
    needle = r"model\.width = 1000000000\.0 gives lenet300_100 more than 2\^63 parameters in one "
    with pytest.raises(ConfigError, match=needle + r"tensor, more than this machine's [\d.]+ GiB"):
        run(tiny_config(**{"model.width": 1e9}), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_a_model_larger_than_memory_is_refused_naming_its_size(tmp_path, monkeypatch):
    from maskstudy.runs import checks
    from maskstudy.runs.run import preflight

    monkeypatch.setattr(checks, "physical_memory", lambda: 2**28)  # a 256 MiB machine
    wide = tiny_config(**{"model.width": 25.0})
    preflight([wide], here=False)  # for a cluster's nodes: their own run checks their memory
    with pytest.raises(ConfigError) as err:
        run(wide, tmp_path, progress=False)
    assert "gives lenet300_100 19,265,010 parameters: training needs about 0.4 GiB" in str(
        err.value
    )
    assert "more than this machine's 0.2 GiB of memory; use a smaller model.width" in str(err.value)
    assert not any(tmp_path.iterdir())


def stored_run(tmp_path: Path) -> Run:
    """A run directory holding only its config.json (what a parent or an LMC probe opens)."""
    return create_run(tmp_path / "stored", tiny_config())


ENTRY_POINTS = {  # everything that takes the command line's --device
    "run": lambda tmp, device: run(tiny_config(), tmp / "runs", device=device, progress=False),
    "branch": lambda tmp, device: branch(
        stored_run(tmp), "reinit", levels=1, device=device, progress=False
    ),
    "sweep": lambda tmp, device: run_sweep(
        tiny_sweep(tmp), tmp / "out", device=device, progress=False
    ),
    "lmc": lambda tmp, device: lmc_probe(stored_run(tmp), 0, device=device),
    "demo": lambda tmp, device: demo(
        tmp / "demo", levels=1, epochs=1, device=device, progress=False
    ),
}
DEVICE_ERRORS = {
    "tpu": r"device 'tpu' is not one maskstudy trains on; use cpu, cuda or cuda:N",
    "cuda:1": r"device 'cuda:1' needs CUDA, but this torch \(.*\) has no CUDA: .*is_available",
}


@pytest.mark.parametrize("device", DEVICE_ERRORS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_device_this_torch_lacks_is_refused_naming_the_valid_ones(
    tmp_path, monkeypatch, entry, device
):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # a CPU-only torch
    monkeypatch.setattr("torch.version.cuda", None)
    with pytest.raises(ConfigError, match=DEVICE_ERRORS[device]):
        ENTRY_POINTS[entry](tmp_path, device)
    inputs = ("grid.toml", "config.json")  # the sweep file and stored run the call was given
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in inputs] == []


def test_the_command_line_refuses_a_bad_device(tmp_path, capsys):
    args = ["--preset", "lenet300_digits", "--device", "tpu", "--out", str(tmp_path)]
    assert "use cpu, cuda or cuda:N" in cli_error(capsys, "run", *args)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("files", [[], "init.safetensors"])
def test_a_config_json_whose_files_are_not_a_table_is_damaged(tmp_path, files):
    path = stored_run(tmp_path).path
    info = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**info, "files": files}))
    with pytest.raises(StoreError, match=r"config.json: 'files' is \w+ .* not a table; .*damaged"):
        Run(path).weights(which="init")


def test_a_damaged_run_directory_fails_that_run_and_the_sweep_goes_on(tmp_path, capsys):
    out = sweep_dir(tmp_path)
    path = tiny_sweep(tmp_path, seeds="[0, 1, 2, 3]")
    ids = [c.run_id() for c in parse_sweep(path.read_text()).configs]
    (out / ids[0]).mkdir()
    (out / ids[0] / "config.json").write_text("{not json")
    (out / ids[1] / ".lock").mkdir(parents=True)
    (out / ids[2]).symlink_to(out / ids[2])  # a symlink loop: not even error.txt fits
    assert main(["sweep", str(path), "--out", str(out), "--extend", "--quiet", "--jobs", "1"]) == 1
    printed = capsys.readouterr()
    assert "this call: 3 failed, 1 trained" in printed.out
    assert f"could not write {out / ids[2] / 'error.txt'}" in printed.err
    status = open_sweep(out).status().set_index("run_id")
    assert (
        status["state"].tolist()[:2] == ["failed", "failed"] and status["state"].iloc[3] == "done"
    )
    assert status["state"].iloc[2] in ("failed", "pending")  # the loop: failed if its .lock is read
    assert "config.json is not valid JSON" in status.loc[ids[0], "detail"]
    assert "could not create the lock file" in status.loc[ids[1], "detail"]
    assert (out / ids[0] / "config.json").read_text() == "{not json"  # nothing saved is lost


# --- config errors found before anything trains (#15) -------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("train.duration=0ep", "train.duration = '0ep' is 0 iterations; give at least one"),
        ("train.eval_every=0it", "train.eval_every = '0it' is 0 iterations; give at least one"),
        ("train.eval_every=0.01ep", "train.eval_every = '0.01ep' is 0 iterations at 24 it"),
    ],
)
def test_run_refuses_durations_of_no_iterations_before_writing(tmp_path, capsys, setting, needle):
    args = ["--preset", "lenet300_digits", "--set", setting, "--out", str(tmp_path)]
    assert needle in cli_error(capsys, "run", *args)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("epochs", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_epochs_that_train_nothing_are_refused_in_plain_words(tmp_path, capsys, command, epochs):
    args = ["--preset", "lenet300_digits"] if command == "run" else []
    with pytest.raises(SystemExit) as stop:
        main([command, *args, f"--epochs={epochs}", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --epochs: {epochs}: every level must train for some epochs" in err
    assert "--epochs 1" in err
    assert not (tmp_path / "out").exists()


BAD_RUNS = """
[[tied]]
"model.name" = ["lenet300_100", "lenet300_100", "lenet300_100", "lenet300_100", "lenet5"]
"prune.exclude" = [[], ["fc9.weight"], [], [], []]
rewind_to = ["0it", "0it", "4it", "0it", "0it"]
"data.val_size" = [0, 0, 0, 64, 0]
"""
REASONS = [  # of the tied runs 2 to 5
    "prune.exclude names 'fc9.weight', which is not a prunable tensor of lenet300_100",
    "rewind_to = '4it' (4 iterations) is not before the end of training",
    "val_size = 64 must be an integer from 0 to 63",
    "model 'lenet5' needs inputs of at least",
]


def test_a_sweep_names_every_config_error_with_its_runs_before_training(tmp_path, capsys):
    path = tiny_sweep(tmp_path, BAD_RUNS)
    err = cli_error(capsys, "sweep", str(path), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    assert f"{path}: 8 run(s) cannot train" in err
    ids = [c.run_id() for c in parse_sweep(path.read_text()).configs]  # tied runs × seeds 0, 1
    for i, reason in enumerate(REASONS, 1):
        line = next(line for line in err.splitlines() if reason in line)
        runs = err.splitlines()[err.splitlines().index(line) + 1]
        assert runs == f"  runs (2): {ids[2 * i]}, {ids[2 * i + 1]}"
    assert ids[0] not in err and ids[1] not in err  # the healthy runs


@pytest.mark.parametrize(
    "overrides, hint",
    [
        ({"train.lr_": 0.1}, "did you mean 'train.lr'"),
        ({"prune.criterion": "magnitde"}, "did you mean 'magnitude'?"),
        ({"prune.scope": "Global"}, "did you mean 'global'?"),
        ({"model.name": "lenet_300_100"}, "did you mean 'lenet300_100'?"),
        ({"data.name": "fashion-mnist"}, "did you mean 'fashion_mnist'?"),
    ],
)
def test_unknown_names_suggest_the_nearest_valid_ones(overrides, hint):
    with pytest.raises(ConfigError, match=re.escape(hint)):
        RunConfig().replace(overrides)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(ConfigError) as error:
        RunConfig().replace({"prune.criterion": "xyzzy"})
    assert "did you mean" not in str(error.value)
