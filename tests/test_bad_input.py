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

from maskstudy.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_idx
from maskstudy.errors import ConfigError, DataError
from maskstudy.runs.config import RunConfig, field_paths, parse_value
from maskstudy.runs.sweep import TOP_LEVEL, parse_sweep

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
    assert [p.name for p in loads] == ["imports.py"]  # the one reader of external checkpoints


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
